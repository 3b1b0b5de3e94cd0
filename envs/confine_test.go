package envs

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
)

// marker is planted in host files: it must never appear in a problem.
const marker = "HOSTSECRET-7f3a"

// hostFile writes a file outside the checkout holding marker.
func hostFile(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestLoad_EveryFileReadStaysInTheCheckout(t *testing.T) {
	img := "r/app@" + d1
	host := hostFile(t, "secret.env", "SECRET="+marker+"\nfirst line "+marker+": [\n")
	hostYAML := hostFile(t, "base.yaml", "services:\n  app: {image: "+img+", environment: {S: "+marker+"}}\n")
	tests := []struct {
		name  string
		files map[string]string
		links map[string]string // link path in the checkout → target
		want  string
	}{
		{
			name:  "compose.yaml symlinked to a host file",
			files: map[string]string{"envs/prod/x": ""},
			links: map[string]string{"envs/prod/compose.yaml": host},
			want:  "envs/prod/compose.yaml: resolves to " + host + ", outside the config repository",
		},
		{
			name:  "compose.override.yaml symlinked to /proc/self/pagemap",
			files: map[string]string{"envs/prod/compose.yaml": "services:\n  w: {image: " + img + "}\n"},
			links: map[string]string{"envs/prod/compose.override.yaml": "/proc/self/pagemap"},
			want:  "envs/prod/compose.override.yaml: resolves to /proc/self/pagemap, outside the config repository",
		},
		{
			name: "include with project_directory, then an env_file relative to it",
			files: map[string]string{
				"envs/prod/compose.yaml": "include: [{path: inc/c.yaml, project_directory: ../..}]\nservices:\n  w: {image: " + img + "}\n",
				"envs/prod/inc/c.yaml":   "services:\n  x: {image: " + img + ", env_file: ../../" + filepath.Base(filepath.Dir(host)) + "/secret.env}\n",
			},
			want: "envs/prod/compose.yaml::include[0].project_directory: include project_directory is not supported by berth (leave it out: an included file's directory is its project directory)",
		},
		{
			name: "include env_file",
			files: map[string]string{
				"envs/prod/compose.yaml": "include: [{path: c.yaml, env_file: " + host + "}]\nservices:\n  w: {image: " + img + "}\n",
				"envs/prod/c.yaml":       "services: {}\n",
			},
			want: "envs/prod/compose.yaml::include[0].env_file: include env_file is not supported by berth (put the variables in the .env beside the included file)",
		},
		{
			name: "a nested include leaving the repo",
			files: map[string]string{
				"envs/prod/compose.yaml": "include: [inc/a.yaml]\nservices:\n  w: {image: " + img + "}\n",
				"envs/prod/inc/a.yaml":   "include: [" + hostYAML + "]\nservices: {}\n",
			},
			want: "envs/prod/inc/a.yaml::include[0]: " + hostYAML + " is outside the config repository (include and extend only files inside the config repository)",
		},
		{
			name: "the .env of an included file symlinked out",
			files: map[string]string{
				"envs/prod/compose.yaml": "include: [inc/a.yaml]\nservices:\n  w: {image: " + img + "}\n",
				"envs/prod/inc/a.yaml":   "services: {}\n",
			},
			links: map[string]string{"envs/prod/inc/.env": host},
			want:  "envs/prod/inc/.env: resolves to " + host + ", outside the config repository",
		},
		{
			name:  "extends.file through a symlinked directory",
			files: map[string]string{"envs/prod/compose.yaml": "services:\n  w: {extends: {file: shared/base.yaml, service: app}}\n"},
			links: map[string]string{"envs/prod/shared": filepath.Dir(hostYAML)},
			want:  "envs/prod/compose.yaml:w:extends.file: shared/base.yaml resolves to " + hostYAML + ", outside the config repository (include and extend only files inside the config repository)",
		},
		{
			name:  "the env's .env symlinked out",
			files: map[string]string{"envs/prod/compose.yaml": "services:\n  w: {image: " + img + "}\n"},
			links: map[string]string{"envs/prod/.env": host},
			want:  "envs/prod/.env: resolves to " + host + ", outside the config repository",
		},
		{
			name:  "env_file through ..",
			files: map[string]string{"envs/prod/compose.yaml": "services:\n  w: {image: " + img + ", env_file: ../../../" + filepath.Base(filepath.Dir(host)) + "/secret.env}\n"},
			want:  "envs/prod/compose.yaml:w:env_file[0]: ",
		},
		{
			name:  "the environment directory symlinked out",
			files: map[string]string{"envs/x": ""},
			links: map[string]string{"envs/prod": filepath.Dir(hostYAML)},
			want:  "envs/prod: resolves to " + filepath.Dir(hostYAML) + ", outside the config repository",
		},
		{
			name:  "an included directory",
			files: map[string]string{"envs/prod/compose.yaml": "include: [inc]\nservices:\n  w: {image: " + img + "}\n", "envs/prod/inc/a.yaml": "x: 1\n"},
			want:  "envs/prod/inc: is not a regular file",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := writeTree(t, tc.files)
			for link, target := range tc.links {
				os.MkdirAll(filepath.Dir(filepath.Join(dir, link)), 0o755)
				if err := os.Symlink(target, filepath.Join(dir, link)); err != nil {
					t.Fatal(err)
				}
			}
			_, err := Load(t.Context(), dir, "prod", Options{})
			var ps Problems
			if !errors.As(err, &ps) {
				t.Fatalf("Load: %v, want problems", err)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("problems:\n%v\nwant one containing %q", err, tc.want)
			}
			if strings.Contains(err.Error(), marker) {
				t.Errorf("a host file's content leaked into the problems:\n%v", err)
			}
		})
	}
}

