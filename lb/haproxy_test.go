package lb

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"berth.dev/berth/internal/failure"
	"berth.dev/berth/internal/testenv"
)

// startHAProxy runs HAProxy with backend "app" (section from
// testenv.HAProxyBackend unless section is given) and returns the switcher
// berth would build for it.
func startHAProxy(t testing.TB, section string) (*testenv.HAProxy, *HAProxy) {
	t.Helper()
	hp := testenv.NewHAProxy(t, "app")
	if section == "" {
		section = testenv.HAProxyBackend("app")
	}
	hp.WriteSection(t, section)
	hp.Start(t)
	return hp, switcherFor(hp)
}

// HAProxy is a switcher as reconcile knows it (reconcile.Switcher).
var _ interface {
	Switch(ctx context.Context, backends []string) error
} = (*HAProxy)(nil)

func switcherFor(hp *testenv.HAProxy) *HAProxy {
	return &HAProxy{
		Backend:      "app",
		RuntimeAPI:   hp.RuntimeAPI(),
		ServersDir:   hp.ServersDir,
		Command:      append([]string{"haproxy"}, hp.Args()...),
		DrainTimeout: 20 * time.Second,
		ReadyTimeout: 10 * time.Second,
	}
}

// get fetches url on a fresh connection.
func get(t *testing.T, url string) (int, string) {
	t.Helper()
	c := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 10 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// servesOnly checks that every one of n requests reaches one of names.
func servesOnly(t *testing.T, url string, names ...string) {
	t.Helper()
	for range 12 {
		code, body := get(t, url)
		ok := false
		for _, n := range names {
			ok = ok || body == n
		}
		if code != 200 || !ok {
			t.Fatalf("got %d %q, want one of %v", code, body, names)
		}
	}
}

// berthServers lists the berth-* servers HAProxy has in backend app.
func berthServers(t *testing.T, hp *testenv.HAProxy) []string {
	t.Helper()
	var out []string
	for _, l := range strings.Split(hp.Command(t, "show servers state app"), "\n") {
		f := strings.Fields(l)
		if len(f) > 4 && f[1] == "app" && strings.HasPrefix(f[3], "berth-") {
			out = append(out, f[3]+"="+f[4]+":"+f[18])
		}
	}
	return out
}

func TestHAProxy_SwitchesThroughTheRuntimeAPI(t *testing.T) {
	a, b := newAppServer(t, "a", 0), newAppServer(t, "b", 0)
	hp, sw := startHAProxy(t, "")
	if err := sw.Switch(t.Context(), []string{a.addr}); err != nil {
		t.Fatal(err)
	}
	servesOnly(t, hp.URL(), "a")
	if err := sw.Switch(t.Context(), []string{b.addr}); err != nil {
		t.Fatal(err)
	}
	servesOnly(t, hp.URL(), "b")
	if got, want := strings.Join(berthServers(t, hp), " "), serverName(mustAddrPort(t, b.addr))+"="+b.addr; got != want {
		t.Fatalf("live berth servers %q, want %q", got, want)
	}
	file, _ := os.ReadFile(hp.SectionFile())
	if !bytes.Contains(file, []byte("server "+serverName(mustAddrPort(t, b.addr))+" "+b.addr+"\n")) || bytes.Contains(file, []byte(a.addr)) {
		t.Fatalf("section file does not hold exactly b:\n%s", file)
	}
	if !bytes.HasPrefix(file, []byte(testenv.HAProxyBackend("app"))) {
		t.Fatalf("the operator's lines were not kept:\n%s", file)
	}
}

func TestHAProxy_DownIsAnOutage(t *testing.T) {
	a := newAppServer(t, "a", 0)
	hp, sw := startHAProxy(t, "")
	hp.Stop(t)
	err := sw.Switch(t.Context(), []string{a.addr})
	if err == nil || !failure.IsOutage(err) {
		t.Fatalf("switch with HAProxy stopped: %v (class %v), want an outage", err, failure.Of(err))
	}
}

func mustAddrPort(t *testing.T, s string) netip.AddrPort {
	t.Helper()
	ap, err := netip.ParseAddrPort(s)
	if err != nil {
		t.Fatal(err)
	}
	return ap
}

func TestHAProxy_NoFailedRequestsAcrossSwitchesUnderLoad(t *testing.T) {
	hp, sw := startHAProxy(t, "")
	cur := []*appServer{newAppServer(t, "v0", 2*time.Millisecond)}
	addrs := func(apps []*appServer) (out []string) {
		for _, a := range apps {
			out = append(out, a.addr)
		}
		return out
	}
	if err := sw.Switch(t.Context(), addrs(cur)); err != nil {
		t.Fatal(err)
	}
	l := testenv.StartLoad(t, hp.URL()+"/", 8, testenv.Paced)
	waitFor(t, 5*time.Second, "load reaching v0", func() bool { return cur[0].served.Load() > 100 })
	type retired struct {
		app    *appServer
		served int64
	}
	var old []retired
	for i := 1; i <= 6; i++ {
		// One server, then two replicas, then one…
		next := []*appServer{newAppServer(t, fmt.Sprintf("v%d", i), 2*time.Millisecond)}
		if i%2 == 0 {
			next = append(next, newAppServer(t, fmt.Sprintf("v%d-2", i), 2*time.Millisecond))
		}
		start := time.Now()
		if err := sw.Switch(t.Context(), addrs(next)); err != nil {
			t.Fatal(err)
		}
		took := time.Since(start)
		// Drained and removed: nothing in flight on an old server when
		// Switch returns, and HAProxy lets go of its connections.
		for _, c := range cur {
			if n := c.inflight.Load(); n != 0 {
				t.Fatalf("switch %d: %d requests still in flight on old server %s when Switch returned", i, n, c.name)
			}
			old = append(old, retired{c, c.served.Load()})
		}
		openAtReturn := int64(0)
		for _, c := range cur {
			openAtReturn += c.conns.Load()
			waitFor(t, 5*time.Second, "HAProxy closing its connections to "+c.name, func() bool { return c.conns.Load() == 0 })
		}
		closedAfter := time.Since(start) - took
		for _, n := range next {
			waitFor(t, 5*time.Second, "load reaching "+n.name, func() bool { return n.served.Load() > 50 })
		}
		t.Logf("switch %d to %d server(s) took %s; %d connections to the old servers open at return, all closed %s later",
			i, len(next), took.Round(time.Millisecond), openAtReturn, closedAfter.Round(time.Millisecond))
		cur = next
	}
	ls := l.Stop()
	for _, r := range old {
		if n := r.app.served.Load(); n != r.served {
			t.Errorf("retired server %s served %d more requests after Switch returned", r.app.name, n-r.served)
		}
	}
	if ls.Failed != 0 || ls.Sent == 0 {
		t.Fatalf("load across 6 switches: %s", ls)
	}
	t.Logf("load across 6 switches: %s", ls)
}

func TestHAProxy_DrainWaitsForTheLastRequestOfTheOldServer(t *testing.T) {
	a, b := newAppServer(t, "a", 0), newAppServer(t, "b", 0)
	hp, sw := startHAProxy(t, "")
	if err := sw.Switch(t.Context(), []string{a.addr}); err != nil {
		t.Fatal(err)
	}
	slow := make(chan error, 1)
	go func() {
		code, body := 0, ""
		resp, err := http.Get(hp.URL() + "/?sleep=1500ms")
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			code, body = resp.StatusCode, string(b)
		}
		if err == nil && (code != 200 || body != "a") {
			err = fmt.Errorf("slow request answered %d %q", code, body)
		}
		slow <- err
	}()
	waitFor(t, 5*time.Second, "the slow request reaching a", func() bool { return a.inflight.Load() == 1 })
	start := time.Now()
	if err := sw.Switch(t.Context(), []string{b.addr}); err != nil {
		t.Fatal(err)
	}
	took := time.Since(start)
	if a.inflight.Load() != 0 {
		t.Fatal("Switch returned with the slow request still on the old server")
	}
	if err := <-slow; err != nil {
		t.Fatalf("the request in flight during the switch: %v", err)
	}
	servesOnly(t, hp.URL(), "b")
	t.Logf("switch waited %s for the request in flight", took.Round(time.Millisecond))
}

