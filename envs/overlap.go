package envs

import (
	"context"
	"fmt"
	"path"
	"strings"

	"berth.dev/berth/internal/failure"
)

// HostBind is a bind mount of a container on this host, of any project or
// environment: its source as the engine has it, and whether the container
// may write there.
type HostBind struct {
	Container string
	Source    string
	RW        bool
}

// envBind is one bind mount of the environment being loaded, for the
// overlap check: its source cleaned, and resolved when it exists (the path
// Docker is given).
type envBind struct {
	service, field string
	source         string
	rw             bool
	host           bool // a host path, not a file of the config repository
}

const overlapHint = "mount it read-only, or mount directories side by side rather than one inside the other (docs/security.md#mounts)"

// checkBindOverlap refuses a writable bind mount whose source is above
// another bind mount's source: a container that may write /srv can swap
// /srv/x for a symlink to / after validation, and Docker resolves /srv/x
// again whenever the container mounting it (re)starts — by its restart
// policy, with no berth involved — and mounts the host's root. Checked
// within the environment, and against every container on this host (other
// environments, the revision this one replaces, containers berth does not
// manage) through host, when the agent gives it. A source equal to another
// is not refused: a container cannot replace the directory it has mounted.
func checkBindOverlap(ctx context.Context, c *collector, binds []envBind, host func(context.Context) ([]HostBind, error)) error {
	who := func(a, b envBind) string {
		if a.service == b.service {
			return "this service's " + b.field
		}
		return "service " + b.service
	}
	for i, a := range binds {
		for j, b := range binds {
			if i != j && a.rw && below(b.source, a.source) {
				c.service(a.service, a.field, fmt.Sprintf("writable bind mount of %s is above %s, which %s mounts: a container could put a symlink there, and Docker follows it when that container (re)starts", a.source, b.source, who(a, b)), overlapHint)
			}
		}
	}
	hasHost := false
	for _, b := range binds {
		hasHost = hasHost || b.host
	}
	if host == nil || !hasHost {
		return nil
	}
	others, err := host(ctx)
	if err != nil {
		return failure.AsOutage(fmt.Errorf("list the bind mounts of this host's containers: %w", err))
	}
	for _, a := range binds {
		for _, h := range others {
			src := path.Clean(h.Source)
			switch {
			case h.RW && below(a.source, src):
				c.service(a.service, a.field, fmt.Sprintf("bind mount of %s is inside %s, which container %s on this host mounts writable: it could put a symlink there, and Docker follows it when this container (re)starts", a.source, src, h.Container), overlapHint)
			case a.rw && below(src, a.source):
				c.service(a.service, a.field, fmt.Sprintf("writable bind mount of %s is above %s, which container %s on this host mounts: a container could put a symlink there, and Docker follows it when that one (re)starts", a.source, src, h.Container), overlapHint)
			}
		}
	}
	return nil
}

// below says whether p is strictly inside dir (both clean and absolute).
func below(p, dir string) bool {
	if dir == "/" {
		return p != "/"
	}
	return strings.HasPrefix(p, dir+"/")
}
