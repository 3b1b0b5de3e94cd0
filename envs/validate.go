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

// validate collects every problem of env in c. Its error is an outage that
// stopped it (the host's containers could not be listed).
func validate(ctx context.Context, c *collector, env *Env, opts Options) error {
	checkProjectResources(c, env.Project, opts.Policy)
	checkLB(c, env, opts.LB)
	mctx, cancel := context.WithTimeout(ctx, maxMountTime)
	defer cancel()
	mounts := &mountBudget{ctx: mctx, bytes: maxMountBytes, files: maxMountFiles}
	var servers []string
	for i := range env.Services {
		s := &env.Services[i]
		validateService(c, env, s, opts, mounts)
		if s.Berth.Role == RoleServer {
			servers = append(servers, s.Name)
		}
	}
	hasServer := len(servers) > 0
	if len(servers) > 1 {
		c.service(servers[1], extKey+".role", fmt.Sprintf("a second server (after %s): berth switches one upstream per environment", servers[0]), "make the others workers, or give them an environment of their own")
	}
	if hasServer && env.LB == nil {
		c.top(extKey+".lb", "servers need a load balancer to switch", "add x-berth: {lb: {type: nginx, upstream: NAME}}")
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
		for _, k := range slices.Sorted(maps.Keys(job.Environment)) {
			if !varNameRe.MatchString(k) {
				c.top(f+".environment."+k, fmt.Sprintf("%q is not a valid environment variable name", k), "letters, digits and _, not starting with a digit")
			}
		}
	}
	return checkBindOverlap(ctx, c, mounts.binds, opts.HostBinds)
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
	for _, name := range slices.Sorted(maps.Keys(s.Berth.Secrets)) {
		if err := CheckSecretPath(s.Berth.Secrets[name].Path, opts.SecretPaths); err != nil {
			bad(extKey+".secrets."+name, err.Error(), secretPathHint(opts.SecretPaths))
		}
	}
	for _, name := range slices.Sorted(maps.Keys(s.Berth.SecretFiles)) {
		if err := CheckSecretPath(s.Berth.SecretFiles[name].Path, opts.SecretPaths); err != nil {
			bad(extKey+".secret_files."+name, err.Error(), secretPathHint(opts.SecretPaths))
		}
	}
	checkPolicy(bad, cfg, opts.Policy)
	checkMounts(bad, c.files, s, opts.Policy, mounts)
}
