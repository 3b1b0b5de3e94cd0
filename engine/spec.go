package engine

import (
	"fmt"
	"maps"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/compose-spec/compose-go/v2/types"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/mount"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/api/types/strslice"
	"github.com/docker/go-connections/nat"
	"github.com/docker/go-units"

	"berth.dev/berth/envs"
	"berth.dev/berth/internal/failure"
)

// Placement is what a deploy decides about one container beyond the
// Compose service: where it belongs and which slot it takes.
type Placement struct {
	Project    string
	Env        string
	Revision   string // commit the container was created from
	ConfigHash string // the service's hash, secret digests mixed in
	SpecHash   string // the service's hash alone (LabelSpecHash)
	Slot       int
	OneOff     bool // a migrate/cli run
	// SecretEnv holds resolved secrets as NAME=value. Values go to Docker
	// and nowhere else: a Request is never logged.
	SecretEnv []string
	// SecretFiles holds resolved x-berth.secret_files as name=value: they
	// reach the container over its stdin, never a file on the host.
	SecretFiles []string
	// PublishLoopback publishes the server's x-berth.port on a free
	// 127.0.0.1 port chosen by the engine, for the load balancer.
	PublishLoopback bool
}

// Request is a container create request for the Docker API.
type Request struct {
	Name    string
	Config  *container.Config
	Host    *container.HostConfig
	Network *network.NetworkingConfig
	// More networks to connect after create (API 1.41 takes one at create).
	MoreNetworks map[string]*network.EndpointSettings
	// SecretFiles (name → value) are written by berth's init into a tmpfs
	// at envs.SecretFilesDir before the container's own command runs.
	SecretFiles map[string]string
}

// CreateRequest turns a loaded Compose service into a create request. It
// covers the keys envs/supported.go lets through; validation refuses the
// rest by name (and the policy what reaches the host), so nothing is
// dropped silently here. Mounts from the config repository arrive
// read-only from envs. It never panics: a panic on a hostile revision is
// returned as a verdict on it, without the panic's value.
func CreateRequest(p *types.Project, svc envs.Service, pl Placement) (req *Request, err error) {
	defer func() {
		if r := recover(); r != nil {
			req, err = nil, failure.AsVerdict(fmt.Errorf("service %s: berth failed to build its container request (a bug in berth, triggered by this revision)", svc.Name))
		}
	}()
	return createRequest(p, svc, pl)
}

