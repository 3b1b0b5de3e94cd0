package envs

import (
	"fmt"
	"path/filepath"
	"strings"
)

// DefaultNginxConfDir is where berth writes nginx upstream files unless
// the agent config says otherwise (nginx.conf_dir).
const DefaultNginxConfDir = "/etc/nginx/conf.d"

// LBOptions is what the host says about its load balancers.
type LBOptions struct {
	// ConfDir is the directory berth's nginx files go in; default
	// DefaultNginxConfDir.
	ConfDir string
	// Owner, when set, names the environment of this host that already
	// owns an nginx upstream ("" when none does); the agent reads it from
	// the files in ConfDir.
	Owner func(upstream string) string
	// BackendOwner, when set, names the environment of this host that
	// already owns an HAProxy backend ("" when none does); the agent reads
	// it from the backend's file in the servers directory.
	BackendOwner func(backend string) string
	// File, when set, reads what an existing upstream file in ConfDir
	// says about itself (whose it is), for nginxFileRefused.
	File func(path string) (LBFile, error)
}

// NginxFile is the upstream file berth writes for env's upstream.
func NginxFile(confDir, env, upstream string) string {
	if confDir == "" {
		confDir = DefaultNginxConfDir
	}
	return filepath.Join(confDir, "berth-"+env+"-"+upstream+".conf")
}

// checkLB is the one place the load balancers are checked against the
// host (DESIGN.md §7: the repo names only the upstream or backend; berth
// names the nginx file, inside the directory the agent config sets, and
// the operator hands a backend to berth by its file in the servers
// directory). It sets each nginx spec's File.
func checkLB(c *collector, env *Env, o LBOptions) {
	seen := map[*LBSpec]bool{}
	for _, s := range env.Services {
		lb := s.Berth.LB
		if lb == nil || seen[lb] || lb.Name() == "" {
			continue
		}
		seen[lb] = true
		report := func(field, msg, hint string) { c.top(field, msg, hint) }
		if lb != env.LB {
			report = func(field, msg, hint string) { c.service(s.Name, field, msg, hint) }
		}
		checkOneLB(report, env.Name, lb, o)
	}
}

func checkOneLB(report func(field, msg, hint string), env string, lb *LBSpec, o LBOptions) {
	switch lb.Type {
	case "nginx":
		dir := o.ConfDir
		if dir == "" {
			dir = DefaultNginxConfDir
		}
		dir = filepath.Clean(dir)
		named := NginxFile(dir, env, lb.Upstream)
		switch {
		case lb.File == "":
			lb.File = named
		case filepath.Dir(filepath.Clean(lb.File)) != dir || strings.HasPrefix(filepath.Base(lb.File), "."):
			report(extKey+".lb.file", fmt.Sprintf("%s is outside the load balancer's directory %s", lb.File, dir), "leave file: out; berth writes "+named)
		default:
			// Repos written before berth named the file keep theirs
			// where it fits, and where it is handed to them.
			lb.File = filepath.Clean(lb.File)
		}
		if o.File != nil && filepath.Dir(lb.File) == dir {
			if msg, hint := nginxFileRefused(o.File, lb.File, named, env, lb.Upstream); msg != "" {
				field := extKey + ".lb.file"
				if lb.File == named {
					field = extKey + ".lb.upstream"
				}
				report(field, msg, hint)
			}
		}
		if o.Owner != nil {
			if other := o.Owner(lb.Upstream); other != "" && other != env {
				report(extKey+".lb.upstream", fmt.Sprintf("upstream %s belongs to environment %s on this host", lb.Upstream, other), "name an upstream of this environment's own")
			}
		}
	case "haproxy":
		if o.BackendOwner != nil {
			if other := o.BackendOwner(lb.Backend); other != "" && other != env {
				report(extKey+".lb.backend", fmt.Sprintf("backend %s belongs to environment %s on this host", lb.Backend, other), "name a backend of this environment's own")
			}
		}
	}
}
