package main

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"go.yaml.in/yaml/v4"

	"berth.dev/berth/api"
	"berth.dev/berth/envs"
	"berth.dev/berth/fleet"
	"berth.dev/berth/gitsource"
	"berth.dev/berth/lb"
	"berth.dev/berth/notify"
	"berth.dev/berth/secrets"
)

// DefaultConfigPath is where the agent config lives on a host.
const DefaultConfigPath = "/etc/berth/agent.yaml"

// Config is /etc/berth/agent.yaml. Only env (or envs) and repo.url are
// required; every default is in defaults().
type Config struct {
	// Env is the one environment this host runs; Envs lists several
	// (exactly one of the two is set). EnvNames returns them either way.
	Env      string     `yaml:"env"`
	Envs     []string   `yaml:"envs"`
	Project  string     `yaml:"project"`
	Profiles []string   `yaml:"profiles"`
	StateDir string     `yaml:"state_dir"`
	Repo     RepoConfig `yaml:"repo"`
	Docker   struct {
		Host string `yaml:"host"`
	} `yaml:"docker"`
	Policy envs.Policy `yaml:"policy"`
	// Vault, when set, resolves x-berth.secrets.
	Vault *VaultConfig `yaml:"vault"`
	// RollbackHold says what ends a `berth rollback`: "new_commit"
	// (default) or only "resume".
	RollbackHold string `yaml:"rollback_hold"`
	Deploy       struct {
		HealthTimeout    Duration `yaml:"health_timeout"`
		Settle           Duration `yaml:"settle"`
		Pulls            int      `yaml:"pulls"`
		MigrationTimeout Duration `yaml:"migration_timeout"`
		KeepRevisions    int      `yaml:"keep_revisions"`
		// StallTimeout: a pass that shows no progress for this long is
		// wedged; the agent stops answering systemd's watchdog, which
		// restarts it. Default 30m + migration_timeout.
		StallTimeout Duration `yaml:"stall_timeout"`
	} `yaml:"deploy"`
	// API is the local HTTP API (status, metrics, Git webhook).
	API struct {
		// Listen is a loopback host:port, "unix:/path", or "off".
		Listen string `yaml:"listen"`
		// WebhookSecretFile holds the secret Git webhooks are signed
		// with; without it /hooks/git is off.
		WebhookSecretFile string `yaml:"webhook_secret_file"`
	} `yaml:"api"`
	// Notify lists where deploy and job events go.
	Notify []NotifyTarget `yaml:"notify"`
	// NotifyRepeatAfter suppresses a repeat of the same event for this long.
	NotifyRepeatAfter Duration `yaml:"notify_repeat_after"`
	Nginx             struct {
		// ConfDir is where berth writes each upstream file, named
		// berth-<env>-<upstream>.conf; a repo's x-berth.lb.file must be
		// inside it.
		ConfDir string   `yaml:"conf_dir"`
		Command []string `yaml:"command"`
		PidFile string   `yaml:"pid_file"`
		Probe   string   `yaml:"probe_url"`
		Drain   Duration `yaml:"drain_timeout"`
	} `yaml:"nginx"`
	// HAProxy is where berth switches the backends of servers whose
	// x-berth.lb says type: haproxy.
	HAProxy HAProxyConfig `yaml:"haproxy"`
	// Fleet, when set, coordinates this host's envs with the other hosts
	// that run them, through etcd (docs/fleet.md). Without it the host
	// acts alone and no etcd client is made.
	Fleet *fleet.Config `yaml:"fleet"`
}

