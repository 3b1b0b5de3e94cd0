package agentconfig

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"berth.dev/berth/api"
	"berth.dev/berth/envs"
	"berth.dev/berth/lb"
	"berth.dev/berth/notify"
)

// Validate reports every problem of a decoded, completed config as
// Problems: one validator per section, in the order of the reference
// (docs/configuration.md).
func (c *Config) Validate() error {
	var ps problems
	for _, check := range []func(*problems){
		c.checkEnvs, c.checkRepo, c.checkStateDir, c.checkVault, c.checkRollback,
		c.checkDeploy, c.checkAPI, c.checkNotify, c.checkNginx, c.checkHAProxy,
		c.checkPolicy, c.checkFleet, c.checkForge, c.checkSupply,
	} {
		check(&ps)
	}
	if len(ps.list) == 0 {
		return nil
	}
	return ps.list
}

const envNameRule = "lowercase letters, digits, - and _"

func (c *Config) checkEnvs(ps *problems) {
	switch {
	case c.Env == "" && len(c.Envs) == 0:
		ps.add("env", "required: the environment this host runs (envs/<env>/ in the config repo), or envs: [a, b] for several")
	case c.Env != "" && len(c.Envs) > 0:
		ps.add("envs", "set env: for one environment or envs: for several, not both")
	case c.Env != "" && !envs.ValidEnvName(c.Env):
		ps.add("env", fmt.Sprintf("%q: %s", c.Env, envNameRule))
	}
	seen := map[string]bool{}
	for i, e := range c.Envs {
		switch {
		case !envs.ValidEnvName(e):
			ps.add(fmt.Sprintf("envs[%d]", i), fmt.Sprintf("%q: %s", e, envNameRule))
		case seen[e]:
			ps.add(fmt.Sprintf("envs[%d]", i), fmt.Sprintf("%q is listed twice", e))
		}
		seen[e] = true
	}
	if c.Project != "" && len(c.Envs) > 1 {
		ps.add("project", "names the Compose project of one environment; with several envs each one's project is its name")
	}
}

func (c *Config) checkRepo(ps *problems) {
	r := c.Repo
	if r.URL == "" {
		ps.add("repo.url", "required: the config repository (https://, ssh:// or file://)")
	}
	if strings.Contains(r.Path, "..") || filepath.IsAbs(r.Path) {
		ps.add("repo.path", fmt.Sprintf("%q must be a relative path inside the repository", r.Path))
	}
	if r.PollInterval.Duration < time.Second {
		ps.add("repo.poll_interval", "at least 1s")
	}
	if r.HistoryDepth < 0 {
		ps.add("repo.history_depth", "0 (the default, 64) or more")
	}
	checkFiles(ps, map[string]string{"repo.auth.token_file": r.Auth.TokenFile, "repo.auth.ssh_key_file": r.Auth.SSHKeyFile,
		"repo.auth.known_hosts_file": r.Auth.KnownHostsFile, "repo.trusted_keys_file": r.TrustedKeysFile})
}

func (c *Config) checkStateDir(ps *problems) {
	if !filepath.IsAbs(c.StateDir) {
		ps.add("state_dir", fmt.Sprintf("%q must be an absolute path", c.StateDir))
	}
}

func (c *Config) checkVault(ps *problems) {
	v := c.Vault
	if v == nil {
		return
	}
	if v.Address == "" {
		ps.add("vault.address", "required, e.g. https://vault.example.org:8200")
	}
	if n := btoi(v.TokenFile != "") + btoi(v.AppRole != nil) + btoi(v.AWS != nil); n != 1 {
		ps.add("vault", "set exactly one of token_file, approle and aws")
	}
	if v.AWS != nil && v.AWS.Role == "" {
		ps.add("vault.aws.role", "required: the Vault role this host logs in as")
	}
	files := map[string]string{"vault.token_file": v.TokenFile, "vault.ca_cert": v.CACert}
	if v.AppRole != nil {
		files["vault.approle.role_id_file"] = v.AppRole.RoleIDFile
		files["vault.approle.secret_id_file"] = v.AppRole.SecretIDFile
		if v.AppRole.RoleIDFile == "" || v.AppRole.SecretIDFile == "" {
			ps.add("vault.approle", "role_id_file and secret_id_file are required")
		}
	}
	checkFiles(ps, files)
	for i, p := range v.AllowedPaths {
		if err := envs.CheckSecretPath(strings.Trim(p, "/")+"/x", nil); err != nil || strings.Trim(p, "/") == "" {
			ps.add(fmt.Sprintf("vault.allowed_paths[%d]", i), fmt.Sprintf("%q: auth/, sys/, identity/ and cubbyhole/ are never allowed", p))
		}
	}
}

