package daemon

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/docker/docker/client"
	"github.com/hashicorp/go-hclog"

	"berth.dev/berth/agentconfig"
	"berth.dev/berth/engine"
	"berth.dev/berth/envs"
	"berth.dev/berth/gitsource"
	"berth.dev/berth/imagesig"
	"berth.dev/berth/lb"
	"berth.dev/berth/migrate"
	"berth.dev/berth/reconcile"
	"berth.dev/berth/secrets"
	"berth.dev/berth/statedir"
)

// Source adapts gitsource to what reconcile needs. gitsource marks its
// refusals (a rewrite, a bad signature) as verdicts itself.
type Source struct{ *gitsource.Source }

func (s Source) Fetch(ctx context.Context, commit, deployed string) (*reconcile.Revision, error) {
	rev, err := s.Source.Fetch(ctx, commit, deployed)
	if err != nil {
		return nil, err
	}
	return &reconcile.Revision{Commit: rev.Commit, Dir: rev.Dir, Author: rev.Author, Subject: rev.Subject, Signer: rev.Signer}, nil
}

// NewSource is the config repo of cfg, its object store and working
// copies in dir.
func NewSource(cfg *agentconfig.Config, dir string, log hclog.Logger) (*gitsource.Source, error) {
	keys := ""
	if cfg.Repo.TrustedKeysFile != "" {
		b, err := os.ReadFile(cfg.Repo.TrustedKeysFile)
		if err != nil {
			return nil, fmt.Errorf("read trusted keys: %w", err)
		}
		keys = string(b)
	}
	return gitsource.New(gitsource.Config{
		URL: cfg.Repo.URL, Branch: cfg.Repo.Branch, Auth: cfg.Repo.Auth, Dir: dir,
		Timeout: cfg.Repo.Timeout.Duration, AllowRewrites: cfg.Repo.AllowHistoryRewrites,
		HistoryDepth: cfg.Repo.HistoryDepth, TrustedKeys: keys,
	}, log.Named("gitsource"))
}

func loadOptions(cfg *agentconfig.Config, env string) envs.Options {
	o := envs.Options{Project: cfg.Project, Profiles: cfg.Profiles, Policy: cfg.Policy, NoSecretsBackend: cfg.Vault == nil, NoSOPSKey: cfg.SOPS == nil,
		LB: envs.LBOptions{ConfDir: cfg.Nginx.ConfDir, Owner: upstreamOwner(cfg.Nginx.ConfDir, env),
			BackendOwner: func(backend string) string { return lb.HAProxyOwner(cfg.HAProxy.ServersDir, backend) }}}
	o.LB.File = func(path string) (envs.LBFile, error) {
		f, err := lb.ReadNginxFile(path)
		return envs.LBFile(f), err
	}
	if cfg.Vault != nil {
		o.SecretPaths = cfg.Vault.AllowedPaths
	}
	return o
}

// upstreamOwner names the other environment of this host whose upstream
// file in dir is upstream's, if any: decided by what each file says about
// itself (its first line, else the upstream it defines), not by its name
// alone (lb.NginxOwner).
func upstreamOwner(dir, self string) func(upstream string) string {
	return func(upstream string) string { return lb.NginxOwner(dir, upstream, self) }
}

// repoDir is repo.path inside a working copy: a directory of the checkout
// itself, never a symlink leading out of it.
func repoDir(checkout, sub string) (string, error) {
	if sub == "" || sub == "." {
		return checkout, nil
	}
	root, err := os.OpenRoot(checkout)
	if err != nil {
		return "", err
	}
	defer root.Close()
	fi, err := root.Stat(sub)
	if err != nil || !fi.IsDir() {
		// A problem of the revision, like any invalid config.
		return "", envs.Problems{{File: sub, Message: "repo.path is not a directory inside the repository at this revision"}}
	}
	return filepath.Join(checkout, sub), nil
}

// NewSecrets is the Vault resolver behind a cache that re-reads Vault every
// check_interval (never, with redeploy_on_change: false, except for a
// dynamic secret whose lease runs out); nil without vault. renew keeps the
// leases of dynamic secrets alive until its context ends.
//
// With sops.age_key_file, sops: references go to the SOPS resolver
// instead, whose digests are salted with the host's salt in the state dir.
func NewSecrets(cfg *agentconfig.Config, log hclog.Logger) (sec reconcile.Secrets, renew func(context.Context), err error) {
	var vault secrets.Resolver
	renew = func(context.Context) {}
	if cfg.Vault != nil {
		v, err := secrets.New(cfg.Vault.Config, log)
		if err != nil {
			return nil, nil, err
		}
		interval := cfg.Vault.CheckInterval.Duration
		if r := cfg.Vault.RedeployOnChange; r != nil && !*r {
			interval = -1
		}
		vault, renew = &secrets.Cached{Resolver: v, Interval: interval}, v.RenewLeases
	}
	if cfg.SOPS == nil {
		if vault == nil {
			return nil, renew, nil
		}
		return vault, renew, nil
	}
	ids, err := cfg.AgeIdentities()
	if err != nil {
		return nil, nil, fmt.Errorf("sops: %w", err)
	}
	salt, err := secrets.SaltFile(filepath.Join(cfg.StateDir, "secret-salt"))
	if err != nil {
		return nil, nil, fmt.Errorf("sops: %w", err)
	}
	return secrets.Mux{Vault: vault, SOPS: &secrets.SOPS{Identities: ids, Salt: salt}}, renew, nil
}

