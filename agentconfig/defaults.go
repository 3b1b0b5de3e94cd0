package agentconfig

import (
	"fmt"
	"time"

	"go.yaml.in/yaml/v4"

	"berth.dev/berth/envs"
)

// Duration is a time.Duration written as "90s", "5m".
type Duration struct{ time.Duration }

// UnmarshalYAML reads a duration of 0 or more. The decoder adds the line;
// the loader replaces it with the field's name.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	v, err := time.ParseDuration(n.Value)
	switch {
	case err != nil:
		return fmt.Errorf("%q is not a duration (write e.g. 90s, 5m)", n.Value)
	case v < 0:
		return fmt.Errorf("%q is negative: a duration is 0 or more", n.Value)
	}
	d.Duration = v
	return nil
}

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

// complete fills the defaults that depend on what the file set: they
// are decided after decoding, still here in one place.
func (c *Config) complete() {
	if v := c.Vault; v != nil && v.CheckInterval.Duration == 0 {
		v.CheckInterval.Duration = 5 * time.Minute
	}
	if len(c.HAProxy.Command) == 0 {
		c.HAProxy.Command = []string{"haproxy", "-f", "/etc/haproxy/haproxy.cfg", "-f", c.HAProxy.ServersDir}
	}
	if c.Fleet != nil {
		*c.Fleet = c.Fleet.Defaults()
	}
	if c.Forge != nil && c.Forge.Context == "" {
		c.Forge.Context = "berth/{env}"
	}
}

// StallAfter is how long a pass may show no progress before the agent
// counts as wedged: deploy.stall_timeout, else the longest single step
// berth may legitimately take (a migration) plus a wide margin (a slow
// pull of a large image).
func (c *Config) StallAfter() time.Duration {
	if d := c.Deploy.StallTimeout.Duration; d > 0 {
		return d
	}
	return 30*time.Minute + c.Deploy.MigrationTimeout.Duration
}
