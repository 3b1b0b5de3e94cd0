package preview

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"

	"berth.dev/berth/engine"
	"berth.dev/berth/envs"
	"berth.dev/berth/migrate"
	"berth.dev/berth/reconcile"
)

// planServices fills r's services and one-shots with reconcile.Plan: the
// host is taken to run --from whole (every container running, healthy,
// with --from's config hash), and --to is planned against it.
func planServices(r *EnvReport, from, to *envs.Env) {
	var actual []engine.Managed
	if from != nil {
		for _, s := range from.Services {
			if oneShot(s.Berth.Role) {
				continue
			}
			for i := range max(s.Berth.Replicas, 1) {
				actual = append(actual, engine.Managed{
					ID: fmt.Sprintf("%s-%d", s.Name, i), Service: s.Name, Role: string(s.Berth.Role), Slot: i,
					Revision: "from", ConfigHash: sealedHash(s), Image: s.Config.Image, State: "running", Health: "healthy",
				})
			}
		}
	}
	hashes := map[string]string{}
	for _, s := range to.Services {
		hashes[s.Name] = sealedHash(s)
	}
	for _, a := range reconcile.Plan(to, hashes, actual) {
		var was *envs.Service
		if from != nil {
			was = from.Service(a.Service)
		}
		now := to.Service(a.Service)
		switch a.Kind {
		case reconcile.Run:
			r.addOneShot(was, now)
		case reconcile.Keep:
			if why := keptChanges(was, now, len(a.Stale)); len(why) > 0 {
				r.Services = append(r.Services, ServiceChange{Service: a.Service, Role: a.Role, Action: string(a.Kind), Reasons: why, Replicas: a.Replicas})
			}
		default:
			c := ServiceChange{Service: a.Service, Role: a.Role, Action: string(a.Kind), Reasons: reasons(a, was, now), Replicas: a.Replicas}
			if now != nil {
				c.Image = now.Config.Image
			}
			r.Services = append(r.Services, c)
		}
	}
	if len(r.Services) == 0 {
		for _, s := range to.Services {
			if was := serviceOf(from, s.Name); oneShot(s.Berth.Role) && (was == nil || was.Hash != s.Hash) {
				r.Notes = append(r.Notes, fmt.Sprintf("%s %s changed, but no long-running service did: one-shots run only with a deploy that changes something", s.Berth.Role, s.Name))
			}
		}
	}
}

// sealedHash is s's hash with the ciphertexts of its sops: secrets mixed
// in: without the host's key a new encrypted value is what the plan can
// see of a secret that changed (the host mixes in the values' digests).
func sealedHash(s envs.Service) string {
	h := sha256.New()
	h.Write([]byte(s.Hash))
	sealed := false
	for _, refs := range []map[string]envs.SecretRef{s.Berth.Secrets, s.Berth.SecretFiles} {
		for _, name := range slices.Sorted(maps.Keys(refs)) {
			if c := refs[name].Ciphertext(); c != "" {
				fmt.Fprintf(h, "\x00%s=%s", name, c)
				sealed = true
			}
		}
	}
	if !sealed {
		return s.Hash
	}
	return hex.EncodeToString(h.Sum(nil))
}

func oneShot(r envs.Role) bool { return r == envs.RoleMigrate || r == envs.RoleCLI }

func serviceOf(e *envs.Env, name string) *envs.Service {
	if e == nil {
		return nil
	}
	return e.Service(name)
}

// addOneShot records a migrate or cli service the deploy runs. A
// migration runs once per service, image and command (migrate.LedgerKey):
// one that ran at --from is skipped.
func (r *EnvReport) addOneShot(was, now *envs.Service) {
	o := OneShot{Service: now.Name, Image: now.Config.Image, Command: now.Config.Command, Runs: true}
	cmd := strings.Join(append(slices.Clone(now.Config.Entrypoint), now.Config.Command...), " ")
	if now.Berth.Role == envs.RoleCLI {
		o.Reason = "runs with every deploy that changes something"
		r.CLI = append(r.CLI, o)
		return
	}
	switch {
	case was != nil && migrate.LedgerKey(*was) == migrate.LedgerKey(*now):
		o.Runs, o.Reason = false, "ran before for this image and command: skipped"
	case was == nil:
		o.Reason = "new migration"
	case was.Config.Image != now.Config.Image:
		o.Reason = "new image " + digestChange(was.Config.Image, now.Config.Image)
	default:
		o.Reason = "new command: " + cmd
	}
	r.Migrations = append(r.Migrations, o)
}

// reasons explains a create, replace or remove: what differs between the
// service at --from and at --to.
func reasons(a reconcile.Action, was, now *envs.Service) []string {
	switch {
	case a.Kind == reconcile.Remove:
		return []string{"no longer in the config"}
	case was == nil:
		return []string{"new service"}
	case now == nil:
		return []string{a.Reason}
	}
	var out []string
	if was.Config.Image != now.Config.Image {
		out = append(out, "image "+digestChange(was.Config.Image, now.Config.Image))
	}
	out = append(out, secretChanges(was, now)...)
	for _, p := range slices.Sorted(maps.Keys(setOf(append(slices.Collect(maps.Keys(was.Mounted)), slices.Collect(maps.Keys(now.Mounted))...)))) {
		if was.Mounted[p] != now.Mounted[p] {
			out = append(out, "mounted file "+p+" changed")
		}
	}
	out = append(out, configChanges(was, now)...)
	if was.Berth.Role != now.Berth.Role {
		out = append(out, fmt.Sprintf("role %s → %s", was.Berth.Role, now.Berth.Role))
	}
	if was.Berth.Port != now.Berth.Port {
		out = append(out, fmt.Sprintf("port %d → %d", was.Berth.Port, now.Berth.Port))
	}
	if was.Berth.StopFirst != now.Berth.StopFirst {
		out = append(out, fmt.Sprintf("stop_first %t → %t", was.Berth.StopFirst, now.Berth.StopFirst))
	}
	if len(out) == 0 && was.Hash == now.Hash {
		// The hash is the same: more replicas than --from runs.
		return []string{fmt.Sprintf("replicas %d → %d", max(was.Berth.Replicas, 1), max(now.Berth.Replicas, 1))}
	}
	if len(out) == 0 {
		out = append(out, a.Reason)
	}
	return out
}