// NewVerifier checks images against the host's images.verify and each
// environment's own rules, remembering verified digests in the state dir.
// It is made whether or not the host has rules: a repository may require
// signatures of its own.
func NewVerifier(cfg *agentconfig.Config, log hclog.Logger) (*imagesig.Verifier, error) {
	pol, err := cfg.ImagePolicy()
	if err != nil {
		return nil, err
	}
	cache, err := imagesig.OpenCache(filepath.Join(cfg.StateDir, imagesig.CacheFile))
	if err != nil {
		return nil, err
	}
	return &imagesig.Verifier{Host: pol, Cache: cache, Log: log.Named("imagesig")}, nil
}

// Loader loads environment env from a revision's working copy; its bind
// mounts are checked against the host's containers eng lists.
func Loader(cfg *agentconfig.Config, env string, eng *engine.Engine) func(ctx context.Context, rev *reconcile.Revision) (*envs.Env, error) {
	return func(ctx context.Context, rev *reconcile.Revision) (*envs.Env, error) {
		dir, err := repoDir(rev.Dir, cfg.Repo.Path)
		if err != nil {
			return nil, err
		}
		opts := loadOptions(cfg, env)
		opts.HostBinds = eng.HostBinds
		opts.HostEnvs = cfg.EnvNames()
		return envs.Load(ctx, dir, env, opts)
	}
}

// MigrationGrace is what a migration or cli run that timed out (or is
// interrupted) gets between its stop signal and SIGKILL, whatever its
// stop_grace_period says.
const MigrationGrace = 30 * time.Second

// NewDocker is the Docker client of cfg.
func NewDocker(cfg *agentconfig.Config) (*client.Client, error) {
	opts := []client.Opt{client.FromEnv, client.WithAPIVersionNegotiation()}
	if cfg.Docker.Host != "" {
		opts = append(opts, client.WithHost(cfg.Docker.Host))
	}
	c, err := client.NewClientWithOpts(opts...)
	if err != nil {
		return nil, fmt.Errorf("docker client: %w", err)
	}
	return c, nil
}

// NewDeployer is env's deployer: its migrations ledger is the env's own.
func NewDeployer(cfg *agentconfig.Config, env string, eng *engine.Engine, sec reconcile.Secrets, log hclog.Logger) *reconcile.Deployer {
	return &reconcile.Deployer{
		Secrets: sec,
		Images:  eng, Containers: eng, Observer: eng,
		OneShots: &migrate.Runner{Engine: eng, Ledger: statedir.Migrations(cfg.EnvDir(env)), Timeout: cfg.Deploy.MigrationTimeout.Duration,
			Grace: MigrationGrace, Log: log},
		// Asked once per server and deploy, with env.LB the server's own.
		Switcher:      func(env *envs.Env) reconcile.Switcher { return newSwitcher(cfg, env.Name, env.LB, log) },
		Log:           log.Named("reconcile"),
		HealthTimeout: cfg.Deploy.HealthTimeout.Duration,
		Settle:        cfg.Deploy.Settle.Duration,
		Pulls:         cfg.Deploy.Pulls,
	}
}

// newSwitcher is the balancer of one server: by its x-berth.lb type.
func newSwitcher(cfg *agentconfig.Config, env string, spec *envs.LBSpec, log hclog.Logger) reconcile.Switcher {
	if spec == nil {
		return nil
	}
	switch spec.Type {
	case "haproxy":
		h := cfg.HAProxy
		return &lb.HAProxy{Backend: spec.Backend, Env: env, RuntimeAPI: h.RuntimeAPI, ServersDir: h.ServersDir, Command: h.Command,
			DrainTimeout: h.DrainTimeout.Duration, ReadyTimeout: h.ReadyTimeout.Duration, Log: log.Named("lb")}
	case "nginx":
		return &lb.Nginx{Upstream: spec.Upstream, File: spec.File, Env: env, Command: cfg.Nginx.Command, PidFile: cfg.Nginx.PidFile,
			ProbeURL: cfg.Nginx.Probe, Drain: cfg.Nginx.Drain.Duration, Log: log.Named("lb")}
	}
	return nil
}