func TestHAProxy_DrainTimeoutCutsTheSessionsLeft(t *testing.T) {
	a, b := newAppServer(t, "a", 0), newAppServer(t, "b", 0)
	hp, sw := startHAProxy(t, "")
	sw.DrainTimeout = 300 * time.Millisecond
	if err := sw.Switch(t.Context(), []string{a.addr}); err != nil {
		t.Fatal(err)
	}
	long := make(chan error, 1)
	go func() {
		resp, err := http.Get(hp.URL() + "/?sleep=20s")
		if err == nil {
			_, err = io.ReadAll(resp.Body)
			resp.Body.Close()
			if err == nil && resp.StatusCode == 200 {
				long <- nil
				return
			}
			err = fmt.Errorf("%s, %v", resp.Status, err)
		}
		long <- err
	}()
	waitFor(t, 5*time.Second, "the long request reaching a", func() bool { return a.inflight.Load() == 1 })
	if err := sw.Switch(t.Context(), []string{b.addr}); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-long:
		if err == nil {
			t.Fatal("the request left past the drain timeout was answered, want it cut")
		}
		t.Logf("the request left past the drain timeout: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("the request left past the drain timeout is still running")
	}
	if got := berthServers(t, hp); len(got) != 1 || !strings.HasPrefix(got[0], serverName(mustAddrPort(t, b.addr))+"=") {
		t.Fatalf("live servers %v, want b only", got)
	}
}

