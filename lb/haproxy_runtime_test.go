package lb

import (
	"bytes"
	"os"
	"strings"
	"testing"

	"berth.dev/berth/internal/failure"
	"berth.dev/berth/internal/testenv"
)

func TestHAProxy_ConvergesAfterACrashMidSwitch(t *testing.T) {
	t.Parallel()
	a, b := newAppServer(t, "a", 0), newAppServer(t, "b", 0)
	hp, sw := startHAProxy(t, "")
	if err := sw.Switch(t.Context(), []string{a.addr}); err != nil {
		t.Fatal(err)
	}
	na, nb := serverName(mustAddrPort(t, a.addr)), serverName(mustAddrPort(t, b.addr))
	// The agent died between adding b (left in drain) and removing a
	// (left draining).
	for _, cmd := range []string{
		"add server app/" + nb + " " + b.addr + " check",
		"enable health app/" + nb,
		"set server app/" + nb + " state drain",
		"set server app/" + na + " state drain",
	} {
		if out := strings.TrimSpace(hp.Command(t, cmd)); out != "" && out != "New server registered." {
			t.Fatalf("%s: %s", cmd, out)
		}
	}
	if err := sw.Switch(t.Context(), []string{b.addr}); err != nil {
		t.Fatal(err)
	}
	servesOnly(t, hp.URL(), "b")
	if got := berthServers(t, hp); len(got) != 1 || got[0] != nb+"="+b.addr {
		t.Fatalf("live servers %v, want b only", got)
	}
	// Or it died having added b in maintenance only, and the deploy is
	// rolled back: b goes, a comes back.
	if out := strings.TrimSpace(hp.Command(t, "add server app/"+na+" "+a.addr+" check")); out != "New server registered." {
		t.Fatal(out)
	}
	if err := sw.Switch(t.Context(), []string{b.addr}); err != nil {
		t.Fatal(err)
	}
	servesOnly(t, hp.URL(), "b")
	if err := sw.Switch(t.Context(), []string{a.addr}); err != nil {
		t.Fatal(err)
	}
	servesOnly(t, hp.URL(), "a")
}

func TestHAProxy_RejectedConfigIsRestored(t *testing.T) {
	a, b := newAppServer(t, "a", 0), newAppServer(t, "b", 0)
	hp, sw := startHAProxy(t, "")
	if err := sw.Switch(t.Context(), []string{a.addr}); err != nil {
		t.Fatal(err)
	}
	before, _ := os.ReadFile(hp.SectionFile())
	// An operator's edit broke the config HAProxy would load next.
	f, err := os.OpenFile(hp.Config, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString("\nbackend broken\n    server s1 127.0.0.1:99999\n")
	f.Close()
	err = sw.Switch(t.Context(), []string{b.addr})
	if err == nil || !failure.IsVerdict(err) || !strings.Contains(err.Error(), "haproxy rejected "+hp.SectionFile()) {
		t.Fatalf("switch with a config haproxy -c rejects: %v (class %v)", err, failure.Of(err))
	}
	if after, _ := os.ReadFile(hp.SectionFile()); !bytes.Equal(before, after) {
		t.Fatalf("section file not restored:\n%s", after)
	}
	servesOnly(t, hp.URL(), "a")
	if got := berthServers(t, hp); len(got) != 1 || !strings.HasSuffix(got[0], "="+a.addr) {
		t.Fatalf("live servers %v, want a only (nothing live changes when the file is rejected)", got)
	}
}

func TestHAProxy_RefusedCommandIsAVerdict(t *testing.T) {
	a := newAppServer(t, "a", 0)
	// static-rr is not a dynamic algorithm: HAProxy refuses `add server`.
	hp, sw := startHAProxy(t, "backend app\n    balance static-rr\n")
	before, _ := os.ReadFile(hp.SectionFile())
	err := sw.Switch(t.Context(), []string{a.addr})
	if err == nil || !failure.IsVerdict(err) || !strings.Contains(err.Error(), "haproxy refused") {
		t.Fatalf("add server to a static-rr backend: %v (class %v), want a verdict", err, failure.Of(err))
	}
	t.Logf("refused: %v", err)
	if after, _ := os.ReadFile(hp.SectionFile()); !bytes.Equal(before, after) {
		t.Fatalf("section file not restored:\n%s", after)
	}
}

func TestHAProxy_RefusesABackendItDoesNotOwn(t *testing.T) {
	a := newAppServer(t, "a", 0)
	other := newAppServer(t, "other", 0)
	tests := []struct {
		name    string
		main    string // appended to the operator's main config
		section string // the backend's file in servers_dir; "" for none
		backend string // default app
		want    string
	}{
		{
			name: "backend in the operator's config, not in servers_dir",
			main: "backend app\n    balance roundrobin\n",
			want: "not declared for berth",
		},
		{
			name:    "active servers berth does not manage",
			section: "backend app\n    balance roundrobin\n    server web1 " + other.addr + "\n",
			want:    "servers berth does not manage (web1)",
		},
		{
			name:    "a file holding more than the backend",
			section: "backend app\n    balance roundrobin\nfrontend extra\n    bind 127.0.0.1:1\n    default_backend app\n",
			want:    "may hold only the section `backend app`",
		},
		{
			name:    "a backend HAProxy does not have",
			section: testenv.HAProxyBackend("app"),
			backend: "ghost",
			want:    "haproxy has no backend ghost",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			hp := testenv.NewHAProxy(t, "app")
			if tc.main != "" {
				f, _ := os.OpenFile(hp.Config, os.O_APPEND|os.O_WRONLY, 0)
				f.WriteString(tc.main)
				f.Close()
			}
			if tc.section != "" {
				hp.WriteSection(t, tc.section)
			}
			hp.Start(t)
			sw := switcherFor(hp)
			if tc.backend != "" {
				sw.Backend = tc.backend
				os.WriteFile(sw.file(), []byte(testenv.HAProxyBackend(tc.backend)), 0o644) // written, never loaded
			}
			before, _ := os.ReadFile(sw.file())
			err := sw.Switch(t.Context(), []string{a.addr})
			if err == nil || !failure.IsVerdict(err) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("switch: %v (class %v), want a verdict saying %q", err, failure.Of(err), tc.want)
			}
			if after, _ := os.ReadFile(sw.file()); !bytes.Equal(before, after) {
				t.Fatalf("%s changed:\n%s", sw.file(), after)
			}
			if got := berthServers(t, hp); len(got) != 0 {
				t.Fatalf("berth servers were added: %v", got)
			}
		})
	}
}

