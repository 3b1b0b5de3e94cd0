package envs

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"

	"github.com/compose-spec/compose-go/v2/cli"
)

// Options controls how an environment is loaded.
type Options struct {
	// Project is the Compose project name; default the environment name.
	Project string
	// Profiles to activate; services in other profiles are left out.
	Profiles []string
	// Policy says which host-level privileges services may ask for.
	Policy Policy
	// MaxFileSize caps each file read (Compose files, .env) before
	// parsing; default 1 MiB.
	MaxFileSize int64
	// NoSecretsBackend makes services that declare secrets a problem: the
	// agent has no Vault configured to resolve them. berth validate, which
	// runs without an agent config, leaves it false.
	NoSecretsBackend bool
}

// DefaultMaxFileSize is the default cap on one config file.
const DefaultMaxFileSize = 1 << 20

var envNameRe = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]*$`)

// ValidEnvName reports whether name can name an environment (envs/<name>/):
// lowercase letters, digits, - and _.
func ValidEnvName(name string) bool { return envNameRe.MatchString(name) }

var jobNameRe = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$`)

// ValidJobName says whether name can name a job: it becomes part of a
// container name and of a directory under the state dir.
func ValidJobName(name string) bool { return jobNameRe.MatchString(name) }

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
func Load(ctx context.Context, dir, name string, opts Options) (*Env, error) {
	if opts.MaxFileSize <= 0 {
		opts.MaxFileSize = DefaultMaxFileSize
	}
	if opts.Project == "" {
		opts.Project = name
	}
	root, err := filepath.Abs(dir)
	if err == nil {
		root, err = filepath.EvalSymlinks(root)
	}
	if err != nil {
		return nil, fmt.Errorf("load env %s: %w", name, err)
	}
	envRel := "envs/" + name
	if !ValidEnvName(name) {
		return nil, Problems{{File: envRel, Message: fmt.Sprintf("invalid environment name %q", name), Hint: "lowercase letters, digits, - and _"}}
	}
	files := &fileSet{root: root, maxSize: opts.MaxFileSize, maxFiles: 64, seen: map[string]bool{}}
	c := &collector{files: files}
	envDir, err := files.contained(root, filepath.Join(root, "envs", name))
	if err != nil {
		return nil, Problems{{File: envRel, Message: err.Error()}}
	}
	main := findFile(envDir, cli.DefaultFileNames)
	if main == "" {
		return nil, Problems{{File: envRel, Message: "no compose.yaml", Hint: "each envs/<env>/ holds one Compose project in compose.yaml"}}
	}
	files.main = files.rel(main)
	configs := []string{main}
	for _, p := range configs {
		files.scan(c, p, files.main, "")
	}
	if o := findFile(envDir, cli.DefaultOverrideFileNames); o != "" {
		configs = append(configs, o)
		files.scan(c, o, files.main, "")
	}
	var envFiles []string
	dotenv := filepath.Join(envDir, ".env")
	if fi, err := os.Lstat(dotenv); err == nil {
		if _, err := files.contained(envDir, dotenv); err != nil {
			c.add(files.rel(dotenv), "", "", err.Error(), "")
		} else if fi, err = os.Stat(dotenv); err == nil && fi.Size() > opts.MaxFileSize {
			c.add(files.rel(dotenv), "", "", fmt.Sprintf("is %d bytes, above the %d-byte limit for config files", fi.Size(), opts.MaxFileSize), "")
		}
		envFiles = append(envFiles, dotenv)
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("load env %s: %w", name, err)
	}
	checkKeys(c, files)
	if len(c.problems) > 0 {
		// Paths were not safe to follow or files not parseable: compose-go
		// must not read them.
		return nil, c.problems.sorted()
	}

	po, err := cli.NewProjectOptions(configs,
		cli.WithWorkingDirectory(envDir),
		cli.WithName(opts.Project),
		cli.WithEnvFiles(envFiles...),
		cli.WithDotEnv,
		cli.WithProfiles(opts.Profiles),
		cli.WithResolvedPaths(true),
	)
	if err != nil {
		return nil, fmt.Errorf("load env %s: %w", name, err)
	}
	project, err := po.LoadProject(ctx)
	if err != nil {
		return nil, Problems{{File: files.main, Message: strings.ReplaceAll(err.Error(), root+"/", ""), Hint: "see `docker compose config` for the same file"}}
	}

	env := &Env{Name: name, Project: project, File: files.main, root: root}
	report := func(field, msg, hint string) { c.top(field, msg, hint) }
	top := parseTopSpec(project.Extensions[extKey], report)
	env.RequireDigests, env.LB, env.Jobs = top.requireDigests, top.lb, top.jobs
	for _, sname := range slices.Sorted(maps.Keys(project.Services)) {
		cfg := project.Services[sname]
		sreport := func(field, msg, hint string) { c.service(sname, field, msg, hint) }
		spec := parseServiceSpec(cfg.Extensions[extKey], sreport)
		svc := Service{Name: sname, Config: cfg, Berth: spec}
		for i, v := range cfg.Volumes {
			if v.Type != "bind" || !allowedBind(filepath.Clean(v.Source), []string{root}) {
				continue
			}
			d, err := treeDigest(v.Source)
			if err != nil {
				sreport(fmt.Sprintf("volumes[%d]", i), fmt.Sprintf("read bind mount source %s: %v", files.rel(v.Source), err), "the path must exist in the config repository")
				continue
			}
			if svc.Mounted == nil {
				svc.Mounted = map[string]string{}
			}
			svc.Mounted[files.rel(v.Source)] = d
		}
		svc.Hash = ConfigHash(svc)
		env.Services = append(env.Services, svc)
	}
	slices.SortStableFunc(env.Services, func(a, b Service) int { return roleOrder(a.Berth.Role) - roleOrder(b.Berth.Role) })
	validate(c, env, opts)
	if len(c.problems) > 0 {
		return nil, c.problems.sorted()
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

func findFile(dir string, names []string) string {
	for _, n := range names {
		p := filepath.Join(dir, n)
		if _, err := os.Lstat(p); err == nil {
			return p
		}
	}
	return ""
}

// checkKeys reports Compose keys berth does not turn into containers, in the
// file that sets them.
func checkKeys(c *collector, files *fileSet) {
	for _, f := range files.files {
		for _, k := range slices.Sorted(maps.Keys(f.model)) {
			if !supportedTopKeys[k] && !strings.HasPrefix(k, "x-") {
				c.add(f.rel, "", k, fmt.Sprintf("top-level %q is not supported by berth yet", k), "remove it; berth would otherwise ignore it")
			}
		}
		services, _ := f.model["services"].(map[string]any)
		for _, name := range slices.Sorted(maps.Keys(services)) {
			svc, _ := services[name].(map[string]any)
			for _, k := range slices.Sorted(maps.Keys(svc)) {
				if !supportedServiceKeys[k] && !strings.HasPrefix(k, "x-") {
					c.add(f.rel, name, k, fmt.Sprintf("%q is not supported by berth yet", k), unsupportedHint(k))
				}
			}
			deploy, _ := svc["deploy"].(map[string]any)
			nested(c, f.rel, name, "deploy", deploy, supportedDeployKeys)
			res, _ := deploy["resources"].(map[string]any)
			nested(c, f.rel, name, "deploy.resources", res, supportedResourcesKeys)
			lim, _ := res["limits"].(map[string]any)
			nested(c, f.rel, name, "deploy.resources.limits", lim, supportedLimitsKeys)
		}
	}
}

func nested(c *collector, file, service, prefix string, m map[string]any, ok map[string]bool) {
	for _, k := range slices.Sorted(maps.Keys(m)) {
		if !ok[k] {
			c.add(file, service, prefix+"."+k, fmt.Sprintf("%q is not supported by berth yet", prefix+"."+k), "berth runs one container per service on one host")
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
		return "berth runs one container per service"
	}
	return "remove it; berth would otherwise ignore it"
}