func (c *Config) checkRollback(ps *problems) {
	if c.RollbackHold != "new_commit" && c.RollbackHold != "resume" {
		ps.add("rollback_hold", fmt.Sprintf("%q: new_commit or resume", c.RollbackHold))
	}
}

func (c *Config) checkDeploy(ps *problems) {
	if c.Deploy.KeepRevisions < 1 {
		ps.add("deploy.keep_revisions", "at least 1 (the live revision)")
	}
	if c.Deploy.Pulls < 1 {
		ps.add("deploy.pulls", "at least 1")
	}
}

func (c *Config) checkAPI(ps *problems) {
	if l := c.API.Listen; l != "off" && !strings.HasPrefix(l, "unix:/") {
		if err := api.CheckLoopback(l); err != nil {
			ps.add("api.listen", err.Error())
		}
	}
	checkFiles(ps, map[string]string{"api.webhook_secret_file": c.API.WebhookSecretFile})
}

func (c *Config) checkNotify(ps *problems) {
	for i, n := range c.Notify {
		f := fmt.Sprintf("notify[%d]", i)
		if n.Type != "webhook" && n.Type != "slack" {
			ps.add(f+".type", fmt.Sprintf("%q: webhook or slack", n.Type))
		}
		if (n.URL == "") == (n.URLFile == "") {
			ps.add(f, "set exactly one of url and url_file")
		}
		if n.URL != "" && !strings.HasPrefix(n.URL, "https://") && !strings.HasPrefix(n.URL, "http://") {
			ps.add(f+".url", "must be an http(s) URL")
		}
		checkFiles(ps, map[string]string{f + ".url_file": n.URLFile})
		for _, e := range n.Events {
			if !slices.Contains(notify.AllEvents, e) {
				ps.add(f+".events", fmt.Sprintf("%q: one of %s", e, strings.Join(notify.AllEvents, ", ")))
			}
		}
	}
}

func (c *Config) checkNginx(ps *problems) {
	if !filepath.IsAbs(c.Nginx.ConfDir) {
		ps.add("nginx.conf_dir", fmt.Sprintf("%q must be an absolute path", c.Nginx.ConfDir))
	}
	if len(c.Nginx.Command) == 0 {
		ps.add("nginx.command", "at least the nginx binary")
	}
}

func (c *Config) checkHAProxy(ps *problems) {
	if err := lb.CheckRuntimeAPI(c.HAProxy.RuntimeAPI); err != nil {
		ps.add("haproxy.runtime_api", err.Error())
	}
	if !filepath.IsAbs(c.HAProxy.ServersDir) {
		ps.add("haproxy.servers_dir", fmt.Sprintf("%q must be an absolute path", c.HAProxy.ServersDir))
	}
}

func (c *Config) checkPolicy(ps *problems) {
	checkPolicy(c.Policy, ps)
}

func checkPolicy(p envs.Policy, ps *problems) {
	for i, m := range p.AllowedBindMounts {
		if !filepath.IsAbs(m) {
			ps.add(fmt.Sprintf("policy.allowed_bind_mounts[%d]", i), fmt.Sprintf("%q must be an absolute path", m))
		}
	}
	for i, hp := range p.AllowedHostPorts {
		if _, err := envs.ParseHostPorts([]string{hp}); err != nil {
			ps.add(fmt.Sprintf("policy.allowed_host_ports[%d]", i), err.Error())
		}
	}
	if p.MinJobInterval < 0 {
		ps.add("policy.min_job_interval", fmt.Sprintf("%s is negative: a duration is 0 or more", p.MinJobInterval))
	}
}

func (c *Config) checkFleet(ps *problems) {
	if c.Fleet != nil {
		ps.addErr(c.Fleet.Validate())
	}
}

// checkFiles adds a problem for each named file that cannot be read.
func checkFiles(ps *problems, files map[string]string) {
	fields := make([]string, 0, len(files))
	for f := range files {
		fields = append(fields, f)
	}
	slices.Sort(fields)
	for _, field := range fields {
		if files[field] == "" {
			continue
		}
		if _, err := os.Stat(files[field]); err != nil {
			ps.add(field, err.Error())
		}
	}
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}
