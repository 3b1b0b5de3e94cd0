package envs

import (
	"fmt"
	"path"
	"path/filepath"
	"slices"
	"strings"

	"github.com/compose-spec/compose-go/v2/types"
)

// checkProjectResources refuses volumes and networks that reach beyond the
// project: other drivers and driver options (a local volume with
// driver_opts binds any host path), external ones, names that belong to
// another project, and reserved labels.
func checkProjectResources(c *collector, p *types.Project, pol Policy) {
	for _, k := range slices.Sorted(mapsKeys(p.Volumes)) {
		v := p.Volumes[k]
		f := "volumes." + k
		checkOwnership(c, p, resource{"volume", k, v.Name, bool(v.External)}, pol.AllowExternalVolumes, "it belongs to another project or to the host")
		if !pol.AllowVolumeDrivers {
			if v.Driver != "" && v.Driver != "local" {
				c.top(f+".driver", fmt.Sprintf("volume driver %q is refused", v.Driver), "use the local driver, or set policy.allow_volume_drivers in /etc/berth/agent.yaml")
			}
			if len(v.DriverOpts) > 0 {
				c.top(f+".driver_opts", "volume driver_opts are refused: with the local driver they mount any host path", "leave driver_opts out, or set policy.allow_volume_drivers in /etc/berth/agent.yaml")
			}
		}
		for _, l := range slices.Sorted(mapsKeys(v.Labels)) {
			if reservedLabel(l) {
				c.top(f+".labels."+l, fmt.Sprintf("label %s is reserved for berth and Compose", l), "use a label of your own")
			}
		}
	}
	for _, k := range slices.Sorted(mapsKeys(p.Networks)) {
		n := p.Networks[k]
		f := "networks." + k
		checkOwnership(c, p, resource{"network", k, n.Name, bool(n.External)}, pol.AllowExternalNetworks, "other projects' containers or the host's network are there")
		if !bool(n.External) && !slices.Contains(safeNetworkDrivers, n.Driver) {
			c.top(f+".driver", fmt.Sprintf("network driver %q is refused: it attaches containers to the host's network", n.Driver), "use the bridge driver")
		}
		if len(n.DriverOpts) > 0 {
			c.top(f+".driver_opts", "network driver_opts are refused", "leave driver_opts out")
		}
		for _, l := range slices.Sorted(mapsKeys(n.Labels)) {
			if reservedLabel(l) {
				c.top(f+".labels."+l, fmt.Sprintf("label %s is reserved for berth and Compose", l), "use a label of your own")
			}
		}
	}
}

// resource is a volume or network of the project: its kind, key, name and
// whether it is external.
type resource struct {
	kind, key, name string
	external        bool
}

// checkOwnership refuses a volume or network that is not the project's
// own: an external one unless the policy allows it (why says what it
// reaches), or one named outside the project's <project>_<key> names.
func checkOwnership(c *collector, p *types.Project, r resource, allowExternal bool, why string) {
	f := r.kind + "s." + r.key
	switch {
	case r.external:
		if !allowExternal {
			c.top(f+".external", fmt.Sprintf("external %s %q is refused: %s", r.kind, r.name, why), fmt.Sprintf("use a %s of this project, or set policy.allow_external_%ss in /etc/berth/agent.yaml", r.kind, r.kind))
		}
	case r.name != "" && r.name != p.Name+"_"+r.key:
		c.top(f+".name", fmt.Sprintf("%s name %q is refused: this project's %ss are named %s_<%s>", r.kind, r.name, r.kind, p.Name, r.kind), "leave name: out")
	}
}

// hostPathBlocked says why a host bind mount source is refused, or "".
// It works on the path as written (made absolute by compose), lexically:
// a path that is not allowed is never touched.
func hostPathBlocked(src string, p Policy) (msg, hint string) {
	src = path.Clean(filepath.ToSlash(src))
	if src == "/" {
		return "mounting the host root is refused", "mount the directory the service needs"
	}
	for _, s := range dockerSockets {
		if s == src || strings.HasPrefix(s, src+"/") {
			if p.AllowDockerSocket {
				return "", ""
			}
			return fmt.Sprintf("mounting %s hands the container control of the host's Docker", src), policyHint
		}
	}
	if !underAny(src, p.AllowedBindMounts) {
		return fmt.Sprintf("bind mount of %s is outside the allowed host paths", src), "add its directory to policy.allowed_bind_mounts in /etc/berth/agent.yaml, or use a named volume"
	}
	return "", ""
}

func underAny(src string, prefixes []string) bool {
	for _, a := range prefixes {
		a = path.Clean(filepath.ToSlash(a))
		if src == a || strings.HasPrefix(src, a+"/") || a == "/" {
			return true
		}
	}
	return false
}
