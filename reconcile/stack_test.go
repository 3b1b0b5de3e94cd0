package reconcile

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"berth.dev/berth/engine"
	"berth.dev/berth/envs"
	"berth.dev/berth/internal/failure"
	"berth.dev/berth/internal/testenv"
	"berth.dev/berth/lb"
	"berth.dev/berth/migrate"
	"github.com/hashicorp/go-hclog"
)

// stackHost is a host whose env has two servers — web (two replicas) and
// api — and a worker, behind real nginx (one upstream each, locations
// /web/ and /api/ of one site) and real HAProxy (one backend each, a
// frontend each).
type stackHost struct {
	*host
	hp    *testenv.HAProxy
	urls  map[string]string // "nginx/web" → URL
	probe map[string]string // nginx upstream → its probe URL (none by default)
}

func newStackHost(t *testing.T) *stackHost {
	d := testenv.Docker(t)
	h := &host{t: t, d: d, name: "s" + d.RunID, reg: testenv.StartRegistry(t)}
	d.CleanupLabel(t, engine.LabelEnv, h.name)
	d.CleanupLabel(t, "com.docker.compose.project", h.name)
	h.engine = engine.New(d.Client, nil)
	s := &stackHost{host: h, urls: map[string]string{}, probe: map[string]string{}}

	h.nginx = testenv.NewNginx(t)
	site := fmt.Sprintf("server { listen 127.0.0.1:%d;", h.nginx.Port)
	for _, svc := range []string{"web", "api"} {
		os.WriteFile(envs.NginxFile(h.nginx.ConfD, h.name, svc), []byte(fmt.Sprintf("upstream %s { server 127.0.0.1:1; }\n", svc)), 0o644)
		site += fmt.Sprintf(" location /%s/ { proxy_pass http://%s; }", svc, svc)
		s.urls["nginx/"+svc] = h.nginx.URL() + "/" + svc + "/"
	}
	os.WriteFile(filepath.Join(h.nginx.ConfD, "site.conf"), []byte(site+" }\n"), 0o644)
	h.nginx.Start(t)

	s.hp = testenv.NewHAProxy(t, "web")
	s.hp.WriteSection(t, testenv.HAProxyBackend("web"))
	s.urls["haproxy/web"] = s.hp.URL() + "/"
	s.urls["haproxy/api"] = s.hp.AddBackend(t, "api") + "/"
	s.hp.Start(t)

	h.deployer = &Deployer{
		// The deploy's log in the test's: a failure shows each step.
		Log:    hclog.New(&hclog.LoggerOptions{Output: testenv.LogWriter(t, "berth"), Level: hclog.Info}),
		Images: h.engine, Containers: h.engine, Observer: h.engine,
		OneShots:      &migrate.Runner{Engine: h.engine, Ledger: filepath.Join(t.TempDir(), "migrations.json"), Timeout: 30 * time.Second},
		Switcher:      s.switcher,
		HealthTimeout: testenv.HealthTimeout,
		Settle:        time.Second,
	}
	return s
}

func (s *stackHost) switcher(env *envs.Env) Switcher {
	switch env.LB.Type {
	case "haproxy":
		return &lb.HAProxy{Backend: env.LB.Backend, Env: env.Name, RuntimeAPI: s.hp.RuntimeAPI(), ServersDir: s.hp.ServersDir,
			Command: append([]string{"haproxy"}, s.hp.Args()...), DrainTimeout: 20 * time.Second, ReadyTimeout: 10 * time.Second}
	default:
		return &lb.Nginx{Upstream: env.LB.Upstream, File: env.LB.File, Command: append([]string{"nginx"}, s.nginx.Args()...),
			PidFile: filepath.Join(s.nginx.Dir, "nginx.pid"), ProbeURL: s.probe[env.LB.Upstream], Drain: 20 * time.Second}
	}
}

// stackRev is one revision of the stack env.
type stackRev struct {
	image testenv.AppImage
	lb    string            // nginx or haproxy
	env   map[string]string // a server's extra environment, by service: "APP_FAIL_AFTER: 0s"
	watch string            // x-berth.watch of web ("" for none)
}

