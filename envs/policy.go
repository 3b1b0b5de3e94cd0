package envs

import (
	"fmt"
	"math"
	"reflect"
	"slices"
	"strings"
	"time"

	"github.com/compose-spec/compose-go/v2/types"
)

// Policy is what the agent config allows services to ask of the host. The
// zero value allows none of it (DESIGN.md §7): whoever merges to the
// config repository runs containers, and no more.
type Policy struct {
	AllowPrivileged     bool     `yaml:"allow_privileged"`
	AllowHostNamespaces bool     `yaml:"allow_host_namespaces"` // network_mode/pid/ipc: host
	AllowCapAdd         bool     `yaml:"allow_cap_add"`
	AllowDevices        bool     `yaml:"allow_devices"`
	AllowDockerSocket   bool     `yaml:"allow_docker_socket"`
	AllowedBindMounts   []string `yaml:"allowed_bind_mounts"` // host path prefixes
	// AllowVolumeDrivers lets named volumes use drivers other than local,
	// and driver_opts (with the local driver they bind any host path).
	AllowVolumeDrivers bool `yaml:"allow_volume_drivers"`
	// AllowedSecurityOpt lists security_opt entries allowed beyond
	// no-new-privileges ("name" or a "prefix*").
	AllowedSecurityOpt []string `yaml:"allowed_security_opt"`
	// AllowedLoggingDrivers lists logging drivers allowed beyond json-file,
	// local, journald and none (the others make dockerd connect out).
	AllowedLoggingDrivers []string `yaml:"allowed_logging_drivers"`
	// AllowedSysctls replaces the default, net.* (namespaced per
	// container): "name" or a "prefix*".
	AllowedSysctls []string `yaml:"allowed_sysctls"`
	// AllowExternalVolumes lets services use volumes the project does not
	// own (external: true): data of other projects or of the host.
	AllowExternalVolumes bool `yaml:"allow_external_volumes"`
	// AllowExternalNetworks lets services join networks the project does
	// not own (external: true), where other projects' containers are.
	AllowExternalNetworks bool `yaml:"allow_external_networks"`
	// AllowRWRepoMounts lets a bind mount from the config repository be
	// written (":rw"); by default every repo file is mounted read-only.
	AllowRWRepoMounts bool `yaml:"allow_rw_repo_mounts"`
	// AllowedUlimits lists ulimits a service may set beyond nofile and
	// nproc (within their bounds): rtprio, memlock, … with any value.
	AllowedUlimits []string `yaml:"allowed_ulimits"`
	// AllowedHostPorts lists the host ports services may publish ("N" or
	// "N-M"); default 1024-65535: the ports below are the host's own
	// services' (sshd, the load balancer), which a container that binds
	// them first — or while they restart — would take over.
	AllowedHostPorts []string `yaml:"allowed_host_ports"`
	// AllowProxyLabels lets services carry the labels a reverse proxy on
	// the host routes by (traefik.*, caddy*): with them, a repository
	// could route another project's hostnames to its own container.
	AllowProxyLabels bool `yaml:"allow_proxy_labels"`
	// MinJobInterval is how often a job may run at most; default
	// DefaultMinJobInterval (10 s).
	MinJobInterval time.Duration `yaml:"min_job_interval"`
}

const policyHint = "the agent config must allow it (policy in /etc/berth/agent.yaml)"

// Defaults of the list switches.
var (
	safeSecurityOpt     = []string{"no-new-privileges", "no-new-privileges:true", "no-new-privileges=true"}
	safeLoggingDrivers  = []string{"json-file", "local", "journald", "none"}
	defaultSysctls      = []string{"net.*"}
	safeIpcModes        = []string{"", "private", "shareable", "none"}
	safeNetworkDrivers  = []string{"", "bridge"}
	reservedLabelPrefix = []string{"berth.", "com.docker.compose."}
	// proxyLabelPrefix are the labels reverse proxies on the host route
	// by (Traefik's and caddy-docker-proxy's Docker providers).
	proxyLabelPrefix = []string{"traefik.", "caddy"}
	// proxyEnvVars are the environment variables nginx-proxy (and its
	// acme-companion) route hostnames and issue certificates by, as the
	// labels above.
	proxyEnvVars = []string{"VIRTUAL_HOST", "VIRTUAL_PATH", "LETSENCRYPT_HOST"}
	// defaultHostPorts are the host ports a service may publish unless
	// policy.allowed_host_ports says otherwise.
	defaultHostPorts = []string{"1024-65535"}
	// maxPorts bounds a service's port mappings: compose expands ranges,
	// and "1-65535" would bind every host port.
	maxPorts = 256
	// safeUlimits are the ulimits a service may set without a switch,
	// within these bounds (nofile: the kernel's default nr_open).
	safeUlimits = map[string]int{"nofile": 1 << 20, "nproc": 1 << 20}
	// MaxStopGrace bounds stop_grace_period: berth waits that long for a
	// container at each stop (a retire, a rollback, a shutdown), inside a
	// deploy the watchdog bounds.
	MaxStopGrace = 5 * time.Minute
)