// HAProxyConfig is the host's HAProxy (docs/operations.md, HAProxy).
type HAProxyConfig struct {
	// RuntimeAPI is "unix:/run/haproxy/admin.sock" or a loopback
	// host:port: a stats socket with level admin.
	RuntimeAPI string `yaml:"runtime_api"`
	// ServersDir holds each backend's section file, BACKEND.cfg, which
	// HAProxy loads (-f DIR) and berth rewrites.
	ServersDir string `yaml:"servers_dir"`
	// Command runs HAProxy's config check ("-c" is appended); default
	// haproxy -f /etc/haproxy/haproxy.cfg -f SERVERS_DIR.
	Command []string `yaml:"command"`
	// DrainTimeout bounds the wait for an old server's last session.
	DrainTimeout Duration `yaml:"drain_timeout"`
	// ReadyTimeout bounds the wait for HAProxy's checks to see a new
	// server UP.
	ReadyTimeout Duration `yaml:"ready_timeout"`
}

// VaultConfig is the agent's Vault: where, how to log in, and how often a
// live revision's secrets are read again to notice new versions.
type VaultConfig struct {
	secrets.Config `yaml:",inline"`
	// CheckInterval is how long resolved secrets are reused before Vault is
	// read again (a new version then redeploys the services using it).
	CheckInterval Duration `yaml:"check_interval"`
	// RedeployOnChange: false keeps a revision's secrets until a new commit.
	RedeployOnChange *bool `yaml:"redeploy_on_change"`
}

// NotifyTarget is one notification destination.
type NotifyTarget struct {
	Type    string   `yaml:"type"`     // webhook | slack
	URL     string   `yaml:"url"`      // or:
	URLFile string   `yaml:"url_file"` // a file holding the URL (Slack URLs are credentials)
	Events  []string `yaml:"events"`   // default: all
}

// RepoConfig is the config repository to watch.
type RepoConfig struct {
	URL                  string         `yaml:"url"`
	Branch               string         `yaml:"branch"`
	Path                 string         `yaml:"path"` // where envs/ lives inside the repo
	PollInterval         Duration       `yaml:"poll_interval"`
	Timeout              Duration       `yaml:"timeout"`
	AllowHistoryRewrites bool           `yaml:"allow_history_rewrites"`
	HistoryDepth         int            `yaml:"history_depth"`
	TrustedKeysFile      string         `yaml:"trusted_keys_file"`
	Auth                 gitsource.Auth `yaml:"auth"`
}

// Duration is a time.Duration written as "90s", "5m".
type Duration struct{ time.Duration }

func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	v, err := time.ParseDuration(n.Value)
	if err != nil || v < 0 {
		return fmt.Errorf("line %d: %q is not a duration (write e.g. 90s, 5m)", n.Line, n.Value)
	}
	d.Duration = v
	return nil
}

// migrationGrace is what a migration or cli run that timed out (or is
// interrupted) gets between its stop signal and SIGKILL, whatever its
// stop_grace_period says.
const migrationGrace = 30 * time.Second

func defaults() Config {
	var c Config
	c.StateDir = "/var/lib/berth"
	c.RollbackHold = "new_commit"
	c.Repo.Branch = "main"
	c.Repo.PollInterval.Duration = 60 * time.Second
	c.Repo.Timeout.Duration = 30 * time.Second
	c.Repo.HistoryDepth = 64
	c.Deploy.HealthTimeout.Duration = 60 * time.Second
	c.Deploy.Settle.Duration = 5 * time.Second
	c.Deploy.Pulls = 3
	c.Deploy.MigrationTimeout.Duration = 10 * time.Minute
	c.Deploy.KeepRevisions = 2
	c.API.Listen = "127.0.0.1:9465"
	c.NotifyRepeatAfter.Duration = time.Hour
	c.Nginx.ConfDir = envs.DefaultNginxConfDir
	c.Nginx.Command = []string{"nginx"}
	c.Nginx.PidFile = "/run/nginx.pid"
	c.Nginx.Drain.Duration = 60 * time.Second
	c.HAProxy.RuntimeAPI = "unix:/run/haproxy/admin.sock"
	c.HAProxy.ServersDir = "/etc/haproxy/berth.d"
	c.HAProxy.DrainTimeout.Duration = 60 * time.Second
	c.HAProxy.ReadyTimeout.Duration = 30 * time.Second
	return c
}

