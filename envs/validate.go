package envs

import (
	"fmt"
	"maps"
	"path/filepath"
	"regexp"
	"slices"
	"strings"

	"github.com/compose-spec/compose-go/v2/types"
)

// Policy is what the agent config allows services to ask of the host. The
// zero value allows none of it (DESIGN.md §7).
type Policy struct {
	AllowPrivileged     bool     `yaml:"allow_privileged"`
	AllowHostNamespaces bool     `yaml:"allow_host_namespaces"` // network_mode/pid/ipc: host
	AllowCapAdd         bool     `yaml:"allow_cap_add"`
	AllowDevices        bool     `yaml:"allow_devices"`
	AllowDockerSocket   bool     `yaml:"allow_docker_socket"`
	AllowedBindMounts   []string `yaml:"allowed_bind_mounts"` // host path prefixes
}

var digestRe = regexp.MustCompile(`@sha256:[0-9a-f]{64}$`)

// dockerSockets are host paths that hand a container control of the host.
var dockerSockets = []string{"/var/run/docker.sock", "/run/docker.sock", "/var/run", "/run"}

func validate(c *collector, env *Env, opts Options) {
	var servers []string
	for i := range env.Services {
		s := &env.Services[i]
		validateService(c, env, s, opts)
		if s.Berth.Role == RoleServer {
			servers = append(servers, s.Name)
		}
	}
	hasServer := len(servers) > 0
	if len(servers) > 1 {
		c.service(servers[1], extKey+".role", fmt.Sprintf("a second server (after %s): berth switches one upstream per environment", servers[0]), "make the others workers, or give them an environment of their own")
	}
	if hasServer && env.LB == nil {
		c.top(extKey+".lb", "servers need a load balancer to switch", "add x-berth: {lb: {type: nginx, upstream: NAME, file: /etc/nginx/conf.d/berth-NAME.conf}}")
	}
	for _, name := range slices.Sorted(maps.Keys(env.Jobs)) {
		job := env.Jobs[name]
		f := extKey + ".jobs." + name
		if !ValidJobName(name) {
			c.top(f, fmt.Sprintf("job name %q is not allowed", name), "letters, digits, '.', '_' and '-', starting with a letter or digit, at most 63 characters")
		}
		if job.Service != "" && env.Service(job.Service) == nil {
			c.top(f+".service", fmt.Sprintf("no service %q in this environment", job.Service), "name a service defined under services:")
		}
		if job.Image != "" && env.RequireDigests && !digestRe.MatchString(job.Image) {
			c.top(f+".image", fmt.Sprintf("image %q is not pinned by digest", job.Image), "write repo@sha256:<digest>, or set x-berth.require_digests: false")
		}
	}
}