func createRequest(p *types.Project, svc envs.Service, pl Placement) (*Request, error) {
	s := svc.Config
	labels := map[string]string{}
	maps.Copy(labels, s.Labels)
	maps.Copy(labels, managedLabels(pl, svc.Name, string(svc.Berth.Role)))

	cfg := &container.Config{
		Image:        s.Image,
		Cmd:          strslice.StrSlice(s.Command),
		Entrypoint:   strslice.StrSlice(s.Entrypoint),
		Env:          environment(s.Environment, pl.SecretEnv),
		WorkingDir:   s.WorkingDir,
		User:         s.User,
		Hostname:     s.Hostname,
		Domainname:   s.DomainName,
		Labels:       labels,
		ExposedPorts: nat.PortSet{},
		StopSignal:   s.StopSignal,
	}
	if s.StopGracePeriod != nil {
		// Validation refuses more than envs.MaxStopGrace; clamped here too.
		secs := int(min(max(time.Duration(*s.StopGracePeriod), 0), envs.MaxStopGrace).Seconds())
		cfg.StopTimeout = &secs
	}
	if hc := s.HealthCheck; hc != nil {
		cfg.Healthcheck = healthcheck(hc)
	}

	host := &container.HostConfig{
		Binds:          nil,
		PortBindings:   nat.PortMap{},
		RestartPolicy:  restartPolicy(s.Restart),
		Init:           s.Init,
		ReadonlyRootfs: s.ReadOnly,
		ExtraHosts:     s.ExtraHosts.AsList(":"),
		DNS:            s.DNS,
		CapAdd:         s.CapAdd,
		CapDrop:        s.CapDrop,
		SecurityOpt:    s.SecurityOpt,
		ShmSize:        int64(s.ShmSize),
		Sysctls:        s.Sysctls,
		Privileged:     s.Privileged,
		PidMode:        container.PidMode(s.Pid),
		IpcMode:        container.IpcMode(s.Ipc),
		Tmpfs:          tmpfs(s.Tmpfs),
	}
	if s.Logging != nil {
		host.LogConfig = container.LogConfig{Type: s.Logging.Driver, Config: s.Logging.Options}
	}
	resources(&host.Resources, s)
	for _, d := range s.Devices {
		perm := d.Permissions
		if perm == "" {
			perm = "rwm"
		}
		host.Devices = append(host.Devices, container.DeviceMapping{PathOnHost: d.Source, PathInContainer: d.Target, CgroupPermissions: perm})
	}

	for _, port := range s.Ports {
		proto := port.Protocol
		if proto == "" {
			proto = "tcp"
		}
		cp, err := nat.NewPort(proto, strconv.Itoa(int(port.Target)))
		if err != nil {
			return nil, fmt.Errorf("service %s: port %d: %w", svc.Name, port.Target, err)
		}
		cfg.ExposedPorts[cp] = struct{}{}
		if port.Published != "" {
			host.PortBindings[cp] = append(host.PortBindings[cp], nat.PortBinding{HostIP: port.HostIP, HostPort: port.Published})
		}
	}
	for _, e := range s.Expose {
		cp, err := nat.NewPort("tcp", e)
		if err != nil {
			return nil, fmt.Errorf("service %s: expose %s: %w", svc.Name, e, err)
		}
		cfg.ExposedPorts[cp] = struct{}{}
	}
	if pl.PublishLoopback && svc.Berth.Port != 0 {
		cp := nat.Port(strconv.Itoa(svc.Berth.Port) + "/tcp")
		cfg.ExposedPorts[cp] = struct{}{}
		// Port "" lets the engine pick a free port, without a race.
		host.PortBindings[cp] = []nat.PortBinding{{HostIP: "127.0.0.1", HostPort: ""}}
	}

	for _, v := range s.Volumes {
		m, err := mountFor(p, v)
		if err != nil {
			return nil, fmt.Errorf("service %s: volume %s: %w", svc.Name, v.Target, err)
		}
		host.Mounts = append(host.Mounts, m)
	}

	req := &Request{Name: ContainerName(pl.Project, svc.Name, pl.Slot), Config: cfg, Host: host}
	if len(pl.SecretFiles) > 0 {
		req.SecretFiles = map[string]string{}
		for _, kv := range pl.SecretFiles {
			k, v, _ := strings.Cut(kv, "=")
			req.SecretFiles[k] = v
		}
		// In memory only; sticky and world-writable so that a non-root
		// user can create its files (0400, its own).
		host.Mounts = append(host.Mounts, mount.Mount{Type: mount.TypeTmpfs, Target: envs.SecretFilesDir,
			TmpfsOptions: &mount.TmpfsOptions{SizeBytes: 4 << 20, Mode: os.FileMode(0o1777)}}) // mode=1777 (Docker formats it %o)
		cfg.OpenStdin, cfg.StdinOnce, cfg.AttachStdin = true, true, true
	}
	if s.NetworkMode != "" {
		host.NetworkMode = container.NetworkMode(s.NetworkMode)
		return req, nil
	}
	names := slices.Sorted(maps.Keys(s.Networks))
	if len(names) == 0 {
		names = []string{"default"}
	}
	req.MoreNetworks = map[string]*network.EndpointSettings{}
	for i, n := range names {
		net, ok := p.Networks[n]
		if !ok {
			return nil, fmt.Errorf("service %s: network %q is not defined", svc.Name, n)
		}
		ep := &network.EndpointSettings{Aliases: []string{svc.Name}}
		if sn := s.Networks[n]; sn != nil {
			ep.Aliases = append(ep.Aliases, sn.Aliases...)
			if sn.Ipv4Address != "" || sn.Ipv6Address != "" {
				ep.IPAMConfig = &network.EndpointIPAMConfig{IPv4Address: sn.Ipv4Address, IPv6Address: sn.Ipv6Address}
			}
		}
		if i == 0 {
			host.NetworkMode = container.NetworkMode(net.Name)
			req.Network = &network.NetworkingConfig{EndpointsConfig: map[string]*network.EndpointSettings{net.Name: ep}}
		} else {
			req.MoreNetworks[net.Name] = ep
		}
	}
	return req, nil
}

