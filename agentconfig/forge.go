package agentconfig

import (
	"fmt"
	"net/url"
	"strings"

	"berth.dev/berth/forge"
)

// ForgeConfig is the forge: block (docs/forge.md): commit statuses on
// the config repository's forge, and, opt-in, promotion PRs.
type ForgeConfig struct {
	// Type is github, gitlab or gitea (Forgejo too); default: detected
	// from repo.url.
	Type string `yaml:"type"`
	// APIURL is the API's base; default from repo.url (required for
	// GitHub Enterprise).
	APIURL string `yaml:"api_url"`
	// Repo is owner/name (GitLab: the project path); default from
	// repo.url.
	Repo string `yaml:"repo"`
	// TokenFile holds the status token (read on every use).
	TokenFile string `yaml:"token_file"`
	// Context names each env's status; "{env}" is the env (default
	// "berth/{env}").
	Context string `yaml:"context"`
	// TargetURL is linked from every status: the status page.
	TargetURL string `yaml:"target_url"`
	// Promote, when set, lets envs with x-berth.promote open promotion
	// PRs, with a token of its own.
	Promote *ForgePromote `yaml:"promote"`
}

// ForgePromote is forge.promote.
type ForgePromote struct {
	// TokenFile holds the promotion token: it may push to
	// berth/promote-* branches and open PRs, which the status token may
	// not.
	TokenFile string `yaml:"token_file"`
}

// ForgeClient returns the forge client config of the status token (tokenFile "") or
// of another token (the promotion's).
func (c *Config) ForgeClient(tokenFile string) forge.Config {
	f := c.Forge
	if tokenFile == "" {
		tokenFile = f.TokenFile
	}
	return forge.Config{Type: forge.Kind(f.Type), APIURL: f.APIURL, Repo: f.Repo, RepoURL: c.Repo.URL, TokenFile: tokenFile}
}

func (c *Config) checkForge(ps *problems) {
	f := c.Forge
	if f == nil {
		return
	}
	if _, err := c.ForgeClient("").Resolved(); err != nil {
		for _, line := range strings.Split(err.Error(), "\n") {
			field, msg, ok := strings.Cut(line, ": ")
			if !ok || !strings.HasPrefix(field, "forge.") {
				field, msg = "forge", line
			}
			ps.add(field, msg)
		}
	}
	if len(c.EnvNames()) > 1 && !strings.Contains(f.Context, "{env}") {
		ps.add("forge.context", fmt.Sprintf("%q must hold {env}: this host runs several envs, each with its own status", f.Context))
	}
	if f.TargetURL != "" {
		if u, err := url.Parse(f.TargetURL); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.User != nil {
			ps.add("forge.target_url", fmt.Sprintf("%q is not an http(s) URL without credentials", f.TargetURL))
		}
	}
	files := map[string]string{"forge.token_file": f.TokenFile}
	if p := f.Promote; p != nil {
		switch {
		case p.TokenFile == "":
			ps.add("forge.promote.token_file", "required: promotion uses a token of its own (it may push; the status token may not)")
		case p.TokenFile == f.TokenFile:
			ps.add("forge.promote.token_file", "must not be forge.token_file: promotion uses a token of its own (it may push; the status token may not)")
		}
		files["forge.promote.token_file"] = p.TokenFile
	}
	checkFiles(ps, files)
}
