package lb

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"berth.dev/berth/internal/failure"
)

func TestReadSection(t *testing.T) {
	tests := []struct {
		name     string
		file     string // "" for no file
		wantErr  string
		wantOpts string
		checked  bool
	}{
		{
			name:    "no file: not declared",
			wantErr: "not declared for berth",
		},
		{
			name: "the operator's section with berth's servers",
			file: "# journal\nbackend app\n    balance roundrobin\n    option httpchk GET /health\n" +
				"    default-server check inter 2s fastinter 200ms rise 2 fall 3 maxconn 100 init-addr none cookie x\n" +
				"    server sorry 127.0.0.1:9000 backup\n" + sectionMarker + "\n    server berth-8081 127.0.0.1:8081\n",
			wantOpts: "check inter 2s fastinter 200ms rise 2 fall 3 maxconn 100",
			checked:  true,
		},
		{
			name:     "no-check turns checks off",
			file:     "backend app\n    default-server check\n    default-server no-check weight 10\n",
			wantOpts: "weight 10",
		},
		{
			name:    "another section",
			file:    "backend app\nlisten other\n    bind :80\n",
			wantErr: "may hold only the section `backend app`",
		},
		{
			name:    "another backend",
			file:    "backend web\n",
			wantErr: "may hold only the section `backend app`",
		},
		{
			name:    "lines before the section",
			file:    "timeout client 1s\nbackend app\n",
			wantErr: "before `backend app`",
		},
		{
			name:    "an empty file",
			file:    "# nothing\n",
			wantErr: "holds no `backend app` section",
		},
		{
			name:    "a default-server keyword berth does not know",
			file:    "backend app\n    default-server frobnicate 3 check\n",
			wantErr: `does not know the server keyword "frobnicate"`,
		},
		{
			name:    "an argument that would split a runtime command",
			file:    "backend app\n    default-server check agent-send x;y\n",
			wantErr: "cannot be repeated on the runtime API",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "app.cfg")
			if tc.file != "" {
				if err := os.WriteFile(path, []byte(tc.file), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			s, err := readSection(path, "app")
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) || !failure.IsVerdict(err) {
					t.Fatalf("err = %v (class %v), want a verdict containing %q", err, failure.Of(err), tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := strings.Join(s.serverOpts, " "); got != tc.wantOpts {
				t.Errorf("server options %q, want %q", got, tc.wantOpts)
			}
			if s.checked != tc.checked {
				t.Errorf("checked = %v, want %v", s.checked, tc.checked)
			}
		})
	}
}

func TestSection_RenderKeepsTheOperatorsLinesAndIsStable(t *testing.T) {
	path := filepath.Join(t.TempDir(), "app.cfg")
	op := "backend app  # the journal\n    balance roundrobin\n\n    server sorry 127.0.0.1:9000 backup\n"
	if err := os.WriteFile(path, []byte(op+"\n\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	s, err := readSection(path, "app")
	if err != nil {
		t.Fatal(err)
	}
	addr := map[string]string{"berth-8082": "127.0.0.1:8082", "berth-8081": "127.0.0.1:8081"}
	first := s.render([]string{"berth-8082", "berth-8081"}, addr, "")
	want := op + sectionMarker + "\n    server berth-8081 127.0.0.1:8081\n    server berth-8082 127.0.0.1:8082\n"
	if string(first) != want {
		t.Fatalf("render:\n%s\nwant:\n%s", first, want)
	}
	// Read back and rendered again: the same bytes (no second marker,
	// no blank lines piling up).
	if err := os.WriteFile(path, first, 0o644); err != nil {
		t.Fatal(err)
	}
	s2, err := readSection(path, "app")
	if err != nil {
		t.Fatal(err)
	}
	if again := s2.render([]string{"berth-8081", "berth-8082"}, addr, ""); string(again) != string(first) {
		t.Fatalf("second render differs:\n%s", again)
	}
	if none := s2.render(nil, nil, ""); string(none) != op+sectionMarker+"\n" {
		t.Fatalf("render with no servers:\n%s", none)
	}
}

func TestParseRuntimeAPI(t *testing.T) {
	tests := []struct {
		spec, network, addr, wantErr string
	}{
		{spec: "unix:/run/haproxy/admin.sock", network: "unix", addr: "/run/haproxy/admin.sock"},
		{spec: "127.0.0.1:9999", network: "tcp", addr: "127.0.0.1:9999"},
		{spec: "[::1]:9999", network: "tcp", addr: "[::1]:9999"},
		{spec: "localhost:9999", network: "tcp", addr: "localhost:9999"},
		{spec: "unix:admin.sock", wantErr: "absolute"},
		{spec: "10.0.0.1:9999", wantErr: "only a loopback"},
		{spec: "haproxy.internal:9999", wantErr: "only a loopback"},
		{spec: "127.0.0.1:0", wantErr: "bad port"},
		{spec: "/run/haproxy/admin.sock", wantErr: "want unix:/path"},
	}
	for _, tc := range tests {
		t.Run(tc.spec, func(t *testing.T) {
			r, err := parseRuntimeAPI(tc.spec)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || r.network != tc.network || r.addr != tc.addr {
				t.Fatalf("got %+v, %v", r, err)
			}
		})
	}
}

func TestServerNames(t *testing.T) {
	tg, err := targetOf([]string{"127.0.0.1:8081", "10.1.2.3:80", "127.0.0.1:8081"})
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(tg.names, " "); got != "berth-8081 berth-10.1.2.3-80" {
		t.Fatalf("names %q", got)
	}
	for _, bad := range []string{"127.0.0.1", "127.0.0.1:0", "[::1]:80", "host:80", "127.0.0.1:8080;show info"} {
		if _, err := targetOf([]string{bad}); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
	for name, ok := range map[string]bool{"app": true, "journal_web-1.v2": true, "": false, "-x": false, "a b": false, "a;b": false, "a/b": false, "../x": false} {
		if ValidBackendName(name) != ok {
			t.Errorf("ValidBackendName(%q) = %v", name, !ok)
		}
	}
}