func TestHAProxy_ReloadAndRestartKeepTheLiveServers(t *testing.T) {
	a, b, c := newAppServer(t, "a", 0), newAppServer(t, "b", 0), newAppServer(t, "c", 0)
	hp, sw := startHAProxy(t, "")
	for _, s := range []*appServer{a, b} {
		if err := sw.Switch(t.Context(), []string{s.addr}); err != nil {
			t.Fatal(err)
		}
	}
	want := []string{serverName(mustAddrPort(t, b.addr)) + "=" + b.addr}
	hp.Reload(t)
	servesOnly(t, hp.URL(), "b")
	if got := berthServers(t, hp); strings.Join(got, " ") != strings.Join(want, " ") {
		t.Fatalf("after a reload HAProxy has %v, want %v", got, want)
	}
	hp.Restart(t)
	servesOnly(t, hp.URL(), "b")
	if got := berthServers(t, hp); strings.Join(got, " ") != strings.Join(want, " ") {
		t.Fatalf("after a restart HAProxy has %v, want %v", got, want)
	}
	// The server loaded from the file is switched away from like a
	// dynamic one, and a second switch to the same servers changes nothing.
	if err := sw.Switch(t.Context(), []string{c.addr}); err != nil {
		t.Fatal(err)
	}
	servesOnly(t, hp.URL(), "c")
	hp.Reload(t)
	servesOnly(t, hp.URL(), "c")
}

func TestHAProxy_SwitchingToTheLiveServersChangesNothing(t *testing.T) {
	a, b := newAppServer(t, "a", 0), newAppServer(t, "b", 0)
	hp, sw := startHAProxy(t, "")
	var phases []string
	sw.observe = func(p string, _ time.Duration) { phases = append(phases, p) }
	if err := sw.Switch(t.Context(), []string{a.addr, b.addr}); err != nil {
		t.Fatal(err)
	}
	if len(phases) == 0 {
		t.Fatal("the first switch ran no phase")
	}
	fi1, _ := os.Stat(hp.SectionFile())
	phases = nil
	for _, order := range [][]string{{a.addr, b.addr}, {b.addr, a.addr}} {
		if err := sw.Switch(t.Context(), order); err != nil {
			t.Fatal(err)
		}
	}
	if len(phases) != 0 {
		t.Fatalf("switching to the live servers ran %v", phases)
	}
	if fi2, _ := os.Stat(hp.SectionFile()); !fi2.ModTime().Equal(fi1.ModTime()) {
		t.Fatal("switching to the live servers rewrote the section file")
	}
	servesOnly(t, hp.URL(), "a", "b")
}

func TestHAProxy_FailedSwitchPutsTheOldServersBack(t *testing.T) {
	a := newAppServer(t, "a", 0)
	hp, sw := startHAProxy(t, "")
	sw.ReadyTimeout = time.Second
	if err := sw.Switch(t.Context(), []string{a.addr}); err != nil {
		t.Fatal(err)
	}
	before, _ := os.ReadFile(hp.SectionFile())
	l := testenv.StartLoad(t, hp.URL()+"/", 4, testenv.Paced)
	// Nothing listens on dead's port: HAProxy's checks never see it UP.
	dead := newAppServer(t, "dead", 0)
	dead.srv.Close()
	err := sw.Switch(t.Context(), []string{dead.addr})
	if err == nil || !failure.IsVerdict(err) || !strings.Contains(err.Error(), "not UP") {
		t.Fatalf("switch to a server that never passes HAProxy's checks: %v (class %v), want a verdict", err, failure.Of(err))
	}
	ls := l.Stop()
	if ls.Failed != 0 {
		t.Fatalf("load during the failed switch: %s", ls)
	}
	after, _ := os.ReadFile(hp.SectionFile())
	if !bytes.Equal(before, after) {
		t.Fatalf("section file not restored:\n%s", after)
	}
	if got := berthServers(t, hp); len(got) != 1 || !strings.HasSuffix(got[0], "="+a.addr) {
		t.Fatalf("live servers after the failed switch: %v, want a only", got)
	}
	servesOnly(t, hp.URL(), "a")
}

func TestHAProxy_RollbackSwitchesBackToTheOldServers(t *testing.T) {
	a, b := newAppServer(t, "a", 0), newAppServer(t, "b", 0)
	hp, sw := startHAProxy(t, "")
	if err := sw.Switch(t.Context(), []string{a.addr}); err != nil {
		t.Fatal(err)
	}
	before, _ := os.ReadFile(hp.SectionFile())
	if err := sw.Switch(t.Context(), []string{b.addr}); err != nil {
		t.Fatal(err)
	}
	// reconcile's rollback: Switch with the old backends.
	if err := sw.Switch(t.Context(), []string{a.addr}); err != nil {
		t.Fatal(err)
	}
	servesOnly(t, hp.URL(), "a")
	if after, _ := os.ReadFile(hp.SectionFile()); !bytes.Equal(before, after) {
		t.Fatalf("section file after the rollback:\n%s\nwant:\n%s", after, before)
	}
}
