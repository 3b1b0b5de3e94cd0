package lb

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"berth.dev/berth/internal/failure"
	"berth.dev/berth/internal/testenv"
)

func TestParseNginxFile_WhoseItIs(t *testing.T) {
	for _, tc := range []struct {
		name, file, head string
		want             NginxFile
	}{
		{"berth's first line", "x.conf", "# berth: env=a-b upstream=c\n# Written by berth\nupstream c {\n}\n", NginxFile{Exists: true, Env: "a-b", Upstream: "c", Header: true}},
		{"an older berth's file under berth's name", "berth-a-b-c.conf", "# Written by berth; changes here are overwritten on the next deploy.\nupstream c {\n    server 127.0.0.1:1;\n}\n", NginxFile{Exists: true, Env: "a-b", Upstream: "c"}},
		{"the same name read with the other split", "berth-a-b-c.conf", "upstream b-c { server 127.0.0.1:1; }\n", NginxFile{Exists: true, Env: "a", Upstream: "b-c"}},
		{"an operator's file", "otherapp-upstreams.conf", "upstream otherapp {\n server 10.0.0.1:80;\n}\n", NginxFile{Exists: true, Upstream: "otherapp"}},
		{"no upstream", "default.conf", "server { listen 80; }\n", NginxFile{Exists: true}},
		{"a look-alike line is not berth's", "x.conf", "# berth: env=a upstream=b extra\nupstream q {}\n", NginxFile{Exists: true, Upstream: "q"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := parseNginxFile(tc.file, []byte(tc.head)); got != tc.want {
				t.Errorf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestNginxOwner_FromWhatFilesSay(t *testing.T) {
	dir := t.TempDir()
	for name, content := range map[string]string{
		"berth-a-b-c.conf":      "# berth: env=a-b upstream=c\nupstream c {}\n",
		"berth-other-shop.conf": "upstream shop { server 127.0.0.1:1; }\n",
		"site.conf":             "server { listen 80; }\n",
	} {
		os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644)
	}
	for _, tc := range []struct{ upstream, self, want string }{
		{"c", "a", "a-b"},
		{"b-c", "a", ""}, // the name alone would say env a owns b-c
		{"c", "a-b", ""},
		{"shop", "prod", "other"},
	} {
		if got := NginxOwner(dir, tc.upstream, tc.self); got != tc.want {
			t.Errorf("owner of %s for %s: %q, want %q", tc.upstream, tc.self, got, tc.want)
		}
	}
}

// TestNginx_NeverOverwritesAnotherEnvironmentsFile: berth's file names its
// environment and upstream on its first line; a switch for another
// environment (berth-a-b-c.conf is both env a-b's upstream c and env a's
// upstream b-c), or over an operator's file of another upstream, is a
// verdict, and the real nginx keeps serving what it served.
func TestNginx_NeverOverwritesAnotherEnvironmentsFile(t *testing.T) {
	a, b := testenv.HTTPBackend(t, "a"), testenv.HTTPBackend(t, "b")
	n, sw := startNginx(t, a)
	sw.Env = "prod"
	if err := sw.Switch(t.Context(), []string{a}); err != nil {
		t.Fatal(err)
	}
	written, _ := os.ReadFile(sw.File)
	if !strings.HasPrefix(string(written), "# berth: env=prod upstream=app\n") {
		t.Fatalf("berth's file does not name its environment:\n%s", written)
	}
	for _, other := range []*Nginx{
		{Env: "staging", Upstream: "app"},
		{Env: "prod", Upstream: "shop"},
	} {
		other.File, other.Command, other.PidFile = sw.File, sw.Command, sw.PidFile
		err := other.Switch(t.Context(), []string{b})
		if err == nil || !failure.IsVerdict(err) || !strings.Contains(err.Error(), "it was written for environment prod, upstream app") {
			t.Fatalf("switch of %s/%s over prod's file: %v (%s)", other.Env, other.Upstream, err, failure.Of(err))
		}
	}
	if after, _ := os.ReadFile(sw.File); string(after) != string(written) {
		t.Fatalf("prod's file changed:\n%s", after)
	}
	if got := testenv.Get(t, n.URL()); got != "a" {
		t.Fatalf("nginx serves %q, want a", got)
	}
	// An operator's file of another upstream is not berth's either.
	op := filepath.Join(filepath.Dir(sw.File), "otherapp-upstreams.conf")
	os.WriteFile(op, []byte("upstream otherapp { server "+a+"; }\n"), 0o644)
	hijack := &Nginx{Env: "prod", Upstream: "app2", File: op, Command: sw.Command, PidFile: sw.PidFile}
	if err := hijack.Switch(t.Context(), []string{b}); err == nil || !strings.Contains(err.Error(), "it defines upstream otherapp") {
		t.Fatalf("switch over an operator's file: %v", err)
	}
}