// dockerSockets are host paths that hand a container control of the
// host's container engine; mounting them or any directory above them is
// refused unless allowed.
var dockerSockets = []string{"/var/run/docker.sock", "/run/docker.sock", "/run/containerd/containerd.sock", "/var/run/containerd/containerd.sock"}

// matchAny reports whether s matches one of patterns: equal, or a prefix
// when the pattern ends in "*".
func matchAny(s string, patterns []string) bool {
	for _, p := range patterns {
		if pre, ok := strings.CutSuffix(p, "*"); ok && strings.HasPrefix(s, pre) || p == s {
			return true
		}
	}
	return false
}

// checkPolicy refuses what reaches the host through one service's
// container config, unless the policy allows it. Bind mounts are checked
// in checkMounts.
func checkPolicy(bad func(field, msg, hint string), cfg *types.ServiceConfig, p Policy) {
	if cfg.Privileged && !p.AllowPrivileged {
		bad("privileged", "privileged containers are refused", policyHint)
	}
	namespace := func(field, what, v string, safe []string) {
		switch {
		case slices.Contains(safe, v):
		case v == "host":
			if !p.AllowHostNamespaces {
				bad(field, fmt.Sprintf("the host %s namespace is refused", what), policyHint)
			}
		case strings.HasPrefix(v, "container:"), strings.HasPrefix(v, "service:"):
			bad(field, fmt.Sprintf("sharing another container's %s namespace (%s) is refused", what, v), "containers of other projects are out of reach; run the processes in one service")
		default:
			bad(field, fmt.Sprintf("%s mode %q is refused", what, v), "leave it out")
		}
	}
	switch nm := cfg.NetworkMode; {
	case nm == "" || nm == "none":
	case nm == "host":
		if !p.AllowHostNamespaces {
			bad("network_mode", "host networking is refused", policyHint)
		}
	case strings.HasPrefix(nm, "container:"), strings.HasPrefix(nm, "service:"):
		bad("network_mode", fmt.Sprintf("sharing another container's network namespace (%s) is refused", nm), "join a network of this project instead")
	default:
		bad("network_mode", fmt.Sprintf("network_mode %q is refused", nm), "use networks: of this project, or none")
	}
	namespace("pid", "PID", cfg.Pid, []string{""})
	namespace("ipc", "IPC", cfg.Ipc, safeIpcModes)
	namespace("uts", "UTS", cfg.Uts, []string{""})
	if cfg.UserNSMode != "" {
		bad("userns_mode", "userns_mode is refused", "leave it out")
	}
	if len(cfg.CapAdd) > 0 && !p.AllowCapAdd {
		bad("cap_add", fmt.Sprintf("added capabilities %v are refused", cfg.CapAdd), policyHint)
	}
	if len(cfg.Devices) > 0 && !p.AllowDevices {
		bad("devices", "host devices are refused", policyHint)
	}
	for i, o := range cfg.SecurityOpt {
		if !slices.Contains(safeSecurityOpt, o) && !matchAny(o, p.AllowedSecurityOpt) {
			bad(fmt.Sprintf("security_opt[%d]", i), fmt.Sprintf("security_opt %q is refused: it would weaken the container's confinement", o), "add it to policy.allowed_security_opt in /etc/berth/agent.yaml")
		}
	}
	sysctls := p.AllowedSysctls
	if sysctls == nil {
		sysctls = defaultSysctls
	}
	for _, k := range slices.Sorted(mapsKeys(cfg.Sysctls)) {
		if !matchAny(k, sysctls) {
			bad("sysctls."+k, fmt.Sprintf("sysctl %s is refused", k), "only "+strings.Join(sysctls, ", ")+" unless policy.allowed_sysctls in /etc/berth/agent.yaml lists it")
		}
	}
	if l := cfg.Logging; l != nil && l.Driver != "" && !slices.Contains(safeLoggingDrivers, l.Driver) && !slices.Contains(p.AllowedLoggingDrivers, l.Driver) {
		bad("logging.driver", fmt.Sprintf("logging driver %q is refused: it makes the Docker daemon send logs elsewhere", l.Driver), "use "+strings.Join(safeLoggingDrivers, ", ")+", or add it to policy.allowed_logging_drivers in /etc/berth/agent.yaml")
	}
	for _, k := range slices.Sorted(mapsKeys(cfg.Labels)) {
		if reservedLabel(k) {
			bad("labels."+k, fmt.Sprintf("label %s is reserved: berth and Compose use these to know which containers are whose", k), "use a label of your own")
		} else if !p.AllowProxyLabels && hasPrefix(k, proxyLabelPrefix) {
			bad("labels."+k, fmt.Sprintf("label %s is refused: a reverse proxy on the host routes by it, to any container that carries it", k), "berth's load balancer routes to servers (x-berth.lb), or set policy.allow_proxy_labels in /etc/berth/agent.yaml")
		}
	}
	for _, k := range slices.Sorted(mapsKeys(cfg.Environment)) {
		if !p.AllowProxyLabels && slices.Contains(proxyEnvVars, k) {
			bad("environment."+k, proxyEnvMessage(k), proxyEnvHint)
		}
	}
	allowedPorts := p.AllowedHostPorts
	if len(allowedPorts) == 0 {
		allowedPorts = defaultHostPorts
	}
	ranges, _ := ParseHostPorts(allowedPorts) // checked with the agent config
	var refused [][2]int                      // compose-go expands ranges: one entry per port
	for _, port := range cfg.Ports {
		lo, hi, ok := publishedRange(port.Published)
		if !ok || portsWithin(lo, hi, ranges) {
			continue
		}
		if n := len(refused); n > 0 && refused[n-1][1]+1 == lo {
			refused[n-1][1] = hi
		} else {
			refused = append(refused, [2]int{lo, hi})
		}
	}
	if len(refused) > 0 {
		var names []string
		for _, r := range refused {
			names = append(names, hostPortRange(r))
		}
		what := "host port " + names[0] + " is"
		if len(names) > 1 || refused[0][1] > refused[0][0] {
			what = "host ports " + strings.Join(names, ", ") + " are"
		}
		bad("ports", fmt.Sprintf("%s refused: services may publish %s", what, strings.Join(allowedPorts, ", ")),
			"ports below 1024 are the host's own services'; publish another, or list it in policy.allowed_host_ports in /etc/berth/agent.yaml")
	}
	if len(cfg.Ports) > maxPorts {
		bad("ports", fmt.Sprintf("%d port mappings (ranges expanded) are more than %d", len(cfg.Ports), maxPorts), "publish the ports the service needs")
	}
	for _, name := range slices.Sorted(mapsKeys(cfg.Ulimits)) {
		u := cfg.Ulimits[name]
		if u == nil || slices.Contains(p.AllowedUlimits, name) {
			continue
		}
		bound, ok := safeUlimits[name]
		if !ok {
			bad("ulimits."+name, fmt.Sprintf("ulimit %s is refused", name), "only nofile and nproc, unless policy.allowed_ulimits in /etc/berth/agent.yaml lists it")
			continue
		}
		for _, v := range []int{u.Single, u.Soft, u.Hard} {
			if v < 0 || v > bound {
				bad("ulimits."+name, fmt.Sprintf("ulimit %s %d is out of range", name, v), fmt.Sprintf("from 0 to %d, or list %s in policy.allowed_ulimits in /etc/berth/agent.yaml", bound, name))
				break
			}
		}
	}
	if g := cfg.StopGracePeriod; g != nil && (time.Duration(*g) > MaxStopGrace || *g < 0) {
		bad("stop_grace_period", fmt.Sprintf("stop_grace_period %s is refused: berth waits at most %s for a container to stop", time.Duration(*g), MaxStopGrace), "keep it from 0 to 5m")
	}
	exposed := 0
	for _, e := range cfg.Expose {
		exposed += portCount(e)
	}
	if exposed > maxPorts {
		bad("expose", fmt.Sprintf("exposed port ranges expand to %d ports, more than %d", exposed, maxPorts), "expose the ports the service needs")
	}
	checkFinite(bad, reflect.ValueOf(cfg).Elem(), "")
}

