package envs

import (
	"strings"
	"testing"
	"time"
)

// An env with several servers: each names its own upstream or backend (the
// top-level x-berth.lb stays the single server's), replicas for servers
// and workers, and a watch at the top level or per server.
func TestLoad_SeveralServersReplicasAndWatch(t *testing.T) {
	img := "r/app@" + d1
	env, ps := load(t, map[string]string{"envs/prod/compose.yaml": `services:
  web:
    image: ` + img + `
    deploy: {replicas: 2}
    x-berth: {role: server, port: 8080, lb: {type: nginx, upstream: web}}
  api:
    image: ` + img + `
    x-berth: {role: server, port: 9000, watch: 0s, lb: {type: haproxy, backend: api_v1}}
  admin:
    image: ` + img + `
    x-berth: {role: server, port: 8081, watch: 2m}
  worker:
    image: ` + img + `
    deploy: {replicas: 3}
x-berth:
  lb: {type: nginx, upstream: admin}
  watch: 30s
`}, Options{LB: LBOptions{ConfDir: "/srv/lb"}})
	if len(ps) > 0 {
		t.Fatal(ps)
	}
	for _, tc := range []struct {
		service  string
		lb       string
		file     string
		watch    time.Duration
		replicas int
	}{
		{"web", "nginx upstream web", "/srv/lb/berth-prod-web.conf", 30 * time.Second, 2},
		{"api", "haproxy backend api_v1", "", 0, 1},
		{"admin", "nginx upstream admin", "/srv/lb/berth-prod-admin.conf", 2 * time.Minute, 1},
		{"worker", "", "", 0, 3},
	} {
		s := env.Service(tc.service).Berth
		lb, file := "", ""
		if s.LB != nil {
			lb, file = s.LB.String(), s.LB.File
		}
		if lb != tc.lb || file != tc.file || s.Watch != tc.watch || s.Replicas != tc.replicas {
			t.Errorf("%s: lb %q file %q watch %s replicas %d, want %q %q %s %d", tc.service, lb, file, s.Watch, s.Replicas, tc.lb, tc.file, tc.watch, tc.replicas)
		}
	}
}