func TestLoad_FIFOIsRefusedWithoutWaitingForAWriter(t *testing.T) {
	dir := writeTree(t, map[string]string{"envs/prod/compose.yaml": "services:\n  w: {image: r/app@" + d1 + "}\n"})
	if err := syscall.Mkfifo(filepath.Join(dir, "envs/prod/.env"), 0o644); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { _, err := Load(t.Context(), dir, "prod", Options{}); done <- err }()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "envs/prod/.env: is not a regular file") {
			t.Fatalf("Load: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Load blocked on a FIFO")
	}
}

func TestLoad_SizeLimitCountsWhatIsRead(t *testing.T) {
	_, ps := load(t, map[string]string{
		"envs/prod/compose.yaml": "services:\n  w: {image: r/app@" + d1 + ", env_file: big.env}\n",
		"envs/prod/big.env":      "A=" + strings.Repeat("x", 4096) + "\n",
	}, Options{MaxFileSize: 1024})
	if len(ps) != 1 || ps[0].String() != "envs/prod/compose.yaml:w:env_file[0]: envs/prod/big.env is above the 1024-byte limit for config files (keep env files inside the config repository)" {
		t.Fatalf("problems %v", ps)
	}
}

func TestLoad_ExtendsInAnExtendedFileIsRelativeToIt(t *testing.T) {
	env, ps := load(t, map[string]string{
		"envs/prod/compose.yaml":          "services:\n  w: {extends: {file: shared/base.yaml, service: app}}\n",
		"envs/prod/shared/base.yaml":      "services:\n  app: {extends: {file: more/root.yaml, service: root}, environment: {B: '1'}}\n",
		"envs/prod/shared/more/root.yaml": "services:\n  root: {image: r/app@" + d1 + ", environment: {R: '1'}}\n",
	}, Options{})
	if len(ps) > 0 {
		t.Fatal(ps)
	}
	e := env.Service("w").Config.Environment
	if e["B"] == nil || e["R"] == nil {
		t.Fatalf("environment %v, want B and R through both extends", e)
	}
}

func TestLoad_EveryProblemAtOnce(t *testing.T) {
	_, ps := load(t, map[string]string{"envs/prod/compose.yaml": "services:\n  w:\n    image: r/app:1\n    privileged: true\n    cap_add: [NET_ADMIN]\n"}, Options{})
	var got []string
	for _, p := range ps {
		got = append(got, p.Field)
	}
	if strings.Join(got, " ") != "cap_add image privileged" {
		t.Fatalf("problems %v, want every one at once", ps)
	}
}

