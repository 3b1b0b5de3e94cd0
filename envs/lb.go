package envs

import (
	"fmt"
	"path/filepath"
	"strings"
)

// DefaultNginxConfDir is where berth writes nginx upstream files unless
// the agent config says otherwise (nginx.conf_dir).
const DefaultNginxConfDir = "/etc/nginx/conf.d"

// LBOptions is what the host says about its load balancer.
type LBOptions struct {
	// ConfDir is the directory berth's nginx files go in; default
	// DefaultNginxConfDir.
	ConfDir string
	// Owner, when set, names the environment of this host that already
	// owns an upstream ("" when none does); the agent reads it from the
	// files in ConfDir.
	Owner func(upstream string) string
}

// NginxFile is the upstream file berth writes for env's upstream.
func NginxFile(confDir, env, upstream string) string {
	if confDir == "" {
		confDir = DefaultNginxConfDir
	}
	return filepath.Join(confDir, "berth-"+env+"-"+upstream+".conf")
}

// checkLB is the one place the load balancer block is checked against the
// host (DESIGN.md §7: the repo names only the upstream; berth names the
// file, inside the directory the agent config sets). It sets lb.File.
func checkLB(c *collector, env *Env, o LBOptions) {
	lb := env.LB
	if lb == nil {
		return
	}
	switch lb.Type {
	case "nginx":
		dir := o.ConfDir
		if dir == "" {
			dir = DefaultNginxConfDir
		}
		dir = filepath.Clean(dir)
		named := NginxFile(dir, env.Name, lb.Upstream)
		switch {
		case lb.File == "":
			lb.File = named
		case filepath.Dir(filepath.Clean(lb.File)) != dir || strings.HasPrefix(filepath.Base(lb.File), "."):
			c.top(extKey+".lb.file", fmt.Sprintf("%s is outside the load balancer's directory %s", lb.File, dir), "leave file: out; berth writes "+named)
		default:
			// Repos written before berth named the file keep theirs
			// where it fits.
			lb.File = filepath.Clean(lb.File)
		}
		if o.Owner != nil {
			if other := o.Owner(lb.Upstream); other != "" && other != env.Name {
				c.top(extKey+".lb.upstream", fmt.Sprintf("upstream %s belongs to environment %s on this host", lb.Upstream, other), "name an upstream of this environment's own")
			}
		}
	}
}
