package envs

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"runtime/debug"
	"slices"
	"strings"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/dotenv"
	"github.com/compose-spec/compose-go/v2/loader"
	"github.com/compose-spec/compose-go/v2/types"
	"github.com/hashicorp/go-hclog"

	"berth.dev/berth/sopsfile"
)

// Options controls how an environment is loaded.
type Options struct {
	// Project is the Compose project name; default the environment name.
	Project string
	// Profiles to activate; services in other profiles are left out.
	Profiles []string
	// Policy says which host-level privileges services may ask for.
	Policy Policy
	// MaxFileSize caps each file read (Compose files, .env, env_file),
	// counted while reading; default 1 MiB.
	MaxFileSize int64
	// NoSecretsBackend makes services that declare secrets a problem: the
	// agent has no Vault configured to resolve them. berth validate, which
	// runs without an agent config, leaves it false.
	NoSecretsBackend bool
	// NoSOPSKey makes services with sops: secrets a problem: the host has
	// no age key to open them (berth validate in a repository's CI leaves
	// it off: the files' structure is checked without the key).
	NoSOPSKey bool
	// SecretPaths lists the Vault path prefixes secret references may
	// name (agent config vault.allowed_paths); empty: any path outside the
	// ones that are always refused (see CheckSecretPath).
	SecretPaths []string
	// LB is where the load balancer's files go and which upstreams other
	// environments of this host own.
	LB LBOptions
	// HostBinds, when set, lists the bind mounts of every container on
	// this host (the agent asks the engine): a bind mount of this
	// environment must not overlap one another container may write
	// (checkBindOverlap). berth validate has no host to ask.
	HostBinds func(ctx context.Context) ([]HostBind, error)
	// HostEnvs are the envs the agent of this host runs (this one among
	// them): names of this env's containers that another's would take are
	// refused (checkNameClash). berth validate has no host.
	HostEnvs []string
	// Log, when set, receives the stack of a panic while loading (the
	// problem returned names the environment only).
	Log hclog.Logger
}

// DefaultMaxFileSize is the default cap on one config file.
const DefaultMaxFileSize = 1 << 20

var envNameRe = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]*$`)

// ValidEnvName reports whether name can name an environment (envs/<name>/):
// lowercase letters, digits, - and _.
func ValidEnvName(name string) bool { return envNameRe.MatchString(name) }

var jobNameRe = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]*$`)

// ValidJobName says whether name can name a job: it becomes part of a
// container name and of a directory under the state dir (at most 63
// bytes, checked apart from the regexp: see backendRe).
func ValidJobName(name string) bool { return len(name) <= 63 && jobNameRe.MatchString(name) }

// List returns the environment names under envs/ of a checkout.
func List(checkout string) ([]string, error) {
	entries, err := os.ReadDir(filepath.Join(checkout, "envs"))
	if err != nil {
		return nil, fmt.Errorf("list environments: %w", err)
	}
	var names []string
	for _, e := range entries {
		if e.IsDir() && ValidEnvName(e.Name()) {
			names = append(names, e.Name())
		}
	}
	return names, nil
}

// Load reads envs/<name>/ of the checkout at dir as docker compose would
// (compose.yaml, compose.override.yaml, include, extends, .env
// interpolation) and returns its desired state. Interpolation uses only the
// environment's .env file, never the agent's own environment, so a revision
// means the same thing on every host. Any validation or policy problem
// makes Load return Problems, all of them at once.
//
// Every file is read through the checkout (checkout, fileSet): compose-go
// opens no file berth has not contained first, and a refused file is never
// opened. Load never panics: a panic on hostile input becomes a Problem
// naming the environment, its stack going to opts.Log.
func Load(ctx context.Context, dir, name string, opts Options) (env *Env, err error) {
	defer func() {
		if r := recover(); r != nil {
			if opts.Log != nil {
				opts.Log.Error("panic while loading an environment: refusing the revision", "env", name, "panic", fmt.Sprint(r), "stack", string(debug.Stack()))
			}
			env, err = nil, Problems{{File: "envs/" + name, Message: "berth failed while loading this environment (a bug in berth, triggered by this revision)", Hint: "the agent log has the details; change the revision or report it"}}
		}
	}()
	return loadEnv(ctx, dir, name, opts)
}

// loadHook, set by tests, runs inside Load's recover.
var loadHook func()