// LoadConfig reads path strictly: unknown keys are errors, and every
// problem is reported at once.
func LoadConfig(path string) (*Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	c := defaults()
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(&c); err != nil {
		return nil, fmt.Errorf("%s: %s", path, strings.TrimPrefix(err.Error(), "yaml: "))
	}
	if err := c.Validate(); err != nil {
		return nil, fmt.Errorf("%s:\n%w", path, err)
	}
	return &c, nil
}

// Validate reports every problem of the config.
func (c *Config) Validate() error {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("  %s: %s", field, fmt.Sprintf(format, args...)))
	}
	switch {
	case c.Env == "" && len(c.Envs) == 0:
		bad("env", "required: the environment this host runs (envs/<env>/ in the config repo), or envs: [a, b] for several")
	case c.Env != "" && len(c.Envs) > 0:
		bad("envs", "set env: for one environment or envs: for several, not both")
	case c.Env != "" && !envs.ValidEnvName(c.Env):
		bad("env", "%q: lowercase letters, digits, - and _", c.Env)
	}
	seen := map[string]bool{}
	for i, e := range c.Envs {
		switch {
		case !envs.ValidEnvName(e):
			bad(fmt.Sprintf("envs[%d]", i), "%q: lowercase letters, digits, - and _", e)
		case seen[e]:
			bad(fmt.Sprintf("envs[%d]", i), "%q is listed twice", e)
		}
		seen[e] = true
	}
	if c.Project != "" && len(c.Envs) > 1 {
		bad("project", "names the Compose project of one environment; with several envs each one's project is its name")
	}
	if c.Repo.URL == "" {
		bad("repo.url", "required: the config repository (https://, ssh:// or file://)")
	}
	if !filepath.IsAbs(c.StateDir) {
		bad("state_dir", "%q must be an absolute path", c.StateDir)
	}
	if strings.Contains(c.Repo.Path, "..") || filepath.IsAbs(c.Repo.Path) {
		bad("repo.path", "%q must be a relative path inside the repository", c.Repo.Path)
	}
	if c.Repo.PollInterval.Duration < time.Second {
		bad("repo.poll_interval", "at least 1s")
	}
	for field, f := range map[string]string{"repo.auth.token_file": c.Repo.Auth.TokenFile, "repo.auth.ssh_key_file": c.Repo.Auth.SSHKeyFile,
		"repo.auth.known_hosts_file": c.Repo.Auth.KnownHostsFile, "repo.trusted_keys_file": c.Repo.TrustedKeysFile} {
		if f == "" {
			continue
		}
		if _, err := os.Stat(f); err != nil {
			bad(field, "%v", err)
		}
	}
	if v := c.Vault; v != nil {
		if v.Address == "" {
			bad("vault.address", "required, e.g. https://vault.example.org:8200")
		}
		if n := btoi(v.TokenFile != "") + btoi(v.AppRole != nil) + btoi(v.AWS != nil); n != 1 {
			bad("vault", "set exactly one of token_file, approle and aws")
		}
		if v.AWS != nil && v.AWS.Role == "" {
			bad("vault.aws.role", "required: the Vault role this host logs in as")
		}
		files := map[string]string{"vault.token_file": v.TokenFile, "vault.ca_cert": v.CACert}
		if v.AppRole != nil {
			files["vault.approle.role_id_file"] = v.AppRole.RoleIDFile
			files["vault.approle.secret_id_file"] = v.AppRole.SecretIDFile
			if v.AppRole.RoleIDFile == "" || v.AppRole.SecretIDFile == "" {
				bad("vault.approle", "role_id_file and secret_id_file are required")
			}
		}
		for field, f := range files {
			if f == "" {
				continue
			}
			if _, err := os.Stat(f); err != nil {
				bad(field, "%v", err)
			}
		}
		if v.CheckInterval.Duration == 0 {
			v.CheckInterval.Duration = 5 * time.Minute
		}
	}
	if c.RollbackHold != "new_commit" && c.RollbackHold != "resume" {
		bad("rollback_hold", "%q: new_commit or resume", c.RollbackHold)
	}
	if c.Deploy.KeepRevisions < 1 {
		bad("deploy.keep_revisions", "at least 1 (the live revision)")
	}
	if c.Deploy.Pulls < 1 {
		bad("deploy.pulls", "at least 1")
	}
	if l := c.API.Listen; l != "off" && !strings.HasPrefix(l, "unix:/") {
		if err := api.CheckLoopback(l); err != nil {
			bad("api.listen", "%v", err)
		}
	}
	if f := c.API.WebhookSecretFile; f != "" {
		if _, err := os.Stat(f); err != nil {
			bad("api.webhook_secret_file", "%v", err)
		}
	}
	for i, n := range c.Notify {
		f := fmt.Sprintf("notify[%d]", i)
		if n.Type != "webhook" && n.Type != "slack" {
			bad(f+".type", "%q: webhook or slack", n.Type)
		}
		if (n.URL == "") == (n.URLFile == "") {
			bad(f, "set exactly one of url and url_file")
		}
		if n.URL != "" && !strings.HasPrefix(n.URL, "https://") && !strings.HasPrefix(n.URL, "http://") {
			bad(f+".url", "must be an http(s) URL")
		}
		if n.URLFile != "" {
			if _, err := os.Stat(n.URLFile); err != nil {
				bad(f+".url_file", "%v", err)
			}
		}
		for _, e := range n.Events {
			if !slices.Contains(notify.AllEvents, e) {
				bad(f+".events", "%q: one of %s", e, strings.Join(notify.AllEvents, ", "))
			}
		}
	}
	if !filepath.IsAbs(c.Nginx.ConfDir) {
		bad("nginx.conf_dir", "%q must be an absolute path", c.Nginx.ConfDir)
	}
	for i, p := range c.Policy.AllowedBindMounts {
		if !filepath.IsAbs(p) {
			bad(fmt.Sprintf("policy.allowed_bind_mounts[%d]", i), "%q must be an absolute path", p)
		}
	}
	for i, p := range c.Policy.AllowedHostPorts {
		if _, err := envs.ParseHostPorts([]string{p}); err != nil {
			bad(fmt.Sprintf("policy.allowed_host_ports[%d]", i), "%v", err)
		}
	}
	if v := c.Vault; v != nil {
		for i, p := range v.AllowedPaths {
			if err := envs.CheckSecretPath(strings.Trim(p, "/")+"/x", nil); err != nil || strings.Trim(p, "/") == "" {
				bad(fmt.Sprintf("vault.allowed_paths[%d]", i), "%q: auth/, sys/, identity/ and cubbyhole/ are never allowed", p)
			}
		}
	}
	if len(c.Nginx.Command) == 0 {
		bad("nginx.command", "at least the nginx binary")
	}
	if err := lb.CheckRuntimeAPI(c.HAProxy.RuntimeAPI); err != nil {
		bad("haproxy.runtime_api", "%v", err)
	}
	if !filepath.IsAbs(c.HAProxy.ServersDir) {
		bad("haproxy.servers_dir", "%q must be an absolute path", c.HAProxy.ServersDir)
	}
	if len(c.HAProxy.Command) == 0 {
		c.HAProxy.Command = []string{"haproxy", "-f", "/etc/haproxy/haproxy.cfg", "-f", c.HAProxy.ServersDir}
	}
	if c.Fleet != nil {
		*c.Fleet = c.Fleet.Defaults()
		if err := c.Fleet.Validate(); err != nil {
			for _, line := range strings.Split(err.Error(), "\n") {
				errs = append(errs, fmt.Errorf("  %s", line))
			}
		}
	}
	return errors.Join(errs...)
}

// EnvNames are the environments this host runs, in the order configured.
func (c *Config) EnvNames() []string {
	if c.Env != "" {
		return []string{c.Env}
	}
	return c.Envs
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}
