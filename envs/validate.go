package envs

import (
	"context"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strings"

	"github.com/compose-spec/compose-go/v2/types"
)

var digestRe = regexp.MustCompile(`@sha256:[0-9a-f]{64}$`)

// maxReplicas bounds deploy.replicas: containers of one service on one
// host, all started at once beside the old ones at every deploy.
const maxReplicas = 32

// validate collects every problem of env in c. Its error is an outage that
// stopped it (the host's containers could not be listed).
func validate(ctx context.Context, c *collector, env *Env, opts Options) error {
	checkProjectResources(c, env.Project, opts.Policy)
	mctx, cancel := context.WithTimeout(ctx, maxMountTime)
	defer cancel()
	mounts := &mountBudget{ctx: mctx, bytes: maxMountBytes, files: maxMountFiles}
	for i := range env.Services {
		validateService(c, env, &env.Services[i], opts, mounts)
	}
	balancers(c, env, opts.LB)
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
		for _, k := range slices.Sorted(maps.Keys(job.Environment)) {
			if !varNameRe.MatchString(k) {
				c.top(f+".environment."+k, fmt.Sprintf("%q is not a valid environment variable name", k), "letters, digits and _, not starting with a digit")
			} else if !opts.Policy.AllowProxyLabels && slices.Contains(proxyEnvVars, k) {
				c.top(f+".environment."+k, proxyEnvMessage(k), proxyEnvHint)
			}
		}
	}
	checkJobBounds(c, env.Jobs, opts.Policy)
	checkNameClash(c, env, opts.HostEnvs)
	return checkBindOverlap(ctx, c, mounts.binds, opts.HostBinds)
}

// balancers gives each server its balancer (its own x-berth.lb, else the
// env's) and watch, and checks that each upstream or backend is switched
// by one server only, then checks every balancer against the host
// (checkLB).
func balancers(c *collector, env *Env, o LBOptions) {
	topUsed := false
	byName := map[string]string{} // "nginx upstream NAME" → the server switching it
	var servers []string
	for i := range env.Services {
		s := &env.Services[i]
		if s.Berth.Role != RoleServer {
			continue
		}
		servers = append(servers, s.Name)
		if !s.Berth.watchSet {
			s.Berth.Watch = env.Watch
		}
		lb := s.Berth.LB
		if lb == nil {
			if env.LB == nil {
				c.service(s.Name, extKey+".lb", "a server needs a load balancer to switch", "add x-berth: {lb: {type: nginx, upstream: NAME}} to the server, or at the top level for an env's one server")
				continue
			}
			lb, topUsed = env.LB, true
			s.Berth.LB = lb
		}
		if lb.Name() == "" {
			continue // reported when parsed
		}
		if other, dup := byName[lb.String()]; dup {
			field := extKey + ".lb"
			if lb == env.LB {
				c.service(s.Name, field, fmt.Sprintf("%s uses the top-level x-berth.lb, %s, which server %s switches already", s.Name, lb, other), "give each server its own x-berth.lb: one upstream or backend per server")
			} else {
				c.service(s.Name, field, fmt.Sprintf("%s is switched by server %s already", lb, other), "one upstream or backend per server: give "+s.Name+" its own")
			}
			continue
		}
		byName[lb.String()] = s.Name
	}
	switch {
	case env.LB != nil && len(servers) == 0:
		c.top(extKey+".lb", "the env has no server: the balancer would switch nothing", "remove the top-level x-berth.lb, or give the service behind it x-berth.role: server")
	case env.LB != nil && !topUsed:
		c.top(extKey+".lb", "no server uses it: each names its own x-berth.lb", "remove the top-level x-berth.lb")
	}
	checkLB(c, env, o)
}

func validateService(c *collector, env *Env, s *Service, opts Options, mounts *mountBudget) {
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
	s.Berth.Replicas = 1
	if cfg.Deploy != nil && cfg.Deploy.Replicas != nil {
		n := *cfg.Deploy.Replicas
		switch {
		case s.Berth.Role == RoleMigrate || s.Berth.Role == RoleCLI:
			if n != 1 {
				bad("deploy.replicas", fmt.Sprintf("a %s service runs once per deploy", s.Berth.Role), "remove deploy.replicas")
			}
		case n < 1 || n > maxReplicas:
			bad("deploy.replicas", fmt.Sprintf("%d replicas", n), fmt.Sprintf("from 1 to %d containers of a service on one host", maxReplicas))
		case published && n > 1:
			bad("deploy.replicas", fmt.Sprintf("%d replicas cannot all bind the fixed host port", n), "publish no fixed port (make it a server behind the load balancer), or run one replica")
		default:
			s.Berth.Replicas = n
		}
	}
	if s.Berth.Role != RoleServer {
		if s.Berth.LB != nil {
			bad(extKey+".lb", "only servers are switched in a load balancer", "set x-berth.role: server, or remove x-berth.lb")
		}
		if s.Berth.watchSet {
			bad(extKey+".watch", "only servers are watched after a switch", "set x-berth.role: server, or remove x-berth.watch")
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
	for _, kind := range []struct {
		refs        map[string]SecretRef
		field, what string
	}{{s.Berth.Secrets, ".secrets", "secrets"}, {s.Berth.SecretFiles, ".secret_files", "secret files"}} {
		vault, sops := countRefs(kind.refs)
		if vault > 0 && opts.NoSecretsBackend {
			bad(extKey+kind.field, "declares "+kind.what+" but the agent has no Vault configured", "configure vault: in /etc/berth/agent.yaml")
		}
		if sops > 0 && opts.NoSOPSKey {
			bad(extKey+kind.field, "declares SOPS-encrypted "+kind.what+" but the agent has no age key", "set sops.age_key_file in /etc/berth/agent.yaml")
		}
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
	for _, name := range slices.Sorted(maps.Keys(s.Berth.Secrets)) {
		if _, sops := s.Berth.Secrets[name].SOPSFile(); sops {
			continue
		}
		if err := CheckSecretPath(s.Berth.Secrets[name].Path, opts.SecretPaths); err != nil {
			bad(extKey+".secrets."+name, err.Error(), secretPathHint(opts.SecretPaths))
		}
	}
	for _, name := range slices.Sorted(maps.Keys(s.Berth.SecretFiles)) {
		if _, sops := s.Berth.SecretFiles[name].SOPSFile(); sops {
			continue
		}
		if err := CheckSecretPath(s.Berth.SecretFiles[name].Path, opts.SecretPaths); err != nil {
			bad(extKey+".secret_files."+name, err.Error(), secretPathHint(opts.SecretPaths))
		}
	}
	checkPolicy(bad, cfg, opts.Policy)
	checkMounts(bad, c.files, s, opts.Policy, mounts)
}
