package template

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// The copy is the toolchain's html/template and text/template as
// scripts/gen-htmltemplate makes them: after a Go upgrade that changed
// them (a security fix of the escaper, say), this fails until the copy is
// made again.
func TestCopy_IsTheToolchainsAsTheScriptMakesIt(t *testing.T) {
	for _, tool := range []string{"bash", "perl", "go"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s unavailable: %v", tool, err)
		}
	}
	out := filepath.Join(t.TempDir(), "htmltemplate")
	cmd := exec.Command("bash", "../../scripts/gen-htmltemplate", out)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("scripts/gen-htmltemplate: %v\n%s", err, b)
	}
	var differ []string
	filepath.WalkDir(out, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(out, p)
		want, _ := os.ReadFile(p)
		got, err := os.ReadFile(rel)
		if err != nil || !bytes.Equal(got, want) {
			differ = append(differ, rel)
		}
		return nil
	})
	if len(differ) > 0 {
		t.Errorf("internal/htmltemplate differs from this toolchain's html/template in %v: run scripts/gen-htmltemplate", differ)
	}
}