// environment renders Compose's environment (sorted, for stable requests)
// plus resolved secrets. A variable without a value is left out: berth
// never fills it from its own environment.
func environment(env types.MappingWithEquals, extra []string) []string {
	var out []string
	for _, k := range slices.Sorted(maps.Keys(env)) {
		if v := env[k]; v != nil {
			out = append(out, k+"="+*v)
		}
	}
	return append(out, extra...)
}

func healthcheck(hc *types.HealthCheckConfig) *container.HealthConfig {
	if hc.Disable {
		return &container.HealthConfig{Test: []string{"NONE"}}
	}
	out := &container.HealthConfig{Test: hc.Test}
	if hc.Interval != nil {
		out.Interval = time.Duration(*hc.Interval)
	}
	if hc.Timeout != nil {
		out.Timeout = time.Duration(*hc.Timeout)
	}
	if hc.StartPeriod != nil {
		out.StartPeriod = time.Duration(*hc.StartPeriod)
	}
	if hc.Retries != nil {
		out.Retries = int(*hc.Retries)
	}
	return out
}

func restartPolicy(r string) container.RestartPolicy {
	name, count, _ := strings.Cut(r, ":")
	p := container.RestartPolicy{Name: container.RestartPolicyMode(name)}
	if n, err := strconv.Atoi(count); err == nil {
		p.MaximumRetryCount = n
	}
	if name == "" {
		p.Name = container.RestartPolicyDisabled
	}
	return p
}

func tmpfs(list types.StringList) map[string]string {
	if len(list) == 0 {
		return nil
	}
	out := map[string]string{}
	for _, t := range list {
		path, opts, _ := strings.Cut(t, ":")
		out[path] = opts
	}
	return out
}

// resources maps mem_limit/cpus and deploy.resources.limits (the latter
// wins, as in docker compose) and ulimits.
func resources(r *container.Resources, s types.ServiceConfig) {
	r.Memory = int64(s.MemLimit)
	r.NanoCPUs = int64(float64(s.CPUS) * 1e9)
	if s.Deploy != nil && s.Deploy.Resources.Limits != nil {
		l := s.Deploy.Resources.Limits
		if l.MemoryBytes > 0 {
			r.Memory = int64(l.MemoryBytes)
		}
		if l.NanoCPUs > 0 {
			r.NanoCPUs = int64(float64(l.NanoCPUs) * 1e9)
		}
		if l.Pids > 0 {
			pids := l.Pids
			r.PidsLimit = &pids
		}
	}
	for _, name := range slices.Sorted(maps.Keys(s.Ulimits)) {
		u := s.Ulimits[name]
		soft, hard := int64(u.Soft), int64(u.Hard)
		if u.Single != 0 {
			soft, hard = int64(u.Single), int64(u.Single)
		}
		r.Ulimits = append(r.Ulimits, &units.Ulimit{Name: name, Soft: soft, Hard: hard})
	}
}

func mountFor(p *types.Project, v types.ServiceVolumeConfig) (mount.Mount, error) {
	m := mount.Mount{Target: v.Target, ReadOnly: v.ReadOnly}
	switch v.Type {
	case types.VolumeTypeBind:
		m.Type, m.Source = mount.TypeBind, v.Source
		if v.Bind != nil && v.Bind.Propagation != "" {
			m.BindOptions = &mount.BindOptions{Propagation: mount.Propagation(v.Bind.Propagation)}
		}
	case types.VolumeTypeVolume:
		m.Type = mount.TypeVolume
		if v.Source != "" {
			vol, ok := p.Volumes[v.Source]
			if !ok {
				return m, fmt.Errorf("volume %q is not defined", v.Source)
			}
			m.Source = vol.Name
		}
		if v.Volume != nil && (v.Volume.NoCopy || v.Volume.Subpath != "") {
			m.VolumeOptions = &mount.VolumeOptions{NoCopy: v.Volume.NoCopy, Subpath: v.Volume.Subpath}
		}
	case types.VolumeTypeTmpfs:
		m.Type = mount.TypeTmpfs
		if v.Tmpfs != nil {
			m.TmpfsOptions = &mount.TmpfsOptions{SizeBytes: int64(v.Tmpfs.Size), Mode: os.FileMode(v.Tmpfs.Mode)}
		}
	default:
		return m, fmt.Errorf("volume type %q is not supported", v.Type)
	}
	return m, nil
}
