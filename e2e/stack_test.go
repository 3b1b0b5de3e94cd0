package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"berth.dev/berth/internal/testenv"
)

// stackWorld is the world's host with a stack env: web (two replicas)
// behind HAProxy, api behind the world's nginx upstream, and a worker with
// two replicas, run by the built berth with the agent config's haproxy:
// block.
type stackWorld struct {
	*world
	hp *testenv.HAProxy
}

func newStackWorld(t *testing.T) *stackWorld {
	w := newWorld(t)
	s := &stackWorld{world: w, hp: testenv.StartHAProxy(t, "web")}
	hpCmd, _ := json.Marshal(append([]string{"haproxy"}, s.hp.Args()...))
	cfg, _ := os.ReadFile(w.config)
	cfg = append(cfg, fmt.Sprintf("haproxy:\n  runtime_api: %s\n  servers_dir: %s\n  command: %s\n  drain_timeout: 20s\n", s.hp.RuntimeAPI(), s.hp.ServersDir, hpCmd)...)
	os.WriteFile(w.config, cfg, 0o600)
	return s
}

// commit pushes a revision of the stack env running img.
func (s *stackWorld) commit(msg string, img testenv.AppImage, watch string) string {
	compose := fmt.Sprintf(`services:
  migrate:
    image: %[1]s
    environment: {APP_MODE: exit}
    x-berth: {role: migrate}
  worker:
    image: %[1]s
    environment: {APP_PORT: "9000"}
    deploy: {replicas: 2}
  api:
    image: %[1]s
    x-berth: {role: server, port: 8080, lb: {type: nginx, upstream: app, file: %[2]s}}
  web:
    image: %[1]s
    deploy: {replicas: 2}
    x-berth: {role: server, port: 8080, lb: {type: haproxy, backend: web}}
x-berth:
  watch: %[3]s
`, img.Ref(), s.lbFile, watch)
	return s.repo.CommitFiles(s.t, msg, map[string]string{"envs/" + s.env + "/compose.yaml": compose})
}

// servingHAProxy is the version HAProxy's frontend answers.
func (s *stackWorld) servingHAProxy() string {
	v := version(s.hp.URL() + "/")
	return v
}

func stackWant(c string) []string {
	return []string{"api@" + c[:12] + ":running", "web@" + c[:12] + ":running", "web@" + c[:12] + ":running",
		"worker@" + c[:12] + ":running", "worker@" + c[:12] + ":running"}
}

// converged waits until both balancers serve version and the host runs
// exactly revision c: every replica, nothing older, no standby server left
// in HAProxy.
func (s *stackWorld) converged(t *testing.T, d *daemon, c, version string) {
	t.Helper()
	deadline := time.Now().Add(patience)
	for {
		servers := s.hp.Command(t, "show servers state web")
		n := strings.Count(servers, " berth-")
		if s.serving() == "version="+version && s.servingHAProxy() == "version="+version && slices.Equal(s.containers(), stackWant(c)) && n == 2 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("not converged to %s within %s: nginx %q, haproxy %q, containers %v, haproxy servers %d:\n%s\nthe agent's last lines:\n%s",
				c[:12], patience, s.serving(), s.servingHAProxy(), s.containers(), n, servers, d.tail())
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// The built agent, killed with SIGKILL at each step of a cutover of an env
// with two servers on two balancers (one with two replicas), a worker with
// two replicas and a watch, converges on restart to one whole revision:
// every replica of it, nothing of the old one, both balancers on it.
func TestE2E_StackKilledAtEachPhaseConverges(t *testing.T) {
	testenv.Parallel(t)
	s := newStackWorld(t)
	imgs := map[string]testenv.AppImage{}
	for _, v := range []string{"v1", "v2", "v3", "v4", "v5", "v6", "v7"} {
		imgs[v] = testenv.PushApp(t, s.reg, testenv.ImageSpec{Version: v})
		s.d.CleanupImage(imgs[v].Ref())
	}
	c := s.commit("v1", imgs["v1"], "5s")
	if code, out := s.once(); code != 0 {
		t.Fatalf("v1: %d\n%s", code, out)
	}
	s.converged(t, nil, c, "v1")
	points := []struct {
		version string
		markers []string
	}{
		{"v2", []string{`"@message":"plan"`}},
		{"v3", []string{`"@message":"container started"`, `"service":"worker"`}},
		{"v4", []string{`"@message":"container started"`, `"service":"web"`}},
		{"v5", []string{`"@message":"load balancer switched"`, `"service":"api"`}},
		{"v6", []string{`"@message":"watching the new servers`}},
		{"v7", []string{`"@message":"container retired"`}},
	}
	for _, p := range points {
		t.Run("killed after "+strings.Join(p.markers, " "), func(t *testing.T) {
			c := s.commit(p.version, imgs[p.version], "5s")
			d := s.start()
			d.waitFor(t, p.markers...)
			d.kill()
			d = s.start()
			t.Cleanup(d.kill) // a failed point leaves no agent holding the state dir for the next
			s.converged(t, d, c, p.version)
		})
	}
}