func hasPrefix(k string, prefixes []string) bool {
	for _, pre := range prefixes {
		if strings.HasPrefix(k, pre) {
			return true
		}
	}
	return false
}

func reservedLabel(k string) bool {
	for _, pre := range reservedLabelPrefix {
		if strings.HasPrefix(k, pre) {
			return true
		}
	}
	return false
}

func mapsKeys[M ~map[string]V, V any](m M) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// checkFinite refuses NaN and infinite numbers anywhere in a service's
// config ("cpus: NaN" parses as a float): nothing downstream handles them.
func checkFinite(bad func(field, msg, hint string), v reflect.Value, field string) {
	switch v.Kind() {
	case reflect.Float32, reflect.Float64:
		if f := v.Float(); math.IsNaN(f) || math.IsInf(f, 0) {
			bad(field, fmt.Sprintf("%v is not a number berth can use", f), "write a finite number")
		}
	case reflect.Pointer, reflect.Interface:
		if !v.IsNil() {
			checkFinite(bad, v.Elem(), field)
		}
	case reflect.Struct:
		t := v.Type()
		for i := range t.NumField() {
			f := t.Field(i)
			if !f.IsExported() {
				continue
			}
			name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
			if name == "" || name == "-" {
				name = strings.ToLower(f.Name)
			}
			sub := name
			if field != "" {
				sub = field + "." + name
			}
			checkFinite(bad, v.Field(i), sub)
		}
	case reflect.Slice, reflect.Array:
		for i := range v.Len() {
			checkFinite(bad, v.Index(i), fmt.Sprintf("%s[%d]", field, i))
		}
	case reflect.Map:
		iter := v.MapRange()
		for iter.Next() {
			checkFinite(bad, iter.Value(), fmt.Sprintf("%s.%v", field, iter.Key()))
		}
	}
}

const proxyEnvHint = "berth's load balancer routes to servers (x-berth.lb), or set policy.allow_proxy_labels in /etc/berth/agent.yaml"

func proxyEnvMessage(k string) string {
	return fmt.Sprintf("environment variable %s is refused: nginx-proxy on the host routes a hostname by it, to any container that carries it", k)
}