func loadEnv(ctx context.Context, dir, name string, opts Options) (*Env, error) {
	if loadHook != nil {
		loadHook()
	}
	if opts.MaxFileSize <= 0 {
		opts.MaxFileSize = DefaultMaxFileSize
	}
	if opts.Project == "" {
		opts.Project = name
	}
	envRel := "envs/" + name
	if !ValidEnvName(name) {
		return nil, Problems{{File: envRel, Message: fmt.Sprintf("invalid environment name %q", name), Hint: "lowercase letters, digits, - and _"}}
	}
	co, err := openCheckout(dir, opts.MaxFileSize)
	if err != nil {
		return nil, fmt.Errorf("load env %s: %w", name, err)
	}
	defer co.close()
	files := &fileSet{co: co, main: envRel + "/compose.yaml", maxFiles: 64, byAbs: map[string]*rawFile{}, bases: map[string]string{}}
	c := &collector{files: files}
	files.c = c

	envDirRel, err := co.resolve(filepath.Join(co.dir, "envs", name))
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil, Problems{{File: envRel, Message: "no such environment", Hint: "each envs/<env>/ holds one Compose project in compose.yaml"}}
	case err != nil:
		return nil, Problems{{File: envRel, Message: err.Error()}}
	}
	envDir := filepath.Join(co.dir, filepath.FromSlash(envDirRel))
	main := findFile(co, envDir, cli.DefaultFileNames)
	if main == "" {
		return nil, Problems{{File: envRel, Message: "no compose.yaml", Hint: "each envs/<env>/ holds one Compose project in compose.yaml"}}
	}
	files.main = co.rel(main)
	tops := []string{main}
	if o := findFile(co, envDir, cli.DefaultOverrideFileNames); o != "" {
		tops = append(tops, o)
	}
	details := types.ConfigDetails{WorkingDir: envDir, Environment: types.Mapping{}}
	contained := true
	dotenvPath := filepath.Join(envDir, ".env")
	var sealed map[string]bool // keys a SOPS-encrypted .env holds encrypted
	var sealedFile *sopsfile.File
	if co.exists(dotenvPath) {
		b, err := co.readFile(dotenvPath)
		if err != nil {
			c.add(co.rel(dotenvPath), "", "", err.Error(), "")
			contained = false
		} else if sopsfile.IsEncrypted(b) {
			if sealedFile, details.Environment, sealed, err = sealedDotEnv(b); err != nil {
				c.add(co.rel(dotenvPath), "", "", "a SOPS-encrypted .env: "+err.Error(), "")
				contained = false
			}
		} else if vars, err := dotenv.UnmarshalBytesWithLookup(b, nil); err != nil {
			c.add(co.rel(dotenvPath), "", "", err.Error(), "")
			contained = false
		} else {
			details.Environment = vars
		}
	}
	for _, p := range tops {
		files.bases[p] = envDir
		f, err := files.readCompose(p, files.main, ref{}, true)
		if err != nil {
			contained = false
			continue
		}
		details.ConfigFiles = append(details.ConfigFiles, types.ConfigFile{Filename: f.abs, Content: f.content})
	}
	if !contained {
		// compose-go must not read what did not pass.
		return nil, c.problems.sorted()
	}

	ports := &portGuard{}
	interpolatedSealed := map[string]bool{}
	project, err := loader.LoadWithContext(ctx, details, func(o *loader.Options) {
		o.SetProjectName(opts.Project, true)
		o.Profiles = opts.Profiles
		o.ResourceLoaders = []loader.ResourceLoader{files}
		// env_file and label_file are read below, through the checkout.
		o.SkipResolveEnvironment = true
		o.SkipResolveLabels = true
		if len(sealed) > 0 {
			o.Interpolate.LookupValue = guardSealed(o.Interpolate.LookupValue, sealed, func(k string) { interpolatedSealed[k] = true })
		}
		o.Interpolate = guardPorts(o.Interpolate, ports)
	})
	if err != nil && ctx.Err() != nil {
		return nil, ctx.Err()
	}
	if err != nil {
		var r *refusal
		if pr := ports.refused; pr != nil {
			c.service(pr.service(err), "ports", pr.msg, "publish the ports the service needs")
		} else if !errors.As(err, &r) {
			c.add(files.main, "", "", strings.ReplaceAll(err.Error(), co.dir+"/", ""), "see `docker compose config` for the same file")
		}
		return nil, c.problems.sorted()
	}
	for _, f := range files.files {
		project.ComposeFiles = append(project.ComposeFiles, f.abs)
	}
	resolveEnvFiles(c, co, project)

	env := &Env{Name: name, Project: project, File: files.main, root: co.dir}
	if sealedFile != nil {
		env.Sealed = map[string]*sopsfile.File{co.rel(dotenvPath): sealedFile}
	}
	report := func(field, msg, hint string) { c.top(field, msg, hint) }
	top := parseTopSpec(project.Extensions[extKey], name, report)
	env.RequireDigests, env.LB, env.Watch, env.Jobs, env.Rollout, env.Promote = top.requireDigests, top.lb, top.watch, top.jobs, top.rollout, top.promote
	env.Images = compileImages(c, co, envDir, top.images)
	for _, sname := range slices.Sorted(maps.Keys(project.Services)) {
		cfg := project.Services[sname]
		sreport := func(field, msg, hint string) { c.service(sname, field, msg, hint) }
		spec := parseServiceSpec(cfg.Extensions[extKey], sreport)
		env.Services = append(env.Services, Service{Name: sname, Config: cfg, Berth: spec})
	}
	slices.SortStableFunc(env.Services, func(a, b Service) int { return roleOrder(a.Berth.Role) - roleOrder(b.Berth.Role) })
	attachSealed(c, co, envDir, env)
	for _, k := range slices.Sorted(maps.Keys(interpolatedSealed)) {
		c.add(co.rel(dotenvPath), "", "", fmt.Sprintf("${%s} names a value this .env holds encrypted: it is never interpolated", k),
			fmt.Sprintf(`give it to a service as a secret, x-berth.secrets: {%s: "sops:.env#%s"}`, k, k))
	}
	verr := validate(ctx, c, env, opts)
	if err := ctx.Err(); err != nil {
		// Cancelled (the agent is stopping): not a verdict on anything.
		return nil, err
	}
	if verr != nil {
		return nil, verr
	}
	if len(c.problems) > 0 {
		return nil, c.problems.sorted()
	}
	for i := range env.Services {
		env.Services[i].Hash = ConfigHash(env.Services[i])
	}
	return env, nil
}