func (s *stackHost) stackEnv(r stackRev) *envs.Env {
	s.t.Helper()
	name := func(svc string) string {
		if r.lb == "haproxy" {
			return "{type: haproxy, backend: " + svc + "}"
		}
		return "{type: nginx, upstream: " + svc + "}"
	}
	watch := ""
	if r.watch != "" {
		watch = ", watch: " + r.watch
	}
	compose := fmt.Sprintf(`
services:
  migrate:
    image: %[1]s
    environment: {APP_MODE: exit}
    x-berth: {role: migrate}
  worker:
    image: %[1]s
    environment: {APP_PORT: "9000"}
  api:
    image: %[1]s
    environment: {APP_MARKER: api, %[2]s}
    x-berth: {role: server, port: 8080, lb: %[3]s}
  web:
    image: %[1]s
    environment: {APP_MARKER: web, %[4]s}
    deploy: {replicas: 2}
    x-berth: {role: server, port: 8080, lb: %[5]s%[6]s}
`, r.image.Ref(), r.env["api"], name("api"), r.env["web"], name("web"), watch)
	dir := s.t.TempDir()
	os.MkdirAll(filepath.Join(dir, "envs", s.name), 0o755)
	os.WriteFile(filepath.Join(dir, "envs", s.name, "compose.yaml"), []byte(compose), 0o644)
	env, err := envs.Load(context.Background(), dir, s.name, envs.Options{LB: envs.LBOptions{ConfDir: s.nginx.ConfD}})
	if err != nil {
		s.t.Fatal(err)
	}
	return env
}

func (s *stackHost) deployStack(r stackRev, revision string) (*Report, error) {
	s.t.Helper()
	return s.deployer.Deploy(s.t.Context(), Input{Env: s.stackEnv(r), Revision: revision})
}

// serves checks that lb serves version on both servers, web from both of
// its replicas.
func (s *stackHost) serves(lbType, version string) {
	s.t.Helper()
	hosts := map[string]bool{}
	for range 20 {
		for _, svc := range []string{"web", "api"} {
			got := testenv.Answer(s.urls[lbType+"/"+svc])
			v, host, _ := strings.Cut(got, " ")
			if v != "version="+version {
				s.t.Fatalf("%s %s answers %q, want %s", lbType, svc, got, version)
			}
			if svc == "web" {
				hosts[host] = true
			}
		}
	}
	if len(hosts) != 2 {
		s.t.Fatalf("%s web answered from %d containers, want its 2 replicas: %v", lbType, len(hosts), hosts)
	}
}

// running lists "service@revision" of the running containers.
func (s *stackHost) running() []string {
	s.t.Helper()
	var out []string
	for _, c := range s.containers() {
		if strings.HasSuffix(c, ":running") {
			out = append(out, strings.TrimSuffix(c, ":running"))
		}
	}
	return out
}

func wantRunning(revision string) []string {
	return []string{"api@" + revision, "web@" + revision, "web@" + revision, "worker@" + revision}
}

