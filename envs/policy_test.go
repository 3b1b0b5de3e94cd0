package envs

import (
	"strings"
	"testing"
)

// TestPolicy_EachRuleWithItsMessage covers every rule of the trust model
// (DESIGN.md §7, docs/security.md) with the exact message a repo author
// sees, and the allow switch that lifts it where there is one.
func TestPolicy_EachRuleWithItsMessage(t *testing.T) {
	const f = "envs/prod/compose.yaml"
	img := "r/app@" + d1
	svc := func(body string) string { return "services:\n  w:\n    image: " + img + "\n" + body }
	tests := []struct {
		name    string
		compose string
		opts    Options
		want    []string
	}{
		{
			name:    "network, pid and ipc of another container",
			compose: svc("    network_mode: container:other\n    pid: container:other\n    ipc: service:db\n  db: {image: " + img + "}\n"),
			want: []string{
				f + `:w:ipc: sharing another container's IPC namespace (service:db) is refused (containers of other projects are out of reach; run the processes in one service)`,
				f + `:w:network_mode: sharing another container's network namespace (container:other) is refused (join a network of this project instead)`,
				f + `:w:pid: sharing another container's PID namespace (container:other) is refused (containers of other projects are out of reach; run the processes in one service)`,
			},
		},
		{
			// Unsupported: refused before compose-go loads the file.
			name:    "uts",
			compose: svc("    uts: host\n"),
			want:    []string{f + `:w:uts: "uts" is not supported by berth yet (remove it; berth would otherwise ignore it)`},
		},
		{
			name:    "network_mode bridge reaches other projects",
			compose: svc("    network_mode: bridge\n"),
			want:    []string{f + `:w:network_mode: network_mode "bridge" is refused (use networks: of this project, or none)`},
		},
		{
			name:    "security_opt weakening confinement",
			compose: svc("    security_opt: ['apparmor=unconfined', 'seccomp=unconfined', 'systempaths=unconfined', 'label=disable', 'no-new-privileges:true']\n"),
			want: []string{
				f + `:w:security_opt[0]: security_opt "apparmor=unconfined" is refused: it would weaken the container's confinement (add it to policy.allowed_security_opt in /etc/berth/agent.yaml)`,
				f + `:w:security_opt[1]: security_opt "seccomp=unconfined" is refused: it would weaken the container's confinement (add it to policy.allowed_security_opt in /etc/berth/agent.yaml)`,
				f + `:w:security_opt[2]: security_opt "systempaths=unconfined" is refused: it would weaken the container's confinement (add it to policy.allowed_security_opt in /etc/berth/agent.yaml)`,
				f + `:w:security_opt[3]: security_opt "label=disable" is refused: it would weaken the container's confinement (add it to policy.allowed_security_opt in /etc/berth/agent.yaml)`,
			},
		},
		{
			name:    "security_opt allowed by policy",
			compose: svc("    security_opt: ['apparmor=unconfined', 'seccomp=/etc/x.json']\n"),
			opts:    Options{Policy: Policy{AllowedSecurityOpt: []string{"apparmor=unconfined", "seccomp=*"}}},
		},
		{
			name:    "sysctls outside net.*",
			compose: svc("    sysctls: {kernel.shmmax: '1', net.core.somaxconn: '1024'}\n"),
			want:    []string{f + `:w:sysctls.kernel.shmmax: sysctl kernel.shmmax is refused (only net.* unless policy.allowed_sysctls in /etc/berth/agent.yaml lists it)`},
		},
		{
			name:    "sysctls the policy lists instead",
			compose: svc("    sysctls: {kernel.shmmax: '1', net.core.somaxconn: '1024'}\n"),
			opts:    Options{Policy: Policy{AllowedSysctls: []string{"kernel.shmmax"}}},
			want:    []string{f + `:w:sysctls.net.core.somaxconn: sysctl net.core.somaxconn is refused (only kernel.shmmax unless policy.allowed_sysctls in /etc/berth/agent.yaml lists it)`},
		},
		{
			name:    "logging driver that sends logs elsewhere",
			compose: svc("    logging: {driver: syslog, options: {syslog-address: 'tcp://10.0.0.1:514'}}\n"),
			want:    []string{f + `:w:logging.driver: logging driver "syslog" is refused: it makes the Docker daemon send logs elsewhere (use json-file, local, journald, none, or add it to policy.allowed_logging_drivers in /etc/berth/agent.yaml)`},
		},
		{
			name:    "logging driver allowed by policy",
			compose: svc("    logging: {driver: gelf}\n"),
			opts:    Options{Policy: Policy{AllowedLoggingDrivers: []string{"gelf"}}},
		},
		{
			name:    "berth and compose labels",
			compose: svc("    labels: {berth.env: other, com.docker.compose.project: other, app: x}\n"),
			want: []string{
				f + `:w:labels.berth.env: label berth.env is reserved: berth and Compose use these to know which containers are whose (use a label of your own)`,
				f + `:w:labels.com.docker.compose.project: label com.docker.compose.project is reserved: berth and Compose use these to know which containers are whose (use a label of your own)`,
			},
		},
		{
			name:    "ulimits beyond nofile and nproc, and out of their bounds",
			compose: svc("    ulimits: {rtprio: 99, memlock: -1, nofile: {soft: 1024, hard: 2097152}, nproc: 4096}\n"),
			want: []string{
				f + `:w:ulimits.memlock: ulimit memlock is refused (only nofile and nproc, unless policy.allowed_ulimits in /etc/berth/agent.yaml lists it)`,
				f + `:w:ulimits.nofile: ulimit nofile 2097152 is out of range (from 0 to 1048576, or list nofile in policy.allowed_ulimits in /etc/berth/agent.yaml)`,
				f + `:w:ulimits.rtprio: ulimit rtprio is refused (only nofile and nproc, unless policy.allowed_ulimits in /etc/berth/agent.yaml lists it)`,
			},
		},
		{
			name:    "ulimits allowed by policy",
			compose: svc("    ulimits: {memlock: -1, nofile: 2097152}\n"),
			opts:    Options{Policy: Policy{AllowedUlimits: []string{"memlock", "nofile"}}},
		},
		{
			name:    "a stop grace period of years",
			compose: svc("    stop_signal: SIGWINCH\n    stop_grace_period: 87600h\n"),
			want:    []string{f + `:w:stop_grace_period: stop_grace_period 87600h0m0s is refused: berth waits at most 5m0s for a container to stop (keep it from 0 to 5m)`},
		},
		{
			name:    "a stop grace period of five minutes",
			compose: svc("    stop_grace_period: 5m\n"),
		},
		{
			name:    "NaN",
			compose: svc("    deploy: {resources: {limits: {cpus: 'NaN'}}}\n"),
			want:    []string{f + `:w:deploy.resources.limits.cpus: NaN is not a number berth can use (write a finite number)`},
		},
		{
			name:    "Inf, refused by compose-go itself",
			compose: svc("    cpus: .inf\n"),
			want:    []string{f + `: validating envs/prod/compose.yaml: json: unsupported value: +Inf (see ` + "`docker compose config`" + ` for the same file)`},
		},
		{
			name:    "a port range beyond a sane count",
			compose: svc("    ports: ['20000-21000:20000-21000']\n    x-berth: {stop_first: true}\n"),
			want:    []string{f + `:w:ports: port ranges expand to 1001 mappings, more than 256 (publish the ports the service needs)`},
		},
		{
			name:    "named volume binding the host root through driver_opts",
			compose: svc("    volumes: ['v:/data']\nvolumes:\n  v: {driver: local, driver_opts: {type: none, o: bind, device: /}}\n"),
			want:    []string{f + `::volumes.v.driver_opts: volume driver_opts are refused: with the local driver they mount any host path (leave driver_opts out, or set policy.allow_volume_drivers in /etc/berth/agent.yaml)`},
		},
		{
			name:    "volume driver",
			compose: svc("    volumes: ['v:/data']\nvolumes:\n  v: {driver: rexray}\n"),
			want:    []string{f + `::volumes.v.driver: volume driver "rexray" is refused (use the local driver, or set policy.allow_volume_drivers in /etc/berth/agent.yaml)`},
		},
		{
			name:    "volume driver allowed by policy",
			compose: svc("    volumes: ['v:/data']\nvolumes:\n  v: {driver: local, driver_opts: {type: nfs, o: 'addr=10.0.0.1', device: ':/x'}}\n"),
			opts:    Options{Policy: Policy{AllowVolumeDrivers: true}},
		},
		{
			name:    "external volume and another project's volume",
			compose: svc("    volumes: ['v:/data', 'o:/other']\nvolumes:\n  v: {external: true, name: app_data}\n  o: {name: other_data}\n"),
			want: []string{
				f + `::volumes.o.name: volume name "other_data" is refused: this project's volumes are named prod_<volume> (leave name: out)`,
				f + `::volumes.v.external: external volume "app_data" is refused: it belongs to another project or to the host (use a volume of this project, or set policy.allow_external_volumes in /etc/berth/agent.yaml)`,
			},
		},
		{
			name:    "external volume allowed by policy",
			compose: svc("    volumes: ['v:/data']\nvolumes:\n  v: {external: true, name: app_data}\n"),
			opts:    Options{Policy: Policy{AllowExternalVolumes: true}},
		},
		{
			name:    "the host network as an external network, macvlan, driver options, another project's network",
			compose: svc("    networks: [h, m, o]\nnetworks:\n  h: {external: true, name: host}\n  m: {driver: macvlan, driver_opts: {parent: eth0}}\n  o: {name: other_default}\n"),
			want: []string{
				f + `::networks.h.external: external network "host" is refused: other projects' containers or the host's network are there (use a network of this project, or set policy.allow_external_networks in /etc/berth/agent.yaml)`,
				f + `::networks.m.driver: network driver "macvlan" is refused: it attaches containers to the host's network (use the bridge driver)`,
				f + `::networks.m.driver_opts: network driver_opts are refused (leave driver_opts out)`,
				f + `::networks.o.name: network name "other_default" is refused: this project's networks are named prod_<network> (leave name: out)`,
			},
		},
		{
			name:    "external network allowed by policy",
			compose: svc("    networks: [proxy]\nnetworks:\n  proxy: {external: true, name: shared_proxy}\n"),
			opts:    Options{Policy: Policy{AllowExternalNetworks: true}},
		},
		{
			name:    "userns_mode",
			compose: svc("    userns_mode: host\n"),
			want:    []string{f + `:w:userns_mode: "userns_mode" is not supported by berth yet (remove it; berth would otherwise ignore it)`},
		},
		{
			name:    "a volume type berth does not mount",
			compose: svc("    volumes: [{type: npipe, source: x, target: /x}]\n"),
			want:    []string{f + `:w:volumes[0]: volume type "npipe" is not supported by berth yet (use bind, volume or tmpfs)`},
		},
		{
			name:    "volume and network labels",
			compose: svc("    volumes: ['v:/data']\nvolumes:\n  v: {labels: {com.docker.compose.project: other}}\nnetworks:\n  default: {labels: {berth.env: other}}\n"),
			want: []string{
				f + `::networks.default.labels.berth.env: label berth.env is reserved for berth and Compose (use a label of your own)`,
				f + `::volumes.v.labels.com.docker.compose.project: label com.docker.compose.project is reserved for berth and Compose (use a label of your own)`,
			},
		},
		{
			name:    "the docker socket's directory",
			compose: svc("    volumes: ['/var/run:/host-run', '/run/containerd:/c']\n"),
			want: []string{
				f + `:w:volumes[0]: mounting /var/run hands the container control of the host's Docker (the agent config must allow it (policy in /etc/berth/agent.yaml))`,
				f + `:w:volumes[1]: mounting /run/containerd hands the container control of the host's Docker (the agent config must allow it (policy in /etc/berth/agent.yaml))`,
			},
		},
		{
			name:    "bind propagation",
			compose: svc("    volumes: [{type: bind, source: /srv/data, target: /data, bind: {propagation: rshared}}]\n"),
			opts:    Options{Policy: Policy{AllowedBindMounts: []string{"/srv/data"}}},
			want:    []string{f + `:w:volumes[0]: bind propagation "rshared" is refused: mounts would cross between the container and the host (leave propagation out)`},
		},
		{
			name:    "secret from auth/, sys/, identity/, cubbyhole/",
			compose: svc("    x-berth: {secrets: {A: 'auth/token/lookup-self#id', B: 'sys/config/state#x', C: 'identity/oidc/token/r#token', D: 'cubbyhole/x#y'}}\n"),
			want: []string{
				f + `:w:x-berth.secrets.A: Vault path auth/token/lookup-self is refused: auth/ is never readable by a config repository (secrets come from KV mounts; vault.allowed_paths in /etc/berth/agent.yaml lists the prefixes a repo may use)`,
				f + `:w:x-berth.secrets.B: Vault path sys/config/state is refused: sys/ is never readable by a config repository (secrets come from KV mounts; vault.allowed_paths in /etc/berth/agent.yaml lists the prefixes a repo may use)`,
				f + `:w:x-berth.secrets.C: Vault path identity/oidc/token/r is refused: identity/ is never readable by a config repository (secrets come from KV mounts; vault.allowed_paths in /etc/berth/agent.yaml lists the prefixes a repo may use)`,
				f + `:w:x-berth.secrets.D: Vault path cubbyhole/x is refused: cubbyhole/ is never readable by a config repository (secrets come from KV mounts; vault.allowed_paths in /etc/berth/agent.yaml lists the prefixes a repo may use)`,
			},
		},
		{
			name:    "secret outside vault.allowed_paths, even when listed",
			compose: svc("    x-berth: {secrets: {A: 'kv/other/db#pw', B: 'kv/app/db#pw', C: 'database/creds/app#password'}, secret_files: {f: 'auth/token/lookup-self#id'}}\n"),
			opts:    Options{SecretPaths: []string{"kv/app", "database/creds/app", "auth/token"}},
			want: []string{
				f + `:w:x-berth.secret_files.f: Vault path auth/token/lookup-self is refused: auth/ is never readable by a config repository (allowed: kv/app, database/creds/app, auth/token)`,
				f + `:w:x-berth.secrets.A: Vault path kv/other/db is outside vault.allowed_paths (allowed: kv/app, database/creds/app, auth/token)`,
			},
		},
		{
			name:    "job environment names",
			compose: svc("") + "x-berth:\n  jobs:\n    j: {schedule: '@daily', service: w, environment: {'A=B': x, OK: y}}\n",
			want:    []string{f + `::x-berth.jobs.j.environment.A=B: "A=B" is not a valid environment variable name (letters, digits and _, not starting with a digit)`},
		},
		{
			name:    "the load balancer file outside the agent's directory",
			compose: "services:\n  web:\n    image: " + img + "\n    x-berth: {role: server, port: 80}\nx-berth:\n  lb: {type: nginx, upstream: app, file: /etc/ssh/sshd_config.d/berth.conf}\n",
			want:    []string{f + `::x-berth.lb.file: /etc/ssh/sshd_config.d/berth.conf is outside the load balancer's directory /etc/nginx/conf.d (leave file: out; berth writes /etc/nginx/conf.d/berth-prod-app.conf)`},
		},
		{
			name:    "an upstream another environment of the host owns",
			compose: "services:\n  web:\n    image: " + img + "\n    x-berth: {role: server, port: 80}\nx-berth:\n  lb: {type: nginx, upstream: shop}\n",
			opts:    Options{LB: LBOptions{ConfDir: "/srv/lb", Owner: func(u string) string { return map[string]string{"shop": "staging"}[u] }}},
			want:    []string{f + `::x-berth.lb.upstream: upstream shop belongs to environment staging on this host (name an upstream of this environment's own)`},
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

// TestPolicy_HostPortsAndProxyLabels: a service publishes host ports from
// 1024 up unless policy.allowed_host_ports says otherwise (below are the
// host's own services', which a container binding them first would take
// over), and carries no label a reverse proxy on the host routes by unless
// policy.allow_proxy_labels.
func TestPolicy_HostPortsAndProxyLabels(t *testing.T) {
	const f = "envs/prod/compose.yaml"
	img := "r/app@" + d1
	worker := func(body string) string {
		return "services:\n  w:\n    image: " + img + "\n    x-berth: {stop_first: true}\n" + body
	}
	hint := " (ports below 1024 are the host's own services'; publish another, or list it in policy.allowed_host_ports in /etc/berth/agent.yaml)"
	tests := []struct {
		name    string
		compose string
		policy  Policy
		want    []string
	}{
		{"a privileged port", worker("    ports: ['443:8443', '127.0.0.1:2222:22', '8080:80']\n"), Policy{}, []string{
			f + ":w:ports: host port 443 is refused: services may publish 1024-65535" + hint,
		}},
		{"a range reaching below 1024", worker("    ports: ['1000-1030:1000-1030']\n"), Policy{}, []string{
			f + ":w:ports: host ports 1000-1023 are refused: services may publish 1024-65535" + hint,
		}},
		{"allowed by the policy", worker("    ports: ['53:53/udp', '8080:80']\n"), Policy{AllowedHostPorts: []string{"53", "8000-8999"}}, nil},
		{"outside what the policy lists", worker("    ports: ['9000:80', '22:22']\n"), Policy{AllowedHostPorts: []string{"53", "8000-8999"}}, []string{
			f + ":w:ports: host ports 9000, 22 are refused: services may publish 53, 8000-8999" + hint,
		}},
		{"proxy labels", worker("    labels: {traefik.http.routers.x.rule: 'Host(`other.example`)', caddy: other.example, app.tier: web}\n"), Policy{}, []string{
			f + ":w:labels.caddy: label caddy is refused: a reverse proxy on the host routes by it, to any container that carries it (berth's load balancer routes to servers (x-berth.lb), or set policy.allow_proxy_labels in /etc/berth/agent.yaml)",
			f + ":w:labels.traefik.http.routers.x.rule: label traefik.http.routers.x.rule is refused: a reverse proxy on the host routes by it, to any container that carries it (berth's load balancer routes to servers (x-berth.lb), or set policy.allow_proxy_labels in /etc/berth/agent.yaml)",
		}},
		{"proxy labels allowed", worker("    labels: {traefik.enable: 'true'}\n"), Policy{AllowProxyLabels: true}, nil},
		{"nginx-proxy's variables", worker("    environment: {VIRTUAL_HOST: other.example, LETSENCRYPT_HOST: other.example, APP_HOST: web}\n"), Policy{}, []string{
			f + ":w:environment.LETSENCRYPT_HOST: environment variable LETSENCRYPT_HOST is refused: nginx-proxy on the host routes a hostname by it, to any container that carries it (berth's load balancer routes to servers (x-berth.lb), or set policy.allow_proxy_labels in /etc/berth/agent.yaml)",
			f + ":w:environment.VIRTUAL_HOST: environment variable VIRTUAL_HOST is refused: nginx-proxy on the host routes a hostname by it, to any container that carries it (berth's load balancer routes to servers (x-berth.lb), or set policy.allow_proxy_labels in /etc/berth/agent.yaml)",
		}},
		{"nginx-proxy's variables allowed", worker("    environment: {VIRTUAL_HOST: other.example}\n"), Policy{AllowProxyLabels: true}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, ps := load(t, map[string]string{f: tc.compose}, Options{Policy: tc.policy})
			var got []string
			for _, p := range ps {
				got = append(got, p.String())
			}
			if strings.Join(got, "\n") != strings.Join(tc.want, "\n") {
				t.Errorf("problems:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tc.want, "\n"))
			}
		})
	}
	if _, err := ParseHostPorts([]string{"0"}); err == nil {
		t.Error("port 0 accepted")
	}
	if _, err := ParseHostPorts([]string{"80-70"}); err == nil {
		t.Error("an inverted range accepted")
	}
}
