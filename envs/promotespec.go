package envs

import (
	"fmt"
	"time"
)

// PromoteSpec is the top-level x-berth.promote: once the env has been
// live and healthy on all its hosts for After, berth opens (or updates) a
// pull request that gives env To the env's image digests, as berth
// promote does (docs/forge.md). A person merges it.
type PromoteSpec struct {
	To    string
	After time.Duration
}

var promoteKeys = []string{"to", "after"}

// Bounds of x-berth.promote.after.
const (
	minPromoteAfter = time.Second
	maxPromoteAfter = 30 * 24 * time.Hour
)

// parsePromote decodes x-berth.promote of env name.
func parsePromote(v any, name string, report func(field, msg, hint string)) *PromoteSpec {
	const f = extKey + ".promote"
	m, ok := asMap(v, f, report)
	if !ok {
		return nil
	}
	fields(m, promoteKeys, report, f)
	p := &PromoteSpec{}
	if t, ok := m["to"]; ok {
		p.To, _ = asString(t, f+".to", report)
	}
	switch {
	case p.To == "":
		report(f+".to", "missing", "the env to promote to: to: prod")
	case !ValidEnvName(p.To):
		report(f+".to", fmt.Sprintf("%q is not an environment name", p.To), "lowercase letters, digits, - and _ (envs/<name>/)")
	case p.To == name:
		report(f+".to", "an env cannot promote to itself", "name the next env: to: prod")
	}
	if a, ok := m["after"]; ok {
		p.After = asDuration(a, f+".after", report)
	} else {
		report(f+".after", "missing", "how long the env must be live and healthy first: after: 30m")
	}
	if p.After < minPromoteAfter || p.After > maxPromoteAfter {
		report(f+".after", fmt.Sprintf("%s is outside %s–%s", p.After, minPromoteAfter, maxPromoteAfter/(24*time.Hour)*(24*time.Hour)), "after: 30m")
	}
	return p
}