// An env with two servers (web with two replicas) and a worker cuts over
// under load with no failed request, through nginx and through HAProxy. A
// second server whose switch fails rolls the first one's switch back, so
// the host stays on one revision, and the first server's load loses no
// request across its switch and the rollback.
func TestStack_TwoServersReplicasAndAWorkerCutOverUnderLoad(t *testing.T) {
	t.Parallel()
	for _, lbType := range []string{"nginx", "haproxy"} {
		t.Run(lbType, func(t *testing.T) {
			t.Parallel()
			s := newStackHost(t)
			v1 := testenv.PushApp(t, s.reg, testenv.ImageSpec{Version: "v1"})
			v2 := testenv.PushApp(t, s.reg, testenv.ImageSpec{Version: "v2"})
			v3 := testenv.PushApp(t, s.reg, testenv.ImageSpec{Version: "v3"})
			if _, err := s.deployStack(stackRev{image: v1, lb: lbType}, "r1"); err != nil {
				t.Fatal(err)
			}
			s.serves(lbType, "v1")

			loads := []*testenv.Load{testenv.StartLoad(t, s.urls[lbType+"/web"], 4, testenv.Paced), testenv.StartLoad(t, s.urls[lbType+"/api"], 4, testenv.Paced)}
			flowing(t, loads)
			res, err := s.deployStack(stackRev{image: v2, lb: lbType}, "r2")
			if err != nil {
				t.Fatal(err)
			}
			flowing(t, loads)
			for i, l := range loads {
				if ls := l.Stop(); ls.Failed != 0 || ls.Sent == 0 {
					t.Fatalf("load %d across the cutover: %s", i, ls)
				} else {
					t.Logf("load %d: %d requests, 0 failed; phases %v", i, ls.Sent, res.Phases)
				}
			}
			s.serves(lbType, "v2")
			if got := s.running(); !slices.Equal(got, wantRunning("r2")) {
				t.Fatalf("running %v", got)
			}

			if lbType == "haproxy" {
				// HAProxy restarted after a switch serves the new
				// servers: the backends' files hold them.
				s.hp.Restart(t)
				s.serves(lbType, "v2")
			}

			// The second server's switch fails (api switches first, then
			// web): nginx's probe through web gets a 500; in HAProxy,
			// someone put a server of their own into web's backend, which
			// berth then refuses as not its own.
			if lbType == "nginx" {
				s.probe["web"] = s.urls["nginx/web"]
			} else {
				for _, cmd := range []string{"add server web/other 127.0.0.1:1", "enable server web/other"} {
					if out := s.hp.Command(t, cmd); strings.Contains(out, "rror") {
						t.Fatalf("%s: %s", cmd, out)
					}
				}
			}
			// api is under load throughout: its switch to v3 and back
			// loses nothing. (Not web: nginx's failing switch sends it to
			// the v3 web, which answers 500, until the probe catches it,
			// and in HAProxy the server put there above has no app.)
			loaded := []string{"api"}
			loads = loads[:0]
			for _, svc := range loaded {
				loads = append(loads, testenv.StartLoad(t, s.urls[lbType+"/"+svc], 4, testenv.Paced))
			}
			flowing(t, loads)
			res, err = s.deployStack(stackRev{image: v3, lb: lbType, env: map[string]string{"web": "APP_FAIL_AFTER: 1ms"}}, "r3")
			flowing(t, loads)
			for i, l := range loads {
				if ls := l.Stop(); ls.Failed != 0 || ls.Sent == 0 {
					t.Errorf("%s under load across the switch and its rollback: %s", loaded[i], ls)
				} else {
					t.Logf("%s under load: %d requests, 0 failed across the switch and its rollback", loaded[i], ls.Sent)
				}
			}
			if err == nil || !failure.IsVerdict(err) || !strings.Contains(err.Error(), "service web") {
				t.Fatalf("deploy with a failing second switch: %v (class %v), want a verdict on web", err, failure.Of(err))
			}
			if !slices.ContainsFunc(res.Undone, func(u string) bool { return strings.HasPrefix(u, "switch api back to ") }) {
				t.Fatalf("undone %v: the first server's switch was not put back", res.Undone)
			}
			if lbType == "haproxy" {
				if !strings.Contains(err.Error(), "servers berth does not manage (other)") {
					t.Fatalf("refusal %v, want it to name the server berth does not own", err)
				}
				s.hp.Command(t, "set server web/other state maint")
				s.hp.Command(t, "del server web/other")
			}
			s.serves(lbType, "v2")
			if got := s.running(); !slices.Equal(got, wantRunning("r2")) {
				t.Fatalf("after the rollback: running %v", got)
			}
		})
	}
}