func TestHAProxy_LeavesBackupServersAlone(t *testing.T) {
	a, sorry := newAppServer(t, "a", 0), newAppServer(t, "sorry", 0)
	hp, sw := startHAProxy(t, testenv.HAProxyBackend("app")+"    server sorry "+sorry.addr+" backup\n")
	servesOnly(t, hp.URL(), "sorry")
	if err := sw.Switch(t.Context(), []string{a.addr}); err != nil {
		t.Fatal(err)
	}
	servesOnly(t, hp.URL(), "a")
	file, _ := os.ReadFile(hp.SectionFile())
	if !bytes.Contains(file, []byte("server sorry "+sorry.addr+" backup\n")) {
		t.Fatalf("the operator's backup server line is gone:\n%s", file)
	}
	if out := hp.Command(t, "show servers state app"); !strings.Contains(out, " sorry ") {
		t.Fatalf("the backup server is gone from HAProxy:\n%s", out)
	}
}

func TestHAProxy_BackendWithoutChecks(t *testing.T) {
	a, b := newAppServer(t, "a", 0), newAppServer(t, "b", 0)
	hp, sw := startHAProxy(t, "backend app\n    balance leastconn\n")
	if err := sw.Switch(t.Context(), []string{a.addr}); err != nil {
		t.Fatal(err)
	}
	l := testenv.StartLoad(t, hp.URL()+"/", 4, testenv.Paced)
	for _, s := range []*appServer{b, a} {
		if err := sw.Switch(t.Context(), []string{s.addr}); err != nil {
			t.Fatal(err)
		}
	}
	ls := l.Stop()
	if ls.Failed != 0 {
		t.Fatalf("load: %s", ls)
	}
	servesOnly(t, hp.URL(), "a")
}

func TestHAProxy_ServerStatsCount5xx(t *testing.T) {
	a := newAppServer(t, "a", 0)
	hp, sw := startHAProxy(t, "")
	if err := sw.Switch(t.Context(), []string{a.addr}); err != nil {
		t.Fatal(err)
	}
	for i := range 10 {
		status := "200"
		if i < 3 {
			status = "503"
		}
		get(t, hp.URL()+"/?status="+status)
	}
	stats, err := sw.ServerStats(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if len(stats) != 1 || stats[0].Addr != a.addr || stats[0].Responses5xx != 3 || stats[0].Responses != 10 {
		t.Fatalf("stats %+v, want a with 3 5xx of 10", stats)
	}
	hp.Stop(t)
	if _, err := sw.ServerStats(t.Context()); !failure.IsOutage(err) {
		t.Fatalf("stats with HAProxy stopped: %v, want an outage", err)
	}
}

func TestHAProxy_RuntimeAPIOnALoopbackPort(t *testing.T) {
	a, b := newAppServer(t, "a", 0), newAppServer(t, "b", 0)
	hp, sw := startHAProxy(t, "")
	sw.RuntimeAPI = hp.TCPRuntimeAPI()
	for _, s := range []*appServer{a, b} {
		if err := sw.Switch(t.Context(), []string{s.addr}); err != nil {
			t.Fatal(err)
		}
		servesOnly(t, hp.URL(), s.name)
	}
	hp.Stop(t)
	if err := sw.Switch(t.Context(), []string{a.addr}); !failure.IsOutage(err) {
		t.Fatalf("switch over TCP with HAProxy stopped: %v, want an outage", err)
	}
}

func TestHAProxy_ReplacesABerthNameAtAnotherAddress(t *testing.T) {
	a, b := newAppServer(t, "a", 0), newAppServer(t, "b", 0)
	hp, sw := startHAProxy(t, "")
	nb := serverName(mustAddrPort(t, b.addr))
	// Someone added b's name by hand, pointing at a.
	for _, cmd := range []string{"add server app/" + nb + " " + a.addr, "enable server app/" + nb} {
		if out := strings.TrimSpace(hp.Command(t, cmd)); out != "" && out != "New server registered." {
			t.Fatalf("%s: %s", cmd, out)
		}
	}
	servesOnly(t, hp.URL(), "a")
	if err := sw.Switch(t.Context(), []string{b.addr}); err != nil {
		t.Fatal(err)
	}
	servesOnly(t, hp.URL(), "b")
	if got := berthServers(t, hp); len(got) != 1 || got[0] != nb+"="+b.addr {
		t.Fatalf("live servers %v, want %s at b", got, nb)
	}
}