func roleOrder(r Role) int {
	switch r {
	case RoleMigrate:
		return 0
	case RoleCLI:
		return 1
	case RoleWorker:
		return 2
	default:
		return 3
	}
}

func findFile(co *checkout, dir string, names []string) string {
	for _, n := range names {
		p := filepath.Join(dir, n)
		if co.exists(p) {
			return p
		}
	}
	return ""
}

// resolveEnvFiles does what compose-go's WithServicesEnvironmentResolved
// does, reading each env_file through the checkout: variables without a
// value come from the project's .env, env_file values come next, and
// environment: wins.
func resolveEnvFiles(c *collector, co *checkout, p *types.Project) {
	for name, s := range p.Services {
		s.Environment = s.Environment.Resolve(p.Environment.Resolve)
		vars := s.Environment.ToMapping()
		for i, ef := range s.EnvFiles {
			field := fmt.Sprintf("env_file[%d]", i)
			shown := co.rel(ef.Path)
			if _, err := co.resolve(ef.Path); errors.Is(err, fs.ErrNotExist) {
				if ef.Required {
					c.service(name, field, fmt.Sprintf("%s does not exist", shown), "add the file, or set required: false")
				}
				continue
			}
			b, err := co.readFile(ef.Path)
			if err != nil {
				c.service(name, field, fmt.Sprintf("%s %v", shown, err), "keep env files inside the config repository")
				continue
			}
			err = dotenv.ParseWithFormat(bytes.NewReader(b), shown, vars, func(k string) (string, bool) {
				if v, ok := p.Environment.Resolve(k); ok {
					return v, true
				}
				if v, ok := s.Environment[k]; ok && v != nil {
					return *v, true
				}
				return "", false
			}, ef.Format)
			if err != nil {
				c.service(name, field, strings.ReplaceAll(err.Error(), co.dir+"/", ""), "")
			}
		}
		s.Environment = vars.ToMappingWithEquals().OverrideBy(s.Environment)
		p.Services[name] = s
	}
}

// checkFileKeys reports the Compose keys of one file, as written, that
// berth does not turn into containers, and says whether there were none.
// It runs on each file as it is read, before compose-go loads it.
func checkFileKeys(c *collector, f *rawFile) bool {
	ok := true
	bad := func(service, field, msg, hint string) {
		c.add(f.rel, service, field, msg, hint)
		ok = false
	}
	for _, k := range slices.Sorted(maps.Keys(f.model)) {
		if !supportedTopKeys[k] && !strings.HasPrefix(k, "x-") {
			bad("", k, fmt.Sprintf("top-level %q is not supported by berth yet", k), "remove it; berth would otherwise ignore it")
		}
	}
	services, _ := f.model["services"].(map[string]any)
	for _, name := range slices.Sorted(maps.Keys(services)) {
		svc, _ := services[name].(map[string]any)
		for _, k := range slices.Sorted(maps.Keys(svc)) {
			if !supportedServiceKeys[k] && !strings.HasPrefix(k, "x-") {
				bad(name, k, fmt.Sprintf("%q is not supported by berth yet", k), unsupportedHint(k))
			}
		}
		deploy, _ := svc["deploy"].(map[string]any)
		nested(bad, name, "deploy", deploy, supportedDeployKeys)
		res, _ := deploy["resources"].(map[string]any)
		nested(bad, name, "deploy.resources", res, supportedResourcesKeys)
		lim, _ := res["limits"].(map[string]any)
		nested(bad, name, "deploy.resources.limits", lim, supportedLimitsKeys)
	}
	return ok
}

func nested(bad func(service, field, msg, hint string), service, prefix string, m map[string]any, ok map[string]bool) {
	for _, k := range slices.Sorted(maps.Keys(m)) {
		if !ok[k] {
			bad(service, prefix+"."+k, fmt.Sprintf("%q is not supported by berth yet", prefix+"."+k), "berth runs a service on one host: of deploy, it takes replicas and resources.limits")
		}
	}
}

func unsupportedHint(key string) string {
	switch key {
	case "build":
		return "berth deploys images pinned by digest; build in CI and push"
	case "container_name":
		return "berth names containers itself: a server runs old and new side by side"
	case "scale":
		return "set deploy.replicas"
	}
	return "remove it; berth would otherwise ignore it"
}
