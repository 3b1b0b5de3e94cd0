package envs

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
)

// ConfigHash is a digest of everything about a service that affects its
// container: the normalized Compose service (image with digest, command,
// environment, mounts, labels, ports, limits, …) and its x-berth settings,
// including secret *references*. Secret values are not known here; the
// deploy mixes a digest of them in (never the values). A change in any
// input changes the hash, which is how the planner knows to replace a
// container and can say why.
func ConfigHash(s Service) string {
	refs := make([]string, 0, len(s.Berth.Secrets)+len(s.Berth.SecretFiles))
	for _, name := range slices.Sorted(maps.Keys(s.Berth.Secrets)) {
		refs = append(refs, name+"="+s.Berth.Secrets[name].String())
	}
	for _, name := range slices.Sorted(maps.Keys(s.Berth.SecretFiles)) {
		refs = append(refs, "file:"+name+"="+s.Berth.SecretFiles[name].String())
	}
	in := struct {
		Service   any               `json:"service"`
		Role      Role              `json:"role"`
		Port      int               `json:"port,omitempty"`
		Secrets   []string          `json:"secrets,omitempty"`
		StopFirst bool              `json:"stop_first,omitempty"`
		Mounted   map[string]string `json:"mounted,omitempty"`
	}{s.Config, s.Berth.Role, s.Berth.Port, refs, s.Berth.StopFirst, s.Mounted}
	// encoding/json sorts map keys, so equal configs hash equally.
	b, err := json.Marshal(in)
	if err != nil {
		// Every field of a loaded ServiceConfig marshals; a failure here
		// is a bug, not bad input.
		panic("envs: hash service " + s.Name + ": " + err.Error())
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// treeDigest is a digest of a file, or of every file under a directory
// (names, modes and contents), for bind mounts from the config repository.
func treeDigest(path string) (string, error) {
	h := sha256.New()
	err := filepath.WalkDir(path, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(path, p)
		info, err := d.Info()
		if err != nil {
			return err
		}
		fmt.Fprintf(h, "%s %o\n", filepath.ToSlash(rel), info.Mode())
		if !info.Mode().IsRegular() {
			return nil
		}
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		defer f.Close()
		_, err = io.Copy(h, f)
		return err
	})
	if err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
