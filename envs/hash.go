package envs

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"maps"
	"reflect"
	"slices"

	"github.com/compose-spec/compose-go/v2/types"
)

// ConfigHash is a digest of everything about a service that affects its
// container: the normalized Compose service (image with digest, command,
// environment, mounts, labels, ports, limits, …) and its x-berth settings,
// including secret *references*. Secret values are not known here; the
// deploy mixes a digest of them in (never the values). A change in any
// input changes the hash, which is how the planner knows to replace a
// container and can say why.
//
// A service's replicas, balancer and watch are left out: they say how many
// containers run and how they are switched, not what one container is, so
// scaling a service or moving it to another upstream keeps its containers
// (and services that set none hash as before these settings existed).
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
	}{hashedConfig(s.Config), s.Berth.Role, s.Berth.Port, refs, s.Berth.StopFirst, s.Mounted}
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

// hashedConfig is cfg without deploy.replicas and x-berth's lb and watch.
func hashedConfig(cfg types.ServiceConfig) types.ServiceConfig {
	if cfg.Deploy != nil && cfg.Deploy.Replicas != nil {
		d := *cfg.Deploy
		d.Replicas = nil
		if reflect.ValueOf(d).IsZero() {
			cfg.Deploy = nil
		} else {
			cfg.Deploy = &d
		}
	}
	if x, ok := cfg.Extensions[extKey].(map[string]any); ok && (x["lb"] != nil || x["watch"] != nil) {
		x = maps.Clone(x)
		delete(x, "lb")
		delete(x, "watch")
		ext := maps.Clone(cfg.Extensions)
		ext[extKey] = x
		cfg.Extensions = ext
	}
	return cfg
}
