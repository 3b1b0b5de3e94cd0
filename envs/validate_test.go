package envs

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const lbBlock = "x-berth:\n  lb: {type: nginx, upstream: app, file: /etc/nginx/conf.d/berth-app.conf}\n"

func TestValidate_EachRuleWithItsMessage(t *testing.T) {
	const f = "envs/prod/compose.yaml"
	img := "r/app@" + d1
	tests := []struct {
		name    string
		compose string
		opts    Options
		want    []string
	}{
		{
			name:    "unknown x-berth key of a service",
			compose: "services:\n  web:\n    image: " + img + "\n    x-berth: {role: server, port: 80, prot: 8080}\n" + lbBlock,
			want:    []string{f + `:web:x-berth.prot: unknown key "prot" (known keys: role, port, secrets, secret_files, stop_first, lb, watch, migration)`},
		},
		{
			name:    "unknown top-level x-berth key",
			compose: "services:\n  w: {image: " + img + "}\nx-berth: {require_digest: false}\n",
			want:    []string{f + `::x-berth.require_digest: unknown key "require_digest" (known keys: require_digests, lb, watch, jobs, rollout, promote, images)`},
		},
		{
			name:    "tag without digest",
			compose: "services:\n  w: {image: 'r/app:1.2'}\n",
			want:    []string{f + `:w:image: image "r/app:1.2" is not pinned by digest (write repo@sha256:<digest>, or set x-berth.require_digests: false for this env)`},
		},
		{
			name:    "tags allowed when digests are not required",
			compose: "services:\n  w: {image: 'r/app:1.2'}\nx-berth: {require_digests: false}\n",
		},
		{
			name:    "server without port",
			compose: "services:\n  web:\n    image: " + img + "\n    x-berth: {role: server}\n" + lbBlock,
			want:    []string{f + `:web:x-berth.port: a server needs the container port the load balancer targets (set x-berth.port, e.g. 8080)`},
		},
		{
			name:    "server publishing a host port",
			compose: "services:\n  web:\n    image: " + img + "\n    ports: ['8080:8080']\n    x-berth: {role: server, port: 8080}\n" + lbBlock,
			want:    []string{f + `:web:ports: a server must not publish a fixed host port (the load balancer owns the public port; berth publishes each server container on a free loopback port)`},
		},
		{
			name:    "server without a load balancer",
			compose: "services:\n  web:\n    image: " + img + "\n    x-berth: {role: server, port: 8080}\n",
			want:    []string{f + `:web:x-berth.lb: a server needs a load balancer to switch (add x-berth: {lb: {type: nginx, upstream: NAME}} to the server, or at the top level for an env's one server)`},
		},
		{
			name:    "worker publishing a host port without stop_first",
			compose: "services:\n  w:\n    image: " + img + "\n    ports: ['9000:9000']\n",
			want:    []string{f + `:w:ports: a worker with a fixed host port cannot run old and new side by side (set x-berth.stop_first: true, or make it a server behind the load balancer)`},
		},
		{
			name:    "migration with a restart policy",
			compose: "services:\n  m:\n    image: " + img + "\n    restart: always\n    x-berth: {role: migrate}\n",
			want:    []string{f + `:m:restart: a migrate service runs once; restart "always" would rerun it (remove restart:)`},
		},
		{
			name:    "malformed secret reference",
			compose: "services:\n  w:\n    image: " + img + "\n    x-berth: {secrets: {DB: kv/db}}\n",
			want:    []string{f + `:w:x-berth.secrets.DB: secret reference "kv/db" has no #field (write "path#field" or "path#field@version", e.g. "kv/journal/db#password", or "sops:FILE#KEY")`},
		},
		{
			name:    "secrets without a Vault configured",
			compose: "services:\n  w:\n    image: " + img + "\n    x-berth: {secrets: {DB: kv/db#pw}}\n",
			opts:    Options{NoSecretsBackend: true},
			want:    []string{f + `:w:x-berth.secrets: declares secrets but the agent has no Vault configured (configure vault: in /etc/berth/agent.yaml)`},
		},
		{
			name:    "secret files: a bad name, no Vault, and a volume over /run/secrets",
			compose: "services:\n  w:\n    image: " + img + "\n    volumes: [{type: volume, source: v, target: /run/secrets}]\n    x-berth: {secret_files: {db_password: kv/db#pw, ../x: kv/db#pw}}\nvolumes: {v: {}}\n",
			opts:    Options{NoSecretsBackend: true},
			want: []string{
				f + `:w:volumes: /run/secrets is where x-berth.secret_files are mounted (mount the volume elsewhere)`,
				f + `:w:x-berth.secret_files: declares secret files but the agent has no Vault configured (configure vault: in /etc/berth/agent.yaml)`,
				f + `:w:x-berth.secret_files.../x: "../x" is not a valid file name (letters, digits, '.', '_' and '-', no '/')`,
			},
		},
		{
			name:    "invalid cron expression and time zone",
			compose: "services:\n  w: {image: " + img + "}\nx-berth:\n  jobs:\n    j: {schedule: '61 * * * *', timezone: Mars/Olympus, service: w}\n",
			want: []string{
				f + `::x-berth.jobs.j.schedule: invalid schedule "61 * * * *": end of range (61) above maximum (59): 61 (5 cron fields ("0 3 * * *"), 6 with seconds, or @daily / @every 10m)`,
				f + `::x-berth.jobs.j.timezone: unknown time zone "Mars/Olympus" (an IANA name such as Europe/London or UTC)`,
			},
		},
		{
			name:    "job naming a missing service",
			compose: "services:\n  w: {image: " + img + "}\nx-berth:\n  jobs:\n    j: {schedule: '@daily', service: nope}\n",
			want:    []string{f + `::x-berth.jobs.j.service: no service "nope" in this environment (name a service defined under services:)`},
		},
		{
			name:    "compose key berth does not support",
			compose: "services:\n  w:\n    image: " + img + "\n    build: .\n    container_name: w1\n",
			want: []string{
				f + `:w:build: "build" is not supported by berth yet (berth deploys images pinned by digest; build in CI and push)`,
				f + `:w:container_name: "container_name" is not supported by berth yet (berth names containers itself: a server runs old and new side by side)`,
			},
		},
		{
			name:    "deploy keys beyond resource limits",
			compose: "services:\n  w:\n    image: " + img + "\n    deploy: {replicas: 2, update_config: {parallelism: 1}, resources: {limits: {memory: 64M}}}\n",
			want:    []string{f + `:w:deploy.update_config: "deploy.update_config" is not supported by berth yet (berth runs a service on one host: of deploy, it takes replicas and resources.limits)`},
		},
		{
			name:    "top-level key berth does not support",
			compose: "services:\n  w: {image: " + img + "}\nsecrets:\n  s: {file: ./s.txt}\n",
			want:    []string{f + `::secrets: top-level "secrets" is not supported by berth yet (remove it; berth would otherwise ignore it)`},
		},
		{
			name: "host privileges refused by default",
			compose: "services:\n  w:\n    image: " + img + "\n    privileged: true\n    network_mode: host\n    pid: host\n    ipc: host\n    cap_add: [NET_ADMIN]\n    devices: ['/dev/fuse:/dev/fuse']\n" +
				"    volumes: ['/var/run/docker.sock:/var/run/docker.sock', '/:/host', '/srv/data:/data']\n",
			want: []string{
				f + `:w:cap_add: added capabilities [NET_ADMIN] are refused (the agent config must allow it (policy in /etc/berth/agent.yaml))`,
				f + `:w:devices: host devices are refused (the agent config must allow it (policy in /etc/berth/agent.yaml))`,
				f + `:w:ipc: the host IPC namespace is refused (the agent config must allow it (policy in /etc/berth/agent.yaml))`,
				f + `:w:network_mode: host networking is refused (the agent config must allow it (policy in /etc/berth/agent.yaml))`,
				f + `:w:pid: the host PID namespace is refused (the agent config must allow it (policy in /etc/berth/agent.yaml))`,
				f + `:w:privileged: privileged containers are refused (the agent config must allow it (policy in /etc/berth/agent.yaml))`,
				f + `:w:volumes[0]: mounting /var/run/docker.sock hands the container control of the host's Docker (the agent config must allow it (policy in /etc/berth/agent.yaml))`,
				f + `:w:volumes[1]: mounting the host root is refused (mount the directory the service needs)`,
				f + `:w:volumes[2]: bind mount of /srv/data is outside the allowed host paths (add its directory to policy.allowed_bind_mounts in /etc/berth/agent.yaml, or use a named volume)`,
			},
		},
		{
			name: "host privileges allowed by policy",
			compose: "services:\n  w:\n    image: " + img + "\n    privileged: true\n    network_mode: host\n    cap_add: [NET_ADMIN]\n    devices: ['/dev/fuse:/dev/fuse']\n" +
				"    volumes: ['/var/run/docker.sock:/var/run/docker.sock', '/srv/data/x:/data']\n",
			opts: Options{Policy: Policy{AllowPrivileged: true, AllowHostNamespaces: true, AllowCapAdd: true, AllowDevices: true, AllowDockerSocket: true, AllowedBindMounts: []string{"/srv/data"}}},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, ps := load(t, map[string]string{"envs/prod/compose.yaml": tc.compose}, tc.opts)
			var got []string
			for _, p := range ps {
				got = append(got, p.String())
			}
			if strings.Join(got, "\n") != strings.Join(tc.want, "\n") {
				t.Errorf("problems:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tc.want, "\n"))
			}
		})
	}
}

