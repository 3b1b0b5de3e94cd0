package agentconfig

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func writeConfig(t *testing.T, s string) string {
	p := filepath.Join(t.TempDir(), "agent.yaml")
	os.WriteFile(p, []byte(s), 0o600)
	return p
}

func TestLoadConfig_MinimalGetsDefaults(t *testing.T) {
	c, err := Load(writeConfig(t, "env: prod\nrepo: {url: https://git.example.org/ops/config.git}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if c.StateDir != "/var/lib/berth" || c.Repo.Branch != "main" || c.Repo.PollInterval.Duration != time.Minute || c.Nginx.PidFile != "/run/nginx.pid" {
		t.Fatalf("defaults not applied: %+v", c)
	}
}

func TestLoadConfig_StrictAndEveryProblemAtOnce(t *testing.T) {
	_, err := Load(writeConfig(t, "env: prod\nrepo: {url: x, brnch: main}\n"))
	if err == nil || !strings.Contains(err.Error(), "repo.brnch: unknown key (did you mean branch?)") {
		t.Fatalf("unknown key: %v", err)
	}
	_, err = Load(writeConfig(t, "env: Prod!\nstate_dir: relative\nrepo: {poll_interval: 10ms}\n"))
	for _, want := range []string{"env: \"Prod!\"", "repo.url: required", "state_dir: \"relative\" must be an absolute path", "repo.poll_interval: at least 1s"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v lacks %q", err, want)
		}
	}
	_, err = Load(writeConfig(t, "env: prod\nrepo: {url: x}\npolicy: {allowed_host_ports: ['53', '80-70']}\n"))
	if err == nil || !strings.Contains(err.Error(), `policy.allowed_host_ports[1]: "80-70" is not a port or a range N-M`) {
		t.Errorf("bad host ports: %v", err)
	}
	_, err = Load(writeConfig(t, "env: prod\nrepo: {url: x, timeout: soon}\n"))
	if err == nil || !strings.Contains(err.Error(), `"soon" is not a duration`) {
		t.Errorf("bad duration: %v", err)
	}
}

func TestLoadConfig_SeveralEnvs(t *testing.T) {
	c, err := Load(writeConfig(t, "envs: [shop, blog]\nrepo: {url: https://git.example.org/c.git}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if got := c.EnvNames(); len(got) != 2 || got[0] != "shop" || got[1] != "blog" {
		t.Fatalf("EnvNames %v", got)
	}
	_, err = Load(writeConfig(t, "env: shop\nenvs: [blog, Blog, blog]\nproject: x\nrepo: {url: x}\n"))
	for _, want := range []string{"envs: set env: for one environment or envs: for several, not both", `envs[1]: "Blog"`, `envs[2]: "blog" is listed twice`, "project: names the Compose project of one environment"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v lacks %q", err, want)
		}
	}
}

func TestLoadConfig_FleetBlock(t *testing.T) {
	c, err := Load(writeConfig(t, "env: prod\nrepo: {url: https://git.example.org/ops/config.git}\n"))
	if err != nil || c.Fleet != nil {
		t.Fatalf("no fleet block: %+v, %v", c.Fleet, err)
	}
	c, err = Load(writeConfig(t, "env: prod\nrepo: {url: https://git.example.org/ops/config.git}\nfleet:\n  etcd: {endpoints: [https://etcd-1:2379]}\n  host: web-1\n"))
	if err != nil {
		t.Fatal(err)
	}
	if f := c.Fleet; f.Prefix != "/berth" || f.LeaseTTL != 15*time.Second || f.Host != "web-1" {
		t.Fatalf("fleet defaults not applied: %+v", f)
	}
	_, err = Load(writeConfig(t, "env: prod\nrepo: {url: https://git.example.org/ops/config.git}\nfleet:\n  etcd: {endpoints: [etcd-1], cert: /c.pem}\n  lease_ttl: 1s\n"))
	for _, want := range []string{"fleet.etcd.endpoints", "fleet.etcd.cert and fleet.etcd.key", "fleet.lease_ttl"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v lacks %q", err, want)
		}
	}
}

