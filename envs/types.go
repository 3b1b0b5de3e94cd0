package envs

import (
	"time"

	"github.com/compose-spec/compose-go/v2/types"

	"berth.dev/berth/imagesig"
	"berth.dev/berth/sopsfile"
)

// Role is the part a service plays in a deploy (DESIGN.md §4).
type Role string

const (
	RoleMigrate Role = "migrate" // one-shot, before any cutover, once per digest
	RoleCLI     Role = "cli"     // one-shot, must exit 0
	RoleWorker  Role = "worker"  // long-running, replaced one by one
	RoleServer  Role = "server"  // new container beside the old, LB switched
)

// Env is the desired state of one environment at one revision.
type Env struct {
	Name    string // environment name (envs/<name>/)
	Project *types.Project
	// File is the environment's main Compose file, relative to the checkout.
	File           string
	RequireDigests bool
	// LB is the top-level x-berth.lb: the balancer of the env's one
	// server that names none of its own (nil when there is none). Each
	// server's own is Service.Berth.LB.
	LB *LBSpec
	// Watch is the top-level x-berth.watch: how long after a switch the
	// old servers are kept, out of the balancer, while the new ones must
	// stay healthy (servers that set none of their own).
	Watch time.Duration
	Jobs  map[string]JobSpec
	// Rollout is x-berth.rollout (nil: none): how a fleet rolls a new
	// revision out (rollout.go).
	Rollout *Rollout
	// Promote is x-berth.promote (nil: none): the env to propose this
	// env's digests to once it has been healthy a while (promotespec.go).
	Promote *PromoteSpec
	// Images is the top-level x-berth.images.verify: signatures this
	// environment requires beyond the host's (nil: none). It can only add
	// to the agent config's images.verify.
	Images *imagesig.Policy
	// Sealed are the environment's SOPS-encrypted files (its .env, the
	// files sops: references name), by path in the checkout, their values
	// still encrypted.
	Sealed map[string]*sopsfile.File
	// Services are ordered by deploy phase (migrate, cli, worker, server),
	// then by name.
	Services []Service

	root string // checkout root the env was loaded from
}

// Service returns the named service, or nil.
func (e *Env) Service(name string) *Service {
	for i := range e.Services {
		if e.Services[i].Name == name {
			return &e.Services[i]
		}
	}
	return nil
}

// Service is one Compose service with berth's settings for it.
type Service struct {
	Name   string
	Config types.ServiceConfig
	Berth  ServiceSpec
	// Hash changes exactly when something that affects the container
	// changes; see ConfigHash.
	Hash string
	// Mounted maps each bind-mount source inside the config repository to
	// a digest of its content, so that editing a mounted file redeploys.
	Mounted map[string]string
}

// ServiceSpec is a service's x-berth block.
type ServiceSpec struct {
	Role Role
	// Port is the container port the load balancer targets (servers).
	Port int
	// Secrets maps container env var names to Vault references.
	Secrets map[string]SecretRef
	// SecretFiles maps file names under /run/secrets (a tmpfs in the
	// container, files 0400) to Vault references: the file mode of secrets.
	SecretFiles map[string]SecretRef
	// StopFirst stops the old container before starting the new one, for
	// services that must never run twice.
	StopFirst bool
	// LB is the balancer a server is switched in: its own x-berth.lb, or
	// the env's (set when the env is loaded; nil for other roles).
	LB *LBSpec
	// Watch is how long after its switch a server's old containers are
	// kept, out of the balancer, while the new ones must stay healthy: its
	// own x-berth.watch, or the env's (0: retired at once).
	Watch time.Duration
	// Replicas is deploy.replicas (1 when unset): how many containers of
	// a server or worker run side by side. They are replaced as a set.
	Replicas int

	// Migration is a migrate service's x-berth.migration (rollout.go).
	Migration MigrationSpec

	watchSet bool // x-berth.watch was given (0 included)
}

// SecretFilesDir is where x-berth.secret_files appear in a container.
const SecretFilesDir = "/run/secrets"

// SecretRef points at one field of a Vault secret: "path#field", with an
// optional "@version" pin for KV v2 ("kv/app/db#password@3"). It holds no
// secret value.
type SecretRef struct {
	Path    string
	Field   string
	Version int // 0: latest
	// Sealed is the file a sops: reference names (SOPSPrefix), parsed,
	// its values still encrypted; nil for a Vault reference.
	Sealed *sopsfile.File
}

func (r SecretRef) String() string {
	s := r.Path + "#" + r.Field
	if r.Version > 0 {
		s += "@" + itoa(r.Version)
	}
	return s
}

// LBSpec is an x-berth.lb block: a server's balancer.
type LBSpec struct {
	Type     string // "nginx" or "haproxy"
	Upstream string // nginx: the upstream name in the balancer's config
	File     string // nginx: the upstream file berth owns
	Backend  string // haproxy: the backend whose berth-* servers berth changes
}

// Name is the upstream or backend the spec names.
func (l *LBSpec) Name() string {
	if l.Type == "haproxy" {
		return l.Backend
	}
	return l.Upstream
}

// String says which balancer: "nginx upstream NAME", "haproxy backend NAME".
func (l *LBSpec) String() string {
	if l.Type == "haproxy" {
		return "haproxy backend " + l.Backend
	}
	return "nginx upstream " + l.Upstream
}

// Concurrency policy of a job whose previous run is still going.
type Concurrency string

const (
	ConcurrencyForbid  Concurrency = "forbid"
	ConcurrencyAllow   Concurrency = "allow"
	ConcurrencyReplace Concurrency = "replace"
)

// JobSpec is one x-berth.jobs entry.
type JobSpec struct {
	Name     string
	Schedule string
	Timezone string // IANA name; "" is the host's local zone
	// Service to inherit image, env, secrets and volumes from; or Image.
	Service     string
	Image       string
	Command     []string
	Environment map[string]string
	Timeout     time.Duration // 0: none
	Concurrency Concurrency
	History     int    // runs kept
	Missed      string // "skip" | "run_once"
	Jitter      time.Duration
	Notify      string // "failure" | "always" | "never"
	// RunOn is "one", "all" or "" (the default: one with a fleet);
	// StartingDeadline how late a scheduled time may still start (0:
	// until the next one). Both matter with a fleet only (rollout.go).
	RunOn            string
	StartingDeadline time.Duration
}
