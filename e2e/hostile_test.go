package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/go-git/go-git/v5/plumbing/filemode"

	"berth.dev/berth/internal/testenv"
)

// hostMarker is planted in host files a hostile repo reaches for; it must
// never appear in a log line, a state file, an API answer or a container.
const hostMarker = "HOST-FILE-CONTENT-5d1c9e"

// A config-repo author gets no more than the policy allows (DESIGN.md §7,
// docs/security.md): a repository that commits one trick after another,
// each pushed to a real Git server and read by the real `berth run`
// against the real engine, is refused as a verdict every time, with the
// previous revision still serving; nothing outside berth's state dir and
// the LB directory changes, and no host file's content shows anywhere.
func TestE2E_HostileRepoGetsNoMoreThanThePolicy(t *testing.T) {
	testenv.Parallel(t)
	w := newWorld(t)
	v1 := testenv.PushApp(t, w.reg, testenv.ImageSpec{Version: "v1"})
	w.d.CleanupImage(v1.Ref())
	envDir := "envs/" + w.env

	// Host files a hostile repo reaches for, each holding the marker.
	host := t.TempDir()
	for name, content := range map[string]string{
		"secret.env":               "STOLEN=" + hostMarker + "\n",
		"base.yaml":                "services:\n  app:\n    image: " + v1.Ref() + "\n    environment: {STOLEN: " + hostMarker + "}\n",
		"shadow":                   hostMarker + ": [not yaml\n",
		"sshd_config.d/berth.conf": "# " + hostMarker + "\nPermitRootLogin no\n",
	} {
		os.MkdirAll(filepath.Dir(filepath.Join(host, name)), 0o755)
		if err := os.WriteFile(filepath.Join(host, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	hostRel := "../../.." + host // from envs/<env>/ of a checkout: up to / and down again
	if !strings.HasPrefix(host, "/") {
		t.Fatal(host)
	}

	// Another environment of this host owns upstream "shop", and a file an
	// older berth wrote for environment other, handed over by its first
	// line under a name of the operator's.
	lbDir := filepath.Dir(w.lbFile)
	for name, content := range map[string]string{
		"berth-other-shop.conf": "upstream shop { server 127.0.0.1:1; }\n",
		"legacy-other.conf":     "# berth: env=other upstream=web\nupstream web { server 127.0.0.1:1; }\n",
	} {
		if err := os.WriteFile(filepath.Join(lbDir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// A host directory the policy lets services bind.
	allowed := filepath.Join(host, "allowed")
	os.MkdirAll(filepath.Join(allowed, "sub"), 0o755)
	cfg, err := os.ReadFile(w.config)
	if err != nil {
		t.Fatal(err)
	}
	cfg = []byte(strings.Replace(string(cfg), "policy: {min_job_interval: 1s}", "policy: {min_job_interval: 1s, allowed_bind_mounts: ["+allowed+"]}", 1))
	if err := os.WriteFile(w.config, cfg, 0o600); err != nil {
		t.Fatal(err)
	}

	c1 := w.commit("v1", v1, "serve")
	logFile := filepath.Join(t.TempDir(), "berth.log")
	log, err := os.Create(logFile)
	if err != nil {
		t.Fatal(err)
	}
	daemon := exec.Command(w.bin, "run", "--config", w.config, "--log-level", "debug")
	daemon.Stdout, daemon.Stderr = log, log
	if err := daemon.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { daemon.Process.Kill(); daemon.Wait() })
	waitState(t, w, func(s hostileState) bool { return s.Live.Commit == c1 })
	if w.serving() != "version=v1" {
		t.Fatalf("v1 not serving: %q", w.serving())
	}
	want := w.containers()

	// Everything the test can see, but berth's state dir and the LB
	// directory, must be left as it is.
	// (The Git work tree is the test's own; /etc beyond the files a
	// trick aims at changes with what other programs install.)
	watched := []string{host, filepath.Dir(w.config), w.nginx.Dir, "/etc/nginx", "/etc/ssh", "/etc/systemd", "/etc/cron.d"}
	skip := []string{w.state, filepath.Dir(w.lbFile), filepath.Join(w.nginx.Dir, "tmp")}
	before := snapshot(t, watched, skip)

	override := envDir + "/compose.override.yaml"
	clean := func() {
		// Each trick replaces the previous one's files.
		for _, p := range []string{override, envDir + "/inc", envDir + "/data", envDir + "/shared", envDir + "/big"} {
			os.RemoveAll(filepath.Join(w.repo.WorkDir(), p))
		}
	}
	// committed is what the trick wrote: no line of it may come back in
	// the refusal (messages name the file, service and field, and quote
	// no content).
	var committed []string
	files := func(fs map[string]string) func() string {
		return func() string {
			clean()
			for _, c := range fs {
				committed = append(committed, c)
			}
			return w.repo.CommitFiles(t, "trick", fs)
		}
	}
	link := func(path, target string, more map[string]string) func() string {
		return func() string {
			clean()
			full := filepath.Join(w.repo.WorkDir(), path)
			os.MkdirAll(filepath.Dir(full), 0o755)
			if err := os.Symlink(target, full); err != nil {
				t.Fatal(err)
			}
			return w.repo.CommitFiles(t, "trick", more)
		}
	}
	good := func() []testenv.TreeEntry {
		b, err := os.ReadFile(filepath.Join(w.repo.WorkDir(), envDir, "compose.yaml"))
		if err != nil {
			t.Fatal(err)
		}
		return []testenv.TreeEntry{{Name: "envs", Tree: []testenv.TreeEntry{{Name: w.env, Tree: []testenv.TreeEntry{{Name: "compose.yaml", Content: string(b)}}}}}}
	}
	tree := func(extra ...testenv.TreeEntry) func() string {
		return func() string { return w.repo.CommitTree(t, "trick", append(good(), extra...)) }
	}
	web := func(body string) func() string {
		return files(map[string]string{override: "services:\n  web:\n" + body})
	}
	manyPorts := "services:\n"
	for i := range 17 {
		manyPorts += fmt.Sprintf("  p%d: {image: %s, ports: ['2000-2255:2000-2255'], x-berth: {stop_first: true}}\n", i, v1.Ref())
	}
	aliasBomb := "x-a0: &a0 [x, x]\n"
	for i := 1; i <= 20; i++ {
		aliasBomb += fmt.Sprintf("x-a%d: &a%d [*a%d, *a%d]\n", i, i, i-1, i-1)
	}
	tricks := []struct {
		name   string
		commit func() string
		reason string
	}{
		{"a tree beneath a symlink to a host directory", tree(
			testenv.TreeEntry{Name: "a", Mode: filemode.Symlink, Content: host},
			testenv.TreeEntry{Name: "a", Tree: []testenv.TreeEntry{{Name: "evil", Content: "written through a symlink\n"}}},
		), `entry "a" appears twice`},
		{"a blob named a/evil beneath a symlink", tree(
			testenv.TreeEntry{Name: "a", Mode: filemode.Symlink, Content: host},
			testenv.TreeEntry{Name: "a/evil", Content: "written through a symlink\n"},
		), `entry "a/evil" in "/": holds a '/'`},
		{"a .git directory", tree(testenv.TreeEntry{Name: ".GIT", Tree: []testenv.TreeEntry{{Name: "config", Content: "[core]\n"}}}), "a .git entry"},
		{"include with project_directory, env_file through it", files(map[string]string{
			override:               "include: [{path: inc/c.yaml, project_directory: ../..}]\n",
			envDir + "/inc/c.yaml": "services:\n  thief: {image: " + v1.Ref() + ", env_file: " + hostRel + "/secret.env}\n",
		}), "include project_directory is not supported"},
		{"env_file of a host file", web("    env_file: " + hostRel + "/secret.env\n"), "outside the config repository"},
		{"extends.file of a host file", files(map[string]string{override: "services:\n  thief: {extends: {file: " + host + "/base.yaml, service: app}}\n"}), "outside the config repository"},
		{"a nested include of a host file", files(map[string]string{
			override:               "include: [inc/a.yaml]\n",
			envDir + "/inc/a.yaml": "include: [" + host + "/base.yaml]\n",
		}), "outside the config repository"},
		{"compose.override.yaml symlinked to a host file", link(override, host+"/shadow", nil), "resolves to " + host + "/shadow, outside the config repository"},
		{"compose.override.yaml symlinked to /proc/self/pagemap", link(override, "/proc/self/pagemap", nil), "resolves to /proc/self/pagemap"},
		{"an extended file through a symlinked directory", link(envDir+"/shared", host, map[string]string{override: "services:\n  thief: {extends: {file: shared/base.yaml, service: app}}\n"}), "outside the config repository"},
		{"a bind mount of a repo symlink to the host", link(envDir+"/data", host, map[string]string{override: "services:\n  web:\n    volumes: ['./data:/data:ro']\n"}), "outside the config repository"},
		{"a named volume binding the host root", files(map[string]string{override: "services:\n  web:\n    volumes: ['root:/host']\nvolumes:\n  root: {driver: local, driver_opts: {type: none, o: bind, device: /}}\n"}), "volume driver_opts are refused"},
		{"security_opt weakening confinement", web("    security_opt: [apparmor=unconfined, seccomp=unconfined, systempaths=unconfined, label=disable]\n"), "would weaken the container's confinement"},
		{"another container's namespaces", web("    network_mode: container:" + w.env + "-worker-1\n    pid: container:x\n    ipc: container:x\n"), "sharing another container's"},
		{"host namespaces", web("    network_mode: host\n    pid: host\n"), "host networking is refused"},
		{"privileged, capabilities, devices", web("    privileged: true\n    cap_add: [SYS_ADMIN]\n    devices: ['/dev/mem:/dev/mem']\n"), "privileged containers are refused"},
		{"the docker socket", web("    volumes: ['/var/run/docker.sock:/var/run/docker.sock']\n"), "hands the container control of the host's Docker"},
		{"a host path", web("    volumes: ['" + host + ":/host:ro']\n"), "is outside the allowed host paths"},
		{"the host network as an external network", files(map[string]string{override: "services:\n  web:\n    networks: [h]\nnetworks:\n  h: {external: true, name: host}\n"}), "external network \"host\" is refused"},
		{"another project's volume", files(map[string]string{override: "services:\n  web:\n    volumes: ['v:/v']\nvolumes:\n  v: {name: other_data}\n"}), "volume name \"other_data\" is refused"},
		{"a logging driver that dials out", web("    logging: {driver: syslog, options: {syslog-address: 'tcp://127.0.0.1:1'}}\n"), "logging driver \"syslog\" is refused"},
		{"berth's and Compose's labels", web("    labels: {berth.env: other, com.docker.compose.project: other}\n"), "is reserved"},
		{"a read-write repo mount", files(map[string]string{override: "services:\n  web:\n    volumes: ['./inc:/inc:rw']\n", envDir + "/inc/x": "x\n"}), "read-write is refused"},
		{"the agent's own Vault token", web("    x-berth: {role: server, port: 8080, secrets: {T: 'auth/token/lookup-self#id'}}\n"), "auth/ is never readable"},
		{"the LB file over an sshd drop-in", files(map[string]string{override: "x-berth:\n  lb: {type: nginx, upstream: app, file: " + host + "/sshd_config.d/berth.conf}\n"}), "outside the load balancer's directory"},
		{"another environment's upstream", files(map[string]string{override: "x-berth:\n  lb: {type: nginx, upstream: shop}\n"}), "upstream shop belongs to environment other on this host"},
		{"NaN CPUs", web("    deploy: {resources: {limits: {cpus: 'NaN'}}}\n"), "NaN is not a number berth can use"},
		{"every port", web("    ports: ['1-65535:1-65535']\n"), "port ranges expand to 65535 mappings"},
		{"port ranges in many services, each under the bound", files(map[string]string{override: manyPorts}), "the environment's port ranges expand to more than 4096 mappings"},
		{"YAML nested 9,999 levels", files(map[string]string{override: "x-deep: " + strings.Repeat("[", 9999) + strings.Repeat("]", 9999) + "\n"}), "compose.override.yaml: is nested more than 64 levels deep"},
		{"a YAML alias bomb", files(map[string]string{override: aliasBomb}), "compose.override.yaml: holds more than 100000 YAML nodes (aliases expanded)"},
		{"ulimits beyond the bounds", web("    ulimits: {memlock: -1, nofile: 2000000000}\n"), "web:ulimits."},
		{"a writable bind mount above another", web("    volumes: ['" + allowed + ":/all', '" + allowed + "/sub:/sub:ro']\n"), "web:volumes[0]: writable bind mount of " + allowed + " is above " + allowed + "/sub"},
		{"another project's network by name", files(map[string]string{override: "services:\n  web:\n    networks: [n]\nnetworks:\n  n: {name: other_default}\n"}), "network name \"other_default\" is refused"},
		{"a stop_grace_period of weeks", web("    stop_grace_period: 1000h\n"), "web:stop_grace_period: stop_grace_period 1000h0m0s is refused"},
		{"jobs beyond the bounds", files(map[string]string{override: "x-berth:\n  jobs:\n    flood: {service: worker, schedule: '@every 1s', history: 5000, concurrency: allow}\n"}), "x-berth.jobs.flood"},
		{"a legacy lb.file of another environment", files(map[string]string{override: "x-berth:\n  lb: {type: nginx, upstream: app, file: " + lbDir + "/legacy-other.conf}\n"}), "x-berth.lb.file: " + lbDir + "/legacy-other.conf belongs to environment other (upstream web)"},
		{"a worker squatting the host's HTTPS port", files(map[string]string{override: "services:\n  worker:\n    ports: ['443:9000']\n    x-berth: {stop_first: true}\n"}), "worker:ports: host port 443 is refused"},
		{"labels a reverse proxy on the host routes by", web("    labels: {traefik.http.routers.steal.rule: 'Host(`other.example`)'}\n"), "web:labels.traefik.http.routers.steal.rule: label traefik.http.routers.steal.rule is refused"},
		{"a blob bomb", func() string {
			clean()
			f, err := os.Create(filepath.Join(w.repo.WorkDir(), envDir, "big"))
			if err != nil {
				t.Fatal(err)
			}
			f.Truncate(200 << 20) // zeros: a few hundred KB on the wire
			f.Close()
			return w.repo.CommitFiles(t, "trick", nil)
		}, "holds an object of 209715200 bytes, more than the 104857600 berth accepts for one file"},
	}
	for _, tc := range tricks {
		t.Run(tc.name, func(t *testing.T) {
			committed = nil
			c := tc.commit()
			s := waitState(t, w, func(s hostileState) bool { return s.Failed.Commit == c })
			t.Logf("refused: %s", s.Failed.Reason)
			for _, content := range committed {
				for _, line := range strings.Split(content, "\n") {
					if line = strings.TrimSpace(line); len(line) >= 24 && strings.Contains(s.Failed.Reason, line) {
						t.Errorf("the refusal quotes the file: %q", line)
					}
				}
			}
			if !strings.Contains(s.Failed.Reason, tc.reason) {
				t.Errorf("refused for %q, want a reason containing %q", s.Failed.Reason, tc.reason)
			}
			if s.Live.Commit != c1 || w.serving() != "version=v1" || !slices.Equal(w.containers(), want) {
				t.Fatalf("the host moved: live %s, serving %q, containers %v", s.Live.Commit, w.serving(), w.containers())
			}
		})
	}

	after := snapshot(t, watched, skip)
	for p, b := range before {
		if a, ok := after[p]; !ok {
			t.Errorf("%s was removed", p)
		} else if a != b {
			t.Errorf("%s changed: %s → %s", p, b, a)
		}
	}
	for p := range after {
		if _, ok := before[p]; !ok {
			t.Errorf("%s was created", p)
		}
	}

	// No host file's content anywhere berth writes or answers.
	var seen strings.Builder
	client := w.apiClient()
	for _, path := range []string{"/api/status", "/api/history", "/api/jobs", "/metrics"} {
		resp, err := client.Get("http://berth" + path)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		fmt.Fprintf(&seen, "%s\n%s\n", path, b)
	}
	for _, args := range [][]string{{"status", "--json", "--config", w.config}, {"history", "--json", "--config", w.config}, {"validate", w.repo.WorkDir()}} {
		out, _ := exec.Command(w.bin, args...).CombinedOutput()
		seen.Write(out)
	}
	filepath.WalkDir(w.state, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			b, _ := os.ReadFile(p)
			fmt.Fprintf(&seen, "%s\n%s\n", p, b)
		}
		return nil
	})
	for _, id := range w.containerIDs() {
		info, err := w.d.Client.ContainerInspect(context.Background(), id)
		if err == nil {
			b, _ := json.Marshal(info.Config)
			seen.Write(b)
		}
	}
	daemon.Process.Kill()
	daemon.Wait()
	logged, _ := os.ReadFile(logFile)
	seen.Write(logged)
	if strings.Contains(seen.String(), hostMarker) {
		i := strings.Index(seen.String(), hostMarker)
		t.Fatalf("a host file's content leaked: …%s…", seen.String()[max(0, i-300):min(len(seen.String()), i+100)])
	}
	if !strings.Contains(string(logged), "revision refused") {
		t.Errorf("the log records no refusal:\n%s", logged)
	}
}

type hostileState struct {
	Live   struct{ Commit string }
	Failed struct{ Commit, Reason string }
}
