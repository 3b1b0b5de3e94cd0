package envs

import (
	"fmt"
	"maps"
	"regexp"
	"strconv"
	"strings"

	interp "github.com/compose-spec/compose-go/v2/interpolation"
	"github.com/compose-spec/compose-go/v2/tree"
)

// maxProjectPorts bounds the port mappings compose-go expands for a whole
// environment (every file, every interpolation of it): 4,096 take it about
// 0.4 s; 4 × 65,535 took minutes and gigabytes.
const maxProjectPorts = 16 * 256

// portGuard counts, as compose-go interpolates them, the port mappings of
// every ports entry — of every file, included and extended ones too, with
// the variables compose-go interpolates each with (an included file's own
// .env) — and refuses a range before compose-go expands it. Counting the
// raw files cannot do that: "${R}" is "1-65535:1-65535" only in the
// included file's interpolation.
type portGuard struct {
	total   int
	refused *portRefusal
}

type portRefusal struct{ msg string }

func (r *portRefusal) Error() string { return r.msg }

var portPathRe = regexp.MustCompile(`services\.([^ ]+?)\.ports\.\[\]`)

// service names the service whose ports compose-go was interpolating when
// the guard refused (compose-go's error carries the path), or "".
func (r *portRefusal) service(err error) string {
	if m := portPathRe.FindStringSubmatch(err.Error()); m != nil {
		return m[1]
	}
	return ""
}

// guardPorts returns compose-go's interpolation options with the guard
// cast on the short and long port syntax. compose-go hands the same cast
// mapping to every included and extended file it loads.
func guardPorts(o *interp.Options, g *portGuard) *interp.Options {
	out := *o
	out.TypeCastMapping = maps.Clone(o.TypeCastMapping)
	if out.TypeCastMapping == nil {
		out.TypeCastMapping = map[tree.Path]interp.Cast{}
	}
	out.TypeCastMapping[tree.NewPath("services", tree.PathMatchAll, "ports", tree.PathMatchList)] = g.cast
	out.TypeCastMapping[tree.NewPath("services", tree.PathMatchAll, "ports", tree.PathMatchList, "published")] = g.cast
	return &out
}

func (g *portGuard) cast(v string) (any, error) {
	n := portCount(v)
	g.total += n
	switch {
	case g.refused != nil:
	case n > maxPorts:
		g.refused = &portRefusal{fmt.Sprintf("port ranges expand to %d mappings, more than %d", n, maxPorts)}
	case g.total > maxProjectPorts:
		g.refused = &portRefusal{fmt.Sprintf("the environment's port ranges expand to more than %d mappings", maxProjectPorts)}
	}
	if g.refused != nil {
		return nil, g.refused
	}
	return v, nil
}

// countPorts counts the mappings a service's ports: expand to, as written
// (an entry with a variable counts once here, and as interpolated in
// portGuard).
func countPorts(v any) int {
	list, _ := v.([]any)
	n := 0
	for _, p := range list {
		var spec string
		switch x := p.(type) {
		case string:
			spec = x
		case map[string]any:
			spec = fmt.Sprint(x["published"]) + ":" + fmt.Sprint(x["target"])
		default:
			spec = fmt.Sprint(x)
		}
		n += portCount(spec)
	}
	return n
}

// portCount is how many mappings one ports entry expands to: the size of
// its largest range ("8000-8099:80-179/tcp" is 100).
func portCount(spec string) int {
	spec, _, _ = strings.Cut(spec, "/")
	most := 1
	for _, part := range strings.Split(spec, ":") {
		lo, hi, ok := strings.Cut(part, "-")
		a, err1 := strconv.Atoi(strings.TrimSpace(lo))
		b, err2 := strconv.Atoi(strings.TrimSpace(hi))
		if ok && err1 == nil && err2 == nil && b-a+1 > most {
			most = b - a + 1
		}
	}
	return most
}