func TestLoad_RepoMountsAreReadOnly(t *testing.T) {
	files := func(vol string) map[string]string {
		return map[string]string{
			"envs/prod/compose.yaml": "services:\n  w:\n    image: r/app@" + d1 + "\n    volumes: ['" + vol + "']\n",
			"envs/prod/conf/a.ini":   "a=1\n",
		}
	}
	env, ps := load(t, files("./conf:/conf"), Options{})
	if len(ps) > 0 || !env.Service("w").Config.Volumes[0].ReadOnly {
		t.Fatalf("a repo mount without :ro is not read-only (problems %v)", ps)
	}
	_, ps = load(t, files("./conf:/conf:rw"), Options{})
	if len(ps) != 1 || ps[0].String() != "envs/prod/compose.yaml:w:volumes[0]: mounting envs/prod/conf from the config repository read-write is refused (mount it read-only (:ro), or set policy.allow_rw_repo_mounts in /etc/berth/agent.yaml)" {
		t.Fatalf("problems %v", ps)
	}
	env, ps = load(t, files("./conf:/conf:rw"), Options{Policy: Policy{AllowRWRepoMounts: true}})
	if len(ps) > 0 || env.Service("w").Config.Volumes[0].ReadOnly {
		t.Fatalf("allowed rw mount: problems %v", ps)
	}
}

func TestLoad_HostBindFollowsSymlinksUnderAnAllowedPath(t *testing.T) {
	allowed := t.TempDir()
	if err := os.Symlink("/", filepath.Join(allowed, "root")); err != nil {
		t.Fatal(err)
	}
	_, ps := load(t, map[string]string{"envs/prod/compose.yaml": "services:\n  w:\n    image: r/app@" + d1 + "\n    volumes: ['" + allowed + "/root:/host', '" + allowed + ":/data']\n"},
		Options{Policy: Policy{AllowedBindMounts: []string{allowed}}})
	want := "envs/prod/compose.yaml:w:volumes[0]: mounting the host root is refused (" + allowed + "/root resolves to /) (mount the directory the service needs)"
	if len(ps) != 1 || ps[0].String() != want {
		t.Fatalf("problems %v\nwant %s", ps, want)
	}
}

func TestLoad_BindMountHashIsBounded(t *testing.T) {
	defer func(n int) { maxMountFiles = n }(maxMountFiles)
	maxMountFiles = 50
	files := map[string]string{"envs/prod/compose.yaml": "services:\n  w:\n    image: r/app@" + d1 + "\n    volumes: ['./data:/data:ro']\n"}
	for i := range maxMountFiles + 1 {
		files[filepath.Join("envs/prod/data", strings.Repeat("d", 1+i%7), "f"+itoa(i))] = "x"
	}
	_, ps := load(t, files, Options{})
	if len(ps) != 1 || !strings.Contains(ps[0].Message, "more than 50 files are mounted from the repository") {
		t.Fatalf("problems %v", ps)
	}
}

func TestLoad_APanicIsAProblemNotACrash(t *testing.T) {
	defer func() { loadHook = nil }()
	loadHook = func() { panic("boom " + marker) }
	var logged strings.Builder
	log := hclog.New(&hclog.LoggerOptions{Output: &logged})
	_, err := Load(t.Context(), writeTree(t, fullFiles()), "prod", Options{Log: log})
	var ps Problems
	if !errors.As(err, &ps) || len(ps) != 1 || ps[0].File != "envs/prod" {
		t.Fatalf("Load: %v, want one problem naming the environment", err)
	}
	if strings.Contains(err.Error(), marker) {
		t.Errorf("the panic value reached the problem: %v", err)
	}
	if !strings.Contains(logged.String(), "goroutine") {
		t.Errorf("no stack in the log: %s", logged.String())
	}
}

func TestLoad_ProblemInAnIncludedServiceNamesTheOverride(t *testing.T) {
	_, ps := load(t, map[string]string{
		"envs/prod/compose.yaml":          "include: [inc/redis.yaml]\nservices:\n  w: {image: r/app@" + d1 + "}\n",
		"envs/prod/inc/redis.yaml":        "services:\n  redis: {image: r/redis@" + d1 + "}\n",
		"envs/prod/compose.override.yaml": "services:\n  redis: {image: 'r/redis:7'}\n",
	}, Options{})
	if len(ps) != 1 || ps[0].File != "envs/prod/compose.override.yaml" || ps[0].Field != "image" {
		t.Fatalf("problems %v, want one in the override", ps)
	}
}
