package secrets

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	vault "github.com/hashicorp/vault/api"

	"berth.dev/berth/envs"
	"berth.dev/berth/internal/failure"
)

// Config is how the agent reaches Vault. Credentials are named by file and
// re-read when used, so a Vault Agent or a rotation can rewrite them.
type Config struct {
	Address   string `yaml:"address"`
	CACert    string `yaml:"ca_cert"`
	Namespace string `yaml:"namespace"`
	// TokenFile holds a Vault token (e.g. written by Vault Agent).
	TokenFile string `yaml:"token_file"`
	// AppRole logs in with role_id and secret_id read from files.
	AppRole *AppRole `yaml:"approle"`
	// AWS logs in with the aws auth method (IAM) as the EC2 host.
	AWS *AWSIAM `yaml:"aws"`
	// AllowedPaths lists the path prefixes secret references may name.
	// Empty: any KV mount (dynamic mounts must be listed). auth/, sys/,
	// identity/ and cubbyhole/ are refused whatever it says.
	AllowedPaths []string `yaml:"allowed_paths"`
	// Timeout bounds the resolution of one service's secrets.
	Timeout time.Duration `yaml:"-"`
}

// AppRole auth.
type AppRole struct {
	RoleIDFile   string `yaml:"role_id_file"`
	SecretIDFile string `yaml:"secret_id_file"`
	Mount        string `yaml:"mount"` // default "approle"
}

// Vault resolves x-berth secret references ("path#field[@version]") from KV
// v1 and v2 mounts.
type Vault struct {
	cfg    Config
	client *vault.Client
	log    hclog.Logger

	mu      sync.Mutex
	renewAt time.Time           // AppRole token: renew (or log in again) after this
	mounts  map[string]mount    // path prefix → mount
	dyn     map[string]*dynamic // leased secrets by service and path (dynamic.go)
	now     func() time.Time
}

type mount struct {
	path    string // "secret/"
	version int    // KV 1 or 2
	kv      bool   // a KV mount; anything else is read as a (dynamic) secret
}

// New builds a Vault client; nothing is contacted until Resolve.
func New(cfg Config, log hclog.Logger) (*Vault, error) {
	if log == nil {
		log = hclog.NewNullLogger()
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 30 * time.Second
	}
	vc := vault.DefaultConfig()
	vc.Address = cfg.Address
	vc.Timeout = cfg.Timeout
	vc.MaxRetries = 1
	if cfg.CACert != "" {
		if err := vc.ConfigureTLS(&vault.TLSConfig{CACert: cfg.CACert}); err != nil {
			return nil, fmt.Errorf("vault tls: %w", err)
		}
	}
	c, err := vault.NewClient(vc)
	if err != nil {
		return nil, fmt.Errorf("vault client: %w", err)
	}
	c.ClearToken() // never VAULT_TOKEN from the environment: configured auth only
	if cfg.Namespace != "" {
		c.SetNamespace(cfg.Namespace)
	}
	if cfg.TokenFile == "" && cfg.AppRole == nil && cfg.AWS == nil {
		return nil, errors.New("vault: configure token_file, approle or aws")
	}
	return &Vault{cfg: cfg, client: c, log: log.Named("secrets"), mounts: map[string]mount{}, dyn: map[string]*dynamic{}, now: time.Now}, nil
}

