package agentconfig

import (
	"berth.dev/berth/envs"
	"berth.dev/berth/fleet"
	"berth.dev/berth/gitsource"
	"berth.dev/berth/secrets"
)

// DefaultPath is where the agent config lives on a host.
const DefaultPath = "/etc/berth/agent.yaml"

// Config is /etc/berth/agent.yaml. Only env (or envs) and repo.url are
// required; every default is in defaults().
type Config struct {
	// Env is the one environment this host runs; Envs lists several
	// (exactly one of the two is set). EnvNames returns them either way.
	Env      string       `yaml:"env"`
	Envs     []string     `yaml:"envs"`
	Project  string       `yaml:"project"`
	Profiles []string     `yaml:"profiles"`
	StateDir string       `yaml:"state_dir"`
	Repo     RepoConfig   `yaml:"repo"`
	Docker   DockerConfig `yaml:"docker"`
	Policy   envs.Policy  `yaml:"policy"`
	// Vault, when set, resolves x-berth.secrets.
	Vault *VaultConfig `yaml:"vault"`
	// RollbackHold says what ends a `berth rollback`: "new_commit"
	// (default) or only "resume".
	RollbackHold string       `yaml:"rollback_hold"`
	Deploy       DeployConfig `yaml:"deploy"`
	// API is the local HTTP API (status, metrics, Git webhook).
	API APIConfig `yaml:"api"`
	// Notify lists where deploy and job events go.
	Notify []NotifyTarget `yaml:"notify"`
	// NotifyRepeatAfter suppresses a repeat of the same event for this long.
	NotifyRepeatAfter Duration    `yaml:"notify_repeat_after"`
	Nginx             NginxConfig `yaml:"nginx"`
	// HAProxy is where berth switches the backends of servers whose
	// x-berth.lb says type: haproxy.
	HAProxy HAProxyConfig `yaml:"haproxy"`
	// Fleet, when set, coordinates this host's envs with the other hosts
	// that run them, through etcd (docs/fleet.md). Without it the host
	// acts alone and no etcd client is made.
	Fleet *fleet.Config `yaml:"fleet"`
	// Forge, when set, puts each env's deploy result on the commit, as a
	// status of the config repository's forge, and lets envs open
	// promotion PRs (docs/forge.md).
	Forge *ForgeConfig `yaml:"forge"`
	// Images says which images need a signature before they are pulled.
	Images ImagesConfig `yaml:"images"`
	// SOPS, when set, decrypts SOPS-encrypted values of the repository.
	SOPS *SOPSConfig `yaml:"sops"`
}

// DockerConfig is the engine berth drives.
type DockerConfig struct {
	// Host is a Docker host URL (unix:///run/docker.sock); default
	// $DOCKER_HOST, else the default socket.
	Host string `yaml:"host"`
}

// DeployConfig bounds a deploy's steps.
type DeployConfig struct {
	HealthTimeout    Duration `yaml:"health_timeout"`
	Settle           Duration `yaml:"settle"`
	Pulls            int      `yaml:"pulls"`
	MigrationTimeout Duration `yaml:"migration_timeout"`
	KeepRevisions    int      `yaml:"keep_revisions"`
	// StallTimeout: a pass that shows no progress for this long is
	// wedged; the agent stops answering systemd's watchdog, which
	// restarts it. Default 30m + migration_timeout (StallAfter).
	StallTimeout Duration `yaml:"stall_timeout"`
}

// APIConfig is the local HTTP API.
type APIConfig struct {
	// Listen is a loopback host:port, "unix:/path", or "off".
	Listen string `yaml:"listen"`
	// WebhookSecretFile holds the secret Git webhooks are signed with;
	// without it /hooks/git is off.
	WebhookSecretFile string `yaml:"webhook_secret_file"`
}

// NginxConfig is the host's nginx (docs/operations.md, nginx).
type NginxConfig struct {
	// ConfDir is where berth writes each upstream file, named
	// berth-<env>-<upstream>.conf; a repo's x-berth.lb.file must be
	// inside it.
	ConfDir string   `yaml:"conf_dir"`
	Command []string `yaml:"command"`
	PidFile string   `yaml:"pid_file"`
	Probe   string   `yaml:"probe_url"`
	Drain   Duration `yaml:"drain_timeout"`
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

// EnvNames are the environments this host runs, in the order configured.
func (c *Config) EnvNames() []string {
	if c.Env != "" {
		return []string{c.Env}
	}
	return c.Envs
}
