package envs

import (
	"strings"
	"testing"
)

// TestLoad_LegacyLBFileOnlyWhenHandedOver: x-berth.lb.file may name a file
// of the host's nginx directory other than berth's own name only when that
// file's first line hands it to this environment and upstream; berth's own
// name is taken unless the file there is another environment's (names
// collide: env prod + upstream x-y and env prod-x + upstream y share
// berth-prod-x-y.conf) or defines another upstream.
func TestLoad_LegacyLBFileOnlyWhenHandedOver(t *testing.T) {
	const f = "envs/prod/compose.yaml"
	const dir = "/etc/nginx/conf.d"
	img := "r/app@" + d1
	compose := func(lb string) string {
		return "services:\n  web:\n    image: " + img + "\n    x-berth: {role: server, port: 80}\nx-berth:\n  lb: " + lb + "\n"
	}
	files := map[string]LBFile{
		dir + "/otherapp-upstreams.conf": {Exists: true, Upstream: "otherapp"},
		dir + "/default.conf":            {Exists: true},
		dir + "/old.conf":                {Exists: true, Upstream: "app"},
		dir + "/mine.conf":               {Exists: true, Env: "prod", Upstream: "app", Header: true},
		dir + "/staging.conf":            {Exists: true, Env: "staging", Upstream: "app", Header: true},
		dir + "/berth-prod-x-y.conf":     {Exists: true, Env: "prod-x", Upstream: "y", Header: true},
		dir + "/berth-prod-boot.conf":    {Exists: true, Env: "prod", Upstream: "boot"},
		dir + "/berth-prod-odd.conf":     {Exists: true, Upstream: "other"},
	}
	read := func(p string) (LBFile, error) { return files[p], nil }
	handOver := func(up string) string {
		return "or hand the file over: make `# berth: env=prod upstream=" + up + "` its first line"
	}
	type lbCase struct{ name, lb, want string }
	tests := []lbCase{
		{"an operator's upstream file", "{type: nginx, upstream: otherapp, file: " + dir + "/otherapp-upstreams.conf}",
			f + "::x-berth.lb.file: " + dir + "/otherapp-upstreams.conf is not a file berth wrote for environment prod, upstream otherapp (leave file: out (berth writes " + dir + "/berth-prod-otherapp.conf), " + handOver("otherapp") + ")"},
		{"nginx's default.conf", "{type: nginx, upstream: otherapp, file: " + dir + "/default.conf}",
			f + "::x-berth.lb.file: " + dir + "/default.conf is not a file berth wrote for environment prod, upstream otherapp (leave file: out (berth writes " + dir + "/berth-prod-otherapp.conf), " + handOver("otherapp") + ")"},
		{"a file an older berth wrote, not handed over", "{type: nginx, upstream: app, file: " + dir + "/old.conf}",
			f + "::x-berth.lb.file: " + dir + "/old.conf is not a file berth wrote for environment prod, upstream app (leave file: out (berth writes " + dir + "/berth-prod-app.conf), " + handOver("app") + ")"},
		{"a name that is not there yet", "{type: nginx, upstream: app, file: " + dir + "/new.conf}",
			f + "::x-berth.lb.file: " + dir + "/new.conf is not berth's name for this upstream (berth-prod-app.conf) (leave file: out; berth writes " + dir + "/berth-prod-app.conf)"},
		{"another environment's file", "{type: nginx, upstream: app, file: " + dir + "/staging.conf}",
			f + "::x-berth.lb.file: " + dir + "/staging.conf belongs to environment staging (upstream app) (leave file: out; berth writes " + dir + "/berth-prod-app.conf)"},
		{"berth's name, another environment's file", "{type: nginx, upstream: x-y}",
			f + "::x-berth.lb.upstream: " + dir + "/berth-prod-x-y.conf belongs to environment prod-x (upstream y) (name an upstream of this environment's own)"},
		{"berth's name, another upstream in it", "{type: nginx, upstream: odd}",
			f + "::x-berth.lb.upstream: " + dir + "/berth-prod-odd.conf defines upstream other (name an upstream of this environment's own)"},
		{"this environment's file of another upstream", "{type: nginx, upstream: other, file: " + dir + "/mine.conf}",
			f + "::x-berth.lb.file: " + dir + "/mine.conf holds this environment's upstream app, not other (leave file: out; berth writes " + dir + "/berth-prod-other.conf)"},
		{"a file handed over", "{type: nginx, upstream: app, file: " + dir + "/mine.conf}", ""},
		{"berth's name, an operator's bootstrap file", "{type: nginx, upstream: boot}", ""},
		{"berth's name, written out", "{type: nginx, upstream: boot, file: " + dir + "/berth-prod-boot.conf}", ""},
		{"berth's name, no file yet", "{type: nginx, upstream: fresh}", ""},
	}
	// Several servers, each with its own upstream: each server's file is
	// checked, and the message names the server.
	servers := func(lb2 string) string {
		return "services:\n  web:\n    image: " + img + "\n    x-berth: {role: server, port: 80, lb: {type: nginx, upstream: fresh}}\n" +
			"  api:\n    image: " + img + "\n    x-berth: {role: server, port: 81, lb: " + lb2 + "}\n"
	}
	for _, tc := range []struct{ name, lb, want string }{
		{"a second server's legacy file of another environment", "{type: nginx, upstream: app, file: " + dir + "/staging.conf}",
			f + ":api:x-berth.lb.file: " + dir + "/staging.conf belongs to environment staging (upstream app) (leave file: out; berth writes " + dir + "/berth-prod-app.conf)"},
		{"a second server's upstream under another environment's name", "{type: nginx, upstream: x-y}",
			f + ":api:x-berth.lb.upstream: " + dir + "/berth-prod-x-y.conf belongs to environment prod-x (upstream y) (name an upstream of this environment's own)"},
		{"a second server's own", "{type: nginx, upstream: app, file: " + dir + "/mine.conf}", ""},
	} {
		tests = append(tests, lbCase{"servers: " + tc.name, tc.lb, tc.want})
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			content := compose(tc.lb)
			if strings.HasPrefix(tc.name, "servers: ") {
				content = servers(tc.lb)
			}
			_, ps := load(t, map[string]string{f: content}, Options{LB: LBOptions{File: read}})
			var got []string
			for _, p := range ps {
				got = append(got, p.String())
			}
			if strings.Join(got, "\n") != tc.want {
				t.Errorf("problems:\n%s\nwant:\n%s", strings.Join(got, "\n"), tc.want)
			}
		})
	}
}