// Resolve reads every reference of one service, in parallel, within the
// timeout. It returns NAME=value pairs sorted by name and a digest of the
// values; any missing path or field, permission error or outage fails the
// whole service, naming the variable and the reference, never a value.
func (v *Vault) Resolve(ctx context.Context, service string, refs map[string]envs.SecretRef) ([]string, string, error) {
	ctx, cancel := context.WithTimeout(ctx, v.cfg.Timeout)
	defer cancel()
	if err := v.authenticate(ctx); err != nil {
		return nil, "", err
	}
	names := slices.Sorted(maps.Keys(refs))
	values := make([]Value, len(names))
	errs := make([]error, len(names))
	// One read per path (and version): fields of a dynamic secret must
	// come from the same lease (a username with its password).
	type group struct{ idx []int }
	groups := map[string]*group{}
	var order []string
	for i, name := range names {
		k := refs[name].Path + "@" + strconv.Itoa(refs[name].Version)
		if groups[k] == nil {
			groups[k] = &group{}
			order = append(order, k)
		}
		groups[k].idx = append(groups[k].idx, i)
	}
	var wg sync.WaitGroup
	for _, k := range order {
		g := groups[k]
		wg.Add(1)
		go func() {
			defer wg.Done()
			first := refs[names[g.idx[0]]]
			data, err := v.readData(ctx, service, first)
			for _, i := range g.idx {
				ref := refs[names[i]]
				if err == nil {
					values[i], errs[i] = field(data, ref.Field)
				} else {
					errs[i] = err
				}
				if errs[i] != nil {
					errs[i] = fmt.Errorf("secret %s (%s): %w", names[i], ref, errs[i])
				}
			}
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, "", err
	}
	env := make([]string, len(names))
	h := sha256.New()
	for i, name := range names {
		env[i] = name + "=" + values[i].Reveal()
		fmt.Fprintf(h, "%s=%s=%s\n", name, refs[name], values[i].Digest())
	}
	return env, hex.EncodeToString(h.Sum(nil)), nil
}

// authenticate sets the client's token: the token file's content, or an
// AppRole or AWS token renewed at half its TTL and re-acquired when renewal
// fails.
func (v *Vault) authenticate(ctx context.Context) error {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.cfg.TokenFile != "" {
		b, err := os.ReadFile(v.cfg.TokenFile)
		if err != nil {
			return fmt.Errorf("vault: read token file: %w", err)
		}
		v.client.SetToken(strings.TrimSpace(string(b)))
		return nil
	}
	if v.client.Token() != "" && time.Now().Before(v.renewAt) {
		return nil
	}
	if v.client.Token() != "" {
		s, err := v.client.Auth().Token().RenewSelfWithContext(ctx, 0)
		if err == nil && s != nil && s.Auth != nil {
			v.renewAt = time.Now().Add(time.Duration(s.Auth.LeaseDuration) * time.Second / 2)
			return nil
		}
		v.log.Warn("vault token renewal failed; logging in again", "error", err)
	}
	return v.login(ctx)
}

func (v *Vault) login(ctx context.Context) error {
	method, mount, data, err := v.loginData(ctx)
	if err != nil {
		return err
	}
	v.client.ClearToken()
	s, err := v.client.Logical().WriteWithContext(ctx, "auth/"+mount+"/login", data)
	if err != nil {
		return fmt.Errorf("vault: %s login: %w", method, describe(err))
	}
	if s == nil || s.Auth == nil {
		return fmt.Errorf("vault: %s login returned no token", method)
	}
	v.client.SetToken(s.Auth.ClientToken)
	v.renewAt = time.Now().Add(time.Duration(s.Auth.LeaseDuration) * time.Second / 2)
	return nil
}

// loginData is the configured auth method's login request.
func (v *Vault) loginData(ctx context.Context) (method, mount string, data map[string]any, err error) {
	if a := v.cfg.AWS; a != nil {
		mount = a.Mount
		if mount == "" {
			mount = "aws"
		}
		data, err = a.loginData(ctx, time.Now())
		return "aws", mount, data, err
	}
	a := v.cfg.AppRole
	roleID, err := os.ReadFile(a.RoleIDFile)
	if err != nil {
		return "", "", nil, fmt.Errorf("vault: read role_id file: %w", err)
	}
	secretID, err := os.ReadFile(a.SecretIDFile)
	if err != nil {
		return "", "", nil, fmt.Errorf("vault: read secret_id file: %w", err)
	}
	mount = a.Mount
	if mount == "" {
		mount = "approle"
	}
	return "approle", mount, map[string]any{
		"role_id": strings.TrimSpace(string(roleID)), "secret_id": strings.TrimSpace(string(secretID)),
	}, nil
}

// readData fetches the secret at ref's path: from a KV v2 mount (data/
// inserted, optional version), a KV v1 mount, or any other engine — a
// dynamic secret, leased and renewed (dynamic.go).
func (v *Vault) readData(ctx context.Context, service string, ref envs.SecretRef) (map[string]any, error) {
	// Validation refused these already; checked again where the token is
	// used, in case anything reached here another way.
	if err := envs.CheckSecretPath(ref.Path, v.cfg.AllowedPaths); err != nil {
		return nil, failure.AsVerdict(err)
	}
	m, err := v.mountOf(ctx, ref.Path)
	if err != nil {
		return nil, err
	}
	if err := v.checkMount(ref.Path, m); err != nil {
		return nil, failure.AsVerdict(err)
	}
	if !m.kv {
		if ref.Version > 0 {
			return nil, fmt.Errorf("@%d: %s is not a KV mount, which has no versions", ref.Version, m.path)
		}
		return v.dynamicData(ctx, service, ref.Path)
	}
	if m.version == 2 {
		rel := strings.TrimPrefix(ref.Path, m.path)
		q := map[string][]string{}
		if ref.Version > 0 {
			q["version"] = []string{strconv.Itoa(ref.Version)}
		}
		s, err := v.client.Logical().ReadWithDataWithContext(ctx, m.path+"data/"+rel, q)
		if err != nil {
			return nil, describe(err)
		}
		if s == nil || s.Data == nil || s.Data["data"] == nil {
			return nil, errNoSecret
		}
		data, _ := s.Data["data"].(map[string]any)
		return data, nil
	}
	if ref.Version > 0 {
		return nil, fmt.Errorf("@%d: %s is a KV v1 mount, which has no versions", ref.Version, m.path)
	}
	s, err := v.client.Logical().ReadWithContext(ctx, ref.Path)
	if err != nil {
		return nil, describe(err)
	}
	if s == nil {
		return nil, errNoSecret
	}
	return s.Data, nil
}

// checkMount refuses a path whose mount is not a KV mount unless
// vault.allowed_paths lists it, and system mounts whatever the list says.
func (v *Vault) checkMount(path string, m mount) error {
	mp := strings.Trim(m.path, "/")
	if err := envs.CheckSecretPath(mp+"/x", nil); err != nil {
		return fmt.Errorf("Vault path %s is refused: it is in the %s/ mount", path, mp)
	}
	if !m.kv && !envs.UnderSecretPrefix(path, v.cfg.AllowedPaths) {
		return fmt.Errorf("Vault path %s is refused: %s/ is not a KV mount, and vault.allowed_paths does not list it", path, mp)
	}
	return nil
}

// field is one field of a secret's data, as a string (JSON for others).
func field(data map[string]any, name string) (Value, error) {
	raw, ok := data[name]
	if !ok {
		return Value{}, failure.AsVerdict(fmt.Errorf("no field %q in the secret", name))
	}
	if s, ok := raw.(string); ok {
		return Value{v: s}, nil
	}
	b, err := json.Marshal(raw)
	if err != nil {
		return Value{}, fmt.Errorf("field %q: %w", name, err)
	}
	return Value{v: string(b)}, nil
}

// mountOf finds the mount a path is under and its KV version (Vault's own
// CLI asks the same endpoint), caching by mount path.
func (v *Vault) mountOf(ctx context.Context, path string) (mount, error) {
	v.mu.Lock()
	for prefix, m := range v.mounts {
		if strings.HasPrefix(path, prefix) {
			v.mu.Unlock()
			return m, nil
		}
	}
	v.mu.Unlock()
	s, err := v.client.Logical().ReadWithContext(ctx, "sys/internal/ui/mounts/"+path)
	if err != nil {
		return mount{}, describe(err)
	}
	if s == nil || s.Data == nil {
		return mount{}, errors.New("no secrets engine is mounted there")
	}
	m := mount{version: 1}
	m.path, _ = s.Data["path"].(string)
	typ, _ := s.Data["type"].(string)
	m.kv = typ == "kv" || typ == "generic" || typ == ""
	if opts, ok := s.Data["options"].(map[string]any); ok && opts["version"] == "2" {
		m.version = 2
	}
	if m.path == "" {
		return mount{}, errors.New("no secrets engine is mounted there")
	}
	v.mu.Lock()
	v.mounts[m.path] = m
	v.mu.Unlock()
	return m, nil
}

// describe turns Vault client errors into short reasons.
//
// Its errors carry their class (DESIGN.md §4): a secret or field that does
// not exist is a verdict on the revision naming it, as an unknown image
// digest is; Vault unreachable, sealed, failing or refusing the host's
// token (permission denied: the policy, or an expired token) is an
// outage, waited out.
func describe(err error) error {
	var re *vault.ResponseError
	if errors.As(err, &re) {
		switch re.StatusCode {
		case http.StatusForbidden:
			return failure.AsOutage(errors.New("permission denied"))
		case http.StatusNotFound:
			return errNoSecret
		}
		return failure.AsOutage(fmt.Errorf("vault answered %d: %s", re.StatusCode, strings.Join(re.Errors, "; ")))
	}
	return failure.AsOutage(fmt.Errorf("vault unreachable: %w", err))
}

// errNoSecret: the path holds no secret (a verdict: see describe).
var errNoSecret = failure.AsVerdict(errors.New("no such secret"))
