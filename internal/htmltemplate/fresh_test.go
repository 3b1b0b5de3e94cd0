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
			if os.Getenv("BERTH_INTEGRATION") == "1" {
				t.Fatalf("%s unavailable: %v (BERTH_INTEGRATION=1 turns this skip into a failure)", tool, err)
			}
			t.Skipf("%s unavailable: %v", tool, err)
		}
	}
	out := filepath.Join(t.TempDir(), "htmltemplate")
	cmd := exec.Command("bash", "../../scripts/gen-htmltemplate", out)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("scripts/gen-htmltemplate: %v\n%s", err, b)
	}
	// Both ways: a file the script makes that differs or is missing here,
	// and a file here the script does not make (code added beside the
	// copy is code the copy's test does not vouch for).
	var differ []string
	made, have := files(t, out), files(t, ".")
	for rel, want := range made {
		if got, ok := have[rel]; !ok || !bytes.Equal(got, want) {
			differ = append(differ, rel)
		}
	}
	for rel := range have {
		if _, ok := made[rel]; !ok && rel != "fresh_test.go" { // this test is berth's own
			differ = append(differ, rel+" (not the script's)")
		}
	}
	if len(differ) > 0 {
		t.Errorf("internal/htmltemplate differs from this toolchain's html/template in %v: run scripts/gen-htmltemplate", differ)
	}
}

// files reads every file under dir, by path relative to it.
func files(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		out[rel], err = os.ReadFile(p)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}