// The watch: after the switch the old servers keep running, out of the
// balancer; a release that stays healthy through its watch goes live, one
// whose server turns unhealthy once its watch began is switched back to
// the old servers within the watch — a verdict, with no failed request.
func TestStack_WatchSwitchesBackAReleaseThatTurnsUnhealthy(t *testing.T) {
	t.Parallel()
	for _, lbType := range []string{"nginx", "haproxy"} {
		t.Run(lbType, func(t *testing.T) {
			t.Parallel()
			s := newStackHost(t)
			v1 := testenv.PushApp(t, s.reg, testenv.ImageSpec{Version: "v1"})
			v2 := testenv.PushApp(t, s.reg, testenv.ImageSpec{Version: "v2"})
			v3 := testenv.PushApp(t, s.reg, testenv.ImageSpec{Version: "v3"})
			if _, err := s.deployStack(stackRev{image: v1, lb: lbType, watch: "1m"}, "r1"); err != nil {
				t.Fatal(err) // a first deploy has nothing to switch back to: not watched
			}
			res, err := s.deployStack(stackRev{image: v2, lb: lbType, watch: "3s"}, "r2")
			if err != nil || !slices.ContainsFunc(res.Phases, func(p Timing) bool { return p.Name == "watch" && p.Duration >= 2*time.Second }) || res.WatchUntil.IsZero() {
				t.Fatalf("a release that stays healthy through its watch: %v, phases %v", err, res.Phases)
			}
			s.serves(lbType, "v2")

			loads := []*testenv.Load{testenv.StartLoad(t, s.urls[lbType+"/web"], 4, testenv.Paced), testenv.StartLoad(t, s.urls[lbType+"/api"], 4, testenv.Paced)}
			flowing(t, loads)
			start := time.Now()
			s.turnBadInWatch("r3")
			res, err = s.deployStack(stackRev{image: v3, lb: lbType, watch: "40s", env: map[string]string{"web": "APP_UNHEALTHY_WHEN: /unhealthy"}}, "r3")
			took := time.Since(start)
			flowing(t, loads)
			for i, l := range loads {
				if ls := l.Stop(); ls.Failed != 0 || ls.Sent == 0 {
					t.Errorf("load %d: %s", i, ls)
				}
			}
			if err == nil || !failure.IsVerdict(err) || !strings.Contains(err.Error(), "turned unhealthy") || !strings.Contains(err.Error(), "within its watch of 40s") {
				t.Fatalf("a release turning unhealthy within its watch: %v (class %v)", err, failure.Of(err))
			}
			var back []string
			for _, u := range res.Undone {
				if strings.HasPrefix(u, "switch ") {
					back = append(back, u)
				}
			}
			// Within the watch: past it the release would have stayed live
			// (err nil); the verdict above names the watch. No wall-clock
			// bound: a busy machine only makes the gates slower.
			if len(back) != 2 {
				t.Fatalf("undone %v after %s: want both servers switched back", res.Undone, took)
			}
			t.Logf("switched back %s after the deploy started: %v; phases %v", took.Round(time.Millisecond), err, res.Phases)
			s.serves(lbType, "v2")
			if got := s.running(); !slices.Equal(got, wantRunning("r2")) {
				t.Fatalf("after the watch failed: running %v; undone %v", got, res.Undone)
			}
		})
	}
}

// With HAProxy the watch also reads the new servers' answers: a release
// whose server starts answering 500 once its watch began (its HEALTHCHECK
// still passing) is switched back at once, a verdict naming the answers
// or HAProxy's checks.
func TestStack_WatchSwitchesBackOnFailedAnswers(t *testing.T) {
	t.Parallel()
	s := newStackHost(t)
	v1 := testenv.PushApp(t, s.reg, testenv.ImageSpec{Version: "v1"})
	v2 := testenv.PushApp(t, s.reg, testenv.ImageSpec{Version: "v2"})
	if _, err := s.deployStack(stackRev{image: v1, lb: "haproxy"}, "r1"); err != nil {
		t.Fatal(err)
	}
	l := testenv.StartLoad(t, s.urls["haproxy/web"], 4, testenv.Paced)
	l.Flowing(t, 100)
	s.turnBadInWatch("r2")
	res, err := s.deployStack(stackRev{image: v2, lb: "haproxy", watch: "40s", env: map[string]string{"web": "APP_FAIL_WHEN: /unhealthy"}}, "r2")
	l.Flowing(t, 100)
	ls := l.Stop()
	sent, failed := ls.Sent, ls.Failed
	// Whichever HAProxy sees first: the clients' 500s, or its own checks
	// (on /) taking both new servers down.
	if err == nil || !failure.IsVerdict(err) || !(strings.Contains(err.Error(), "the new servers failed") || strings.Contains(err.Error(), "took every new server down")) {
		t.Fatalf("a release failing answers within its watch: %v (class %v)", err, failure.Of(err))
	}
	t.Logf("%v; %d of %d requests failed before the switch back; undone %v", err, failed, sent, res.Undone)
	s.serves("haproxy", "v1")
	if got := s.running(); !slices.Equal(got, wantRunning("r1")) {
		t.Fatalf("after the watch failed: running %v; undone %v", got, res.Undone)
	}
}

// flowing waits until each load has had requests answered through its
// balancer (before a cutover, and again after it).
func flowing(t *testing.T, loads []*testenv.Load) {
	t.Helper()
	for _, l := range loads {
		l.Flowing(t, 100)
	}
}