// keptChanges explains a service whose containers stay: fewer replicas,
// another balancer or watch.
func keptChanges(was, now *envs.Service, stale int) []string {
	if was == nil || now == nil {
		return nil
	}
	var out []string
	if stale > 0 {
		out = append(out, fmt.Sprintf("replicas %d → %d: %d container(s) retired", max(was.Berth.Replicas, 1), max(now.Berth.Replicas, 1), stale))
	}
	if l1, l2 := lbName(was.Berth.LB), lbName(now.Berth.LB); l1 != l2 {
		out = append(out, fmt.Sprintf("balancer %s → %s", l1, l2))
	}
	if was.Berth.Watch != now.Berth.Watch {
		out = append(out, fmt.Sprintf("watch %s → %s", was.Berth.Watch, now.Berth.Watch))
	}
	return out
}

func lbName(l *envs.LBSpec) string {
	if l == nil {
		return "none"
	}
	return l.String()
}

// secretChanges names secret references added, removed or pointed
// elsewhere. References are paths, never values.
func secretChanges(was, now *envs.Service) []string {
	var out []string
	diff := func(kind string, a, b map[string]envs.SecretRef) {
		for _, k := range slices.Sorted(maps.Keys(setOf(append(slices.Collect(maps.Keys(a)), slices.Collect(maps.Keys(b))...)))) {
			ra, inA := a[k]
			rb, inB := b[k]
			switch {
			case !inA:
				out = append(out, fmt.Sprintf("%s %s added (%s)", kind, k, rb))
			case !inB:
				out = append(out, fmt.Sprintf("%s %s removed", kind, k))
			case ra.String() != rb.String():
				out = append(out, fmt.Sprintf("%s reference %s: %s → %s", kind, k, ra, rb))
			case ra.Ciphertext() != rb.Ciphertext():
				out = append(out, fmt.Sprintf("%s %s changed (its encrypted value in %s)", kind, k, strings.TrimPrefix(rb.Path, envs.SOPSPrefix)))
			}
		}
	}
	diff("secret", was.Berth.Secrets, now.Berth.Secrets)
	diff("secret file", was.Berth.SecretFiles, now.Berth.SecretFiles)
	return out
}

// configChanges names the Compose fields that differ, the image and
// replicas aside; for environment, the variables (names only: values
// stay out of a PR comment).
func configChanges(was, now *envs.Service) []string {
	a, b := fieldsOf(was), fieldsOf(now)
	var out []string
	for _, k := range slices.Sorted(maps.Keys(setOf(append(slices.Collect(maps.Keys(a)), slices.Collect(maps.Keys(b))...)))) {
		if string(a[k]) == string(b[k]) {
			continue
		}
		if k == "environment" {
			out = append(out, envChanges(was.Config.Environment, now.Config.Environment))
			continue
		}
		out = append(out, k+" changed")
	}
	return out
}

func fieldsOf(s *envs.Service) map[string]json.RawMessage {
	cfg := s.Config
	cfg.Image = ""
	if cfg.Deploy != nil {
		d := *cfg.Deploy
		d.Replicas = nil
		cfg.Deploy = &d
	}
	var m map[string]json.RawMessage
	b, _ := json.Marshal(cfg)
	json.Unmarshal(b, &m)
	delete(m, "name")
	return m
}

func envChanges(a, b map[string]*string) string {
	var added, removed, changed []string
	for _, k := range slices.Sorted(maps.Keys(setOf(append(slices.Collect(maps.Keys(a)), slices.Collect(maps.Keys(b))...)))) {
		va, inA := a[k]
		vb, inB := b[k]
		switch {
		case !inA:
			added = append(added, k)
		case !inB:
			removed = append(removed, k)
		case (va == nil) != (vb == nil) || (va != nil && *va != *vb):
			changed = append(changed, k)
		}
	}
	var parts []string
	for _, p := range []struct {
		what  string
		names []string
	}{{"changed", changed}, {"added", added}, {"removed", removed}} {
		if len(p.names) > 0 {
			parts = append(parts, strings.Join(p.names, ", ")+" "+p.what)
		}
	}
	return "environment: " + strings.Join(parts, "; ")
}

// digestChange says how an image reference changed: the digest within
// one repository, else both references.
func digestChange(a, b string) string {
	ra, da, okA := strings.Cut(a, "@")
	rb, db, okB := strings.Cut(b, "@")
	if okA && okB && ra == rb {
		return shortDigest(da) + " → " + shortDigest(db)
	}
	return a + " → " + b
}

func shortDigest(d string) string {
	if len(d) > 19 {
		return d[:19] + "…"
	}
	return d
}