func TestValidate_ServersBalancersReplicasAndWatch(t *testing.T) {
	const f = "envs/prod/compose.yaml"
	img := "r/app@" + d1
	server := func(name, extra string) string {
		return "  " + name + ":\n    image: " + img + "\n    x-berth: {role: server, port: 80" + extra + "}\n"
	}
	tests := []struct {
		name    string
		compose string
		opts    Options
		want    []string
	}{
		{
			name:    "two servers on the top-level balancer",
			compose: "services:\n" + server("a", "") + server("b", "") + lbBlock,
			want:    []string{f + `:b:x-berth.lb: b uses the top-level x-berth.lb, nginx upstream app, which server a switches already (give each server its own x-berth.lb: one upstream or backend per server)`},
		},
		{
			name:    "two servers on one upstream",
			compose: "services:\n" + server("a", ", lb: {type: nginx, upstream: u}") + server("b", ", lb: {type: nginx, upstream: u}"),
			want:    []string{f + `:b:x-berth.lb: nginx upstream u is switched by server a already (one upstream or backend per server: give b its own)`},
		},
		{
			name:    "a top-level balancer no server uses",
			compose: "services:\n" + server("a", ", lb: {type: haproxy, backend: a}") + lbBlock,
			want:    []string{f + `::x-berth.lb: no server uses it: each names its own x-berth.lb (remove the top-level x-berth.lb)`},
		},
		{
			name:    "lb and watch on a worker",
			compose: "services:\n  w:\n    image: " + img + "\n    x-berth: {lb: {type: nginx, upstream: w}, watch: 1m}\n",
			want: []string{
				f + `:w:x-berth.lb: only servers are switched in a load balancer (set x-berth.role: server, or remove x-berth.lb)`,
				f + `:w:x-berth.watch: only servers are watched after a switch (set x-berth.role: server, or remove x-berth.watch)`,
			},
		},
		{
			name: "replicas of a one-shot, out of range, on a fixed port",
			compose: "services:\n  m:\n    image: " + img + "\n    deploy: {replicas: 2}\n    x-berth: {role: migrate}\n" +
				"  w:\n    image: " + img + "\n    deploy: {replicas: 99}\n" +
				"  p:\n    image: " + img + "\n    ports: ['9000:9000']\n    deploy: {replicas: 2}\n    x-berth: {stop_first: true}\n",
			want: []string{
				f + `:m:deploy.replicas: a migrate service runs once per deploy (remove deploy.replicas)`,
				f + `:p:deploy.replicas: 2 replicas cannot all bind the fixed host port (publish no fixed port (make it a server behind the load balancer), or run one replica)`,
				f + `:w:deploy.replicas: 99 replicas (from 1 to 32 containers of a service on one host)`,
			},
		},
		{
			name:    "haproxy without a backend, an unknown balancer, a watch too long",
			compose: "services:\n" + server("a", ", lb: {type: haproxy, upstream: x}") + server("b", ", lb: {type: traefik}, watch: 2h"),
			want: []string{
				f + `:a:x-berth.lb.backend: "" is not a valid backend name (letters, digits, '.', '_' and '-', starting with a letter or digit, at most 100 characters)`,
				f + `:a:x-berth.lb.upstream: unknown key "upstream" (known keys: type, backend)`,
				f + `:b:x-berth.lb.type: unsupported load balancer "traefik" (berth supports nginx and haproxy)`,
				f + `:b:x-berth.watch: 2h0m0s is longer than berth watches a release (1h0m0s) (watch for minutes: the env's next deploy waits for the watch to end)`,
			},
		},
		{
			name:    "a backend another env of the host owns",
			compose: "services:\n" + server("a", ", lb: {type: haproxy, backend: shop}"),
			opts:    Options{LB: LBOptions{BackendOwner: func(b string) string { return map[string]string{"shop": "staging"}[b] }}},
			want:    []string{f + `:a:x-berth.lb.backend: backend shop belongs to environment staging on this host (name a backend of this environment's own)`},
		},
		{
			name:    "the same names for an upstream and a backend",
			compose: "services:\n" + server("a", ", lb: {type: haproxy, backend: app}") + server("b", ", lb: {type: nginx, upstream: app}"),
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, ps := load(t, map[string]string{"envs/prod/compose.yaml": tc.compose}, tc.opts)
			var got []string
			for _, p := range ps {
				got = append(got, p.String())
			}
			if strings.Join(got, "\n") != strings.Join(tc.want, "\n") {
				t.Errorf("problems:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tc.want, "\n"))
			}
		})
	}
}

// Replicas, the balancer and the watch do not change a container's config
// hash: scaling or watching longer does not replace the containers.
func TestConfigHash_IgnoresReplicasBalancerAndWatch(t *testing.T) {
	img := "r/app@" + d1
	hash := func(svc string) string {
		t.Helper()
		env, ps := load(t, map[string]string{"envs/prod/compose.yaml": "services:\n  web:\n    image: " + img + "\n" + svc}, Options{})
		if len(ps) > 0 {
			t.Fatal(ps)
		}
		return env.Service("web").Hash
	}
	base := hash("    x-berth: {role: server, port: 80}\nx-berth:\n  lb: {type: nginx, upstream: a}\n")
	for _, svc := range []string{
		"    deploy: {replicas: 3}\n    x-berth: {role: server, port: 80}\nx-berth:\n  lb: {type: nginx, upstream: a}\n",
		"    x-berth: {role: server, port: 80, watch: 1m, lb: {type: haproxy, backend: b}}\n",
	} {
		if h := hash(svc); h != base {
			t.Errorf("hash changed with %q", svc)
		}
	}
	if h := hash("    x-berth: {role: server, port: 81}\nx-berth:\n  lb: {type: nginx, upstream: a}\n"); h == base {
		t.Error("a new port kept the hash")
	}
}