func TestValidate_ProblemNamesTheFileThatSetsTheField(t *testing.T) {
	_, ps := load(t, map[string]string{
		"envs/prod/compose.yaml":          "services:\n  w: {image: r/app@" + d1 + "}\n",
		"envs/prod/compose.override.yaml": "services:\n  w: {image: 'r/app:latest'}\n",
	}, Options{})
	if len(ps) != 1 || ps[0].File != "envs/prod/compose.override.yaml" || ps[0].Service != "w" || ps[0].Field != "image" {
		t.Fatalf("problems %v, want one in envs/prod/compose.override.yaml:w:image", ps)
	}
}

func TestValidate_PathsMustStayInsideTheRepo(t *testing.T) {
	img := "r/app@" + d1
	tests := []struct {
		name  string
		files map[string]string
		link  [2]string // symlink target, link path (relative to the checkout)
		want  string
	}{
		{
			name:  "include outside",
			files: map[string]string{"envs/prod/compose.yaml": "include: ['../../../outside.yaml']\nservices:\n  w: {image: " + img + "}\n"},
			want:  `envs/prod/compose.yaml::include[0]: ../../../outside.yaml resolves to `,
		},
		{
			name:  "extends file outside",
			files: map[string]string{"envs/prod/compose.yaml": "services:\n  w: {image: " + img + ", extends: {file: /etc/base.yaml, service: b}}\n"},
			want:  `envs/prod/compose.yaml:w:extends.file: /etc/base.yaml is outside the config repository (include and extend only files inside the config repository)`,
		},
		{
			name:  "env_file symlinked outside",
			files: map[string]string{"envs/prod/compose.yaml": "services:\n  w: {image: " + img + ", env_file: [./app.env]}\n"},
			link:  [2]string{"/etc/passwd", "envs/prod/app.env"},
			want:  `envs/prod/compose.yaml:w:env_file[0]: envs/prod/app.env resolves to /etc/passwd, outside the config repository (keep env files inside the config repository)`,
		},
		{
			name:  "interpolated include path, checked once interpolated",
			files: map[string]string{"envs/prod/compose.yaml": "include: ['${X}/a.yaml']\nservices:\n  w: {image: " + img + "}\n"},
			want:  `envs/prod/compose.yaml::include: /a.yaml is outside the config repository (include and extend only files inside the config repository)`,
		},
		{
			name:  "bind mount symlinked out of the repo",
			files: map[string]string{"envs/prod/compose.yaml": "services:\n  w: {image: " + img + ", volumes: ['./data:/data']}\n"},
			link:  [2]string{"/etc", "envs/prod/data"},
			want:  `envs/prod/compose.yaml:w:volumes[0]: bind mount of envs/prod/data resolves to /etc, outside the config repository (mount files of the config repository, or a host path the policy allows)`,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := writeTree(t, tc.files)
			if tc.link[0] != "" {
				if err := os.Symlink(tc.link[0], filepath.Join(dir, tc.link[1])); err != nil {
					t.Fatal(err)
				}
			}
			_, err := Load(t.Context(), dir, "prod", Options{})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one containing %q", err, tc.want)
			}
		})
	}
}

func TestValidate_FilesAboveTheSizeCapAreNotParsed(t *testing.T) {
	big := "services:\n  w: {image: r/app@" + d1 + "}\n# " + strings.Repeat("x", 2048) + "\n"
	_, ps := load(t, map[string]string{"envs/prod/compose.yaml": big}, Options{MaxFileSize: 1024})
	if len(ps) != 1 || !strings.Contains(ps[0].Message, "above the 1024-byte limit") {
		t.Fatalf("problems %v, want the size cap", ps)
	}
}
