package agentconfig

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"filippo.io/age"
)

// The host's age identity opens every value encrypted to it: berth reads
// it only from a regular file its owner alone may read, and shows none of
// it in an error.
func TestAgeIdentities_OnlyFromAFileItsOwnerAloneReads(t *testing.T) {
	id, err := age.GenerateX25519Identity()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	key := func(name string, mode os.FileMode, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good := key("age.txt", 0o600, "# host\n"+id.String()+"\n")
	c := &Config{SOPS: &SOPSConfig{AgeKeyFile: good}}
	if ids, err := c.AgeIdentities(); err != nil || len(ids) != 1 {
		t.Fatalf("a 0600 key file: %v %v", ids, err)
	}
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ file, want string }{
		{key("world.txt", 0o644, id.String()+"\n"), "mode 0644"},
		{key("group.txt", 0o640, id.String()+"\n"), "mode 0640"},
		{key("group-writable.txt", 0o620, id.String()+"\n"), "mode 0620"},
		{dir, "not a regular file"},
		{fifo, "not a regular file"},
		{key("garbage.txt", 0o600, "AGE-SECRET-KEY-1NOTAKEY"+id.String()[23:]+"\n"), "holds no age identity"},
	} {
		c := &Config{SOPS: &SOPSConfig{AgeKeyFile: tc.file}}
		_, err := c.AgeIdentities()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: want %q, got %v", tc.file, tc.want, err)
		}
		if err != nil && strings.Contains(err.Error(), id.String()[15:]) {
			t.Errorf("%s: the error shows the key: %v", tc.file, err)
		}
	}
}