func validateService(c *collector, env *Env, s *Service, opts Options) {
	cfg := &s.Config
	bad := func(field, msg, hint string) { c.service(s.Name, field, msg, hint) }

	switch {
	case cfg.Image == "":
		bad("image", "no image", "berth deploys images pinned by digest: image: repo@sha256:<digest>")
	case env.RequireDigests && !digestRe.MatchString(cfg.Image):
		bad("image", fmt.Sprintf("image %q is not pinned by digest", cfg.Image), "write repo@sha256:<digest>, or set x-berth.require_digests: false for this env")
	}

	published := false
	for _, p := range cfg.Ports {
		if p.Published != "" {
			published = true
		}
	}
	switch s.Berth.Role {
	case RoleServer:
		if s.Berth.Port == 0 {
			bad(extKey+".port", "a server needs the container port the load balancer targets", "set x-berth.port, e.g. 8080")
		}
		if published {
			bad("ports", "a server must not publish a fixed host port", "the load balancer owns the public port; berth publishes each server container on a free loopback port")
		}
	case RoleMigrate, RoleCLI:
		if cfg.Restart != "" && cfg.Restart != types.RestartPolicyNo {
			bad("restart", fmt.Sprintf("a %s service runs once; restart %q would rerun it", s.Berth.Role, cfg.Restart), "remove restart:")
		}
		if s.Berth.Port != 0 {
			bad(extKey+".port", fmt.Sprintf("a %s service serves no traffic", s.Berth.Role), "remove x-berth.port or make it a server")
		}
	case RoleWorker:
		if published && !s.Berth.StopFirst {
			bad("ports", "a worker with a fixed host port cannot run old and new side by side", "set x-berth.stop_first: true, or make it a server behind the load balancer")
		}
		if s.Berth.Port != 0 {
			bad(extKey+".port", "only servers are put behind the load balancer", "set x-berth.role: server")
		}
	}
	if len(s.Berth.Secrets) > 0 && opts.NoSecretsBackend {
		bad(extKey+".secrets", "declares secrets but the agent has no Vault configured", "configure vault: in /etc/berth/agent.yaml")
	}
	if len(s.Berth.SecretFiles) > 0 && opts.NoSecretsBackend {
		bad(extKey+".secret_files", "declares secret files but the agent has no Vault configured", "configure vault: in /etc/berth/agent.yaml")
	}
	if len(s.Berth.SecretFiles) > 0 {
		for _, v := range cfg.Volumes {
			if v.Target == SecretFilesDir || strings.HasPrefix(v.Target, SecretFilesDir+"/") {
				bad("volumes", fmt.Sprintf("%s is where x-berth.secret_files are mounted", v.Target), "mount the volume elsewhere")
			}
		}
	}
	for name := range s.Berth.Secrets {
		if _, ok := cfg.Environment[name]; ok {
			bad(extKey+".secrets."+name, fmt.Sprintf("%s is also set in environment:", name), "set it in one place")
		}
	}
	if cfg.Deploy != nil && cfg.Deploy.Replicas != nil && *cfg.Deploy.Replicas != 1 {
		bad("deploy.replicas", "berth runs one container per service", "remove replicas")
	}
	checkPolicy(bad, cfg, opts.Policy, env.root)
}

// checkPolicy refuses what hands a container the host, unless allowed. Bind
// mounts from inside the config repository are always allowed: they are
// part of the revision (and of the service's config hash).
func checkPolicy(bad func(field, msg, hint string), cfg *types.ServiceConfig, p Policy, root string) {
	const hint = "the agent config must allow it (policy in /etc/berth/agent.yaml)"
	if cfg.Privileged && !p.AllowPrivileged {
		bad("privileged", "privileged containers are refused", hint)
	}
	if !p.AllowHostNamespaces {
		if cfg.NetworkMode == "host" {
			bad("network_mode", "host networking is refused", hint)
		}
		if cfg.Pid == "host" {
			bad("pid", "the host PID namespace is refused", hint)
		}
		if cfg.Ipc == "host" {
			bad("ipc", "the host IPC namespace is refused", hint)
		}
	}
	if len(cfg.CapAdd) > 0 && !p.AllowCapAdd {
		bad("cap_add", fmt.Sprintf("added capabilities %v are refused", cfg.CapAdd), hint)
	}
	if len(cfg.Devices) > 0 && !p.AllowDevices {
		bad("devices", "host devices are refused", hint)
	}
	for i, v := range cfg.Volumes {
		if v.Type != types.VolumeTypeBind {
			if v.Type != types.VolumeTypeVolume && v.Type != types.VolumeTypeTmpfs {
				bad(fmt.Sprintf("volumes[%d]", i), fmt.Sprintf("volume type %q is not supported by berth yet", v.Type), "use bind, volume or tmpfs")
			}
			continue
		}
		field := fmt.Sprintf("volumes[%d]", i)
		src := filepath.Clean(v.Source)
		if resolved, err := filepath.EvalSymlinks(src); err == nil {
			src = resolved // a link in the repo must not smuggle a host path in
		}
		switch {
		case src == "/":
			bad(field, "mounting the host root is refused", "mount the directory the service needs")
		case slices.Contains(dockerSockets, src):
			if !p.AllowDockerSocket {
				bad(field, fmt.Sprintf("mounting %s hands the container control of the host's Docker", src), hint)
			}
		case !allowedBind(src, append([]string{root}, p.AllowedBindMounts...)):
			bad(field, fmt.Sprintf("bind mount of %s is outside the allowed host paths", src), "add its directory to policy.allowed_bind_mounts in /etc/berth/agent.yaml, or use a named volume")
		}
	}
}

func allowedBind(src string, allowed []string) bool {
	for _, a := range allowed {
		a = filepath.Clean(a)
		if src == a || strings.HasPrefix(src, a+"/") {
			return true
		}
	}
	return false
}