// What a new user gets wrong comes back as one list, each problem named
// by its field, with no line number said twice and no decoder jargon.
func TestLoad_ProblemsAreOneListNamedByField(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		want []string
		not  []string
	}{
		{name: "a typo of a key", yaml: "env: prod\nrepo:\n  url: x\n  pol_interval: 5s\n",
			want: []string{"repo.pol_interval: unknown key (did you mean poll_interval?)"}},
		{name: "a typo beside other problems", yaml: "env: Prod!\nrepo:\n  pol_interval: 5s\n  timeout: soon\nstate_dir: rel\n",
			want: []string{"repo.pol_interval: unknown key (did you mean poll_interval?)", `repo.timeout: "soon" is not a duration`,
				"repo.url: required", `env: "Prod!"`, `state_dir: "rel" must be an absolute path`},
			not: []string{"line "}},
		{name: "a negative duration", yaml: "env: prod\nrepo: {url: x, poll_interval: -5s}\n",
			want: []string{`repo.poll_interval: "-5s" is negative`}, not: []string{"not a duration", "line "}},
		{name: "a key far from any", yaml: "env: prod\nrepo: {url: x}\nwhatever: 1\n",
			want: []string{"whatever: unknown key"}, not: []string{"did you mean"}},
		{name: "a value of the wrong type", yaml: "env: prod\nrepo: {url: x}\ndeploy: {pulls: many}\nnotify: [{type: slack, url: 'https://x', evnts: [a]}]\n",
			want: []string{`deploy.pulls: "many" is not a whole number`, "notify[0].evnts: unknown key (did you mean events?)"}},
		{name: "a section that is not a mapping", yaml: "env: prod\nrepo: https://x\n",
			want: []string{"repo: want a mapping of keys"}},
		{name: "an empty file", yaml: "", want: []string{"the file is empty"}, not: []string{"EOF"}},
		{name: "only a comment", yaml: "# nothing yet\n", want: []string{"the file is empty"}},
		{name: "inline vault keys", yaml: "env: prod\nrepo: {url: x}\nvault: {address: 'https://v', tokn_file: /t}\n",
			want: []string{"vault.tokn_file: unknown key (did you mean token_file?)"}},
		{name: "images.verify and sops", yaml: "env: prod\nrepo: {url: x}\nimages: {verify: [{prefix: ghcr.io/acme, key: /nonexistent/cosign.pub, mod: warn}, {prefix: '*', keyless: {issuer: i}}]}\nsops: {age_key_file: /nonexistent/age.txt}\n",
			want: []string{"images.verify[0].mod: unknown key (did you mean mode?)", "images.verify[0].key: read /nonexistent/cosign.pub",
				"images.verify[1].keyless.subject: a regular expression", "sops.age_key_file: stat /nonexistent/age.txt: no such file"}},
		{name: "the fleet's own keys", yaml: "env: prod\nrepo: {url: x}\nfleet: {etcd: {endpoint: [x]}}\n",
			want: []string{"fleet.etcd.endpoint: unknown key (did you mean endpoints?)"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Load(writeConfig(t, tc.yaml))
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error lacks %q:\n%v", w, err)
				}
			}
			for _, n := range tc.not {
				if strings.Contains(err.Error(), n) {
					t.Errorf("error has %q:\n%v", n, err)
				}
			}
			if _, ok := AsProblems(err); !ok {
				t.Errorf("error is not Problems: %T", err)
			}
		})
	}
}

func TestSuggest_OnlyCloseKeys(t *testing.T) {
	known := []string{"poll_interval", "url", "branch", "timeout"}
	for key, want := range map[string]string{"pol_interval": "poll_interval", "brnch": "branch", "ulr": "url", "colour": "", "x": ""} {
		if got := suggest(key, known); got != want {
			t.Errorf("suggest(%q) = %q, want %q", key, got, want)
		}
	}
}
