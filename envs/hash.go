package envs

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"maps"
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
		// Validation refuses what does not marshal (NaN, Inf); should
		// anything else slip through, the service gets a hash of its own
		// that matches no container, rather than a crash.
		b = []byte("unhashable " + s.Name + ": " + err.Error())
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}
