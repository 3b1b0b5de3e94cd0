package forge

import (
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"strings"
)

// Kind of forge.
type Kind string

const (
	GitHub Kind = "github"
	GitLab Kind = "gitlab"
	// Gitea covers Forgejo too: the same API under /api/v1.
	Gitea Kind = "gitea"
)

// Config says which forge and repository to talk to, and with what token.
type Config struct {
	// Type is github, gitlab or gitea; "" detects it from RepoURL.
	Type Kind
	// APIURL is the API's base: https://api.github.com,
	// https://gitlab.example.org/api/v4, https://git.example.org/api/v1.
	// "" derives it from RepoURL (required for GitHub Enterprise).
	APIURL string
	// Repo is "owner/name" (GitLab: the project's full path, subgroups
	// included); "" derives it from RepoURL.
	Repo string
	// RepoURL is the config repository's clone URL (the agent's repo.url).
	RepoURL string
	// TokenFile holds the API token; it is read on every use, so a
	// rotated token is picked up without a restart.
	TokenFile string
	// UserAgent is sent with every request (default "berth").
	UserAgent string
}

// Resolved fills in Type, APIURL and Repo from RepoURL where they are
// empty, and checks the result.
func (c Config) Resolved() (Config, error) {
	var errs []error
	host, scheme, path, err := splitRepoURL(c.RepoURL)
	if err != nil && (c.Type == "" || c.APIURL == "" || c.Repo == "") {
		return c, fmt.Errorf("forge: %w; set forge.type, forge.api_url and forge.repo", err)
	}
	if c.Type == "" {
		c.Type = detect(host)
		if c.Type == "" {
			errs = append(errs, fmt.Errorf("forge.type: cannot tell the forge from the host %q: set github, gitlab or gitea", host))
		}
	}
	switch c.Type {
	case GitHub, GitLab, Gitea, "":
	default:
		errs = append(errs, fmt.Errorf("forge.type: %q is not github, gitlab or gitea", c.Type))
	}
	if c.APIURL == "" && c.Type != "" {
		switch {
		case c.Type == GitHub && host == "github.com":
			c.APIURL = "https://api.github.com"
		case c.Type == GitHub:
			errs = append(errs, errors.New("forge.api_url: required for GitHub Enterprise (https://HOST/api/v3)"))
		case c.Type == GitLab:
			c.APIURL = scheme + "://" + host + "/api/v4"
		case c.Type == Gitea:
			c.APIURL = scheme + "://" + host + "/api/v1"
		}
	}
	c.APIURL = strings.TrimRight(c.APIURL, "/")
	if c.APIURL != "" {
		u, err := url.Parse(c.APIURL)
		switch {
		case err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http"):
			errs = append(errs, fmt.Errorf("forge.api_url: %q is not an http(s) URL", c.APIURL))
		case u.User != nil:
			errs = append(errs, errors.New("forge.api_url: must not hold credentials (the token goes in forge.token_file)"))
		}
	}
	if c.Repo == "" {
		c.Repo = path
	}
	if err := checkRepo(c.Type, c.Repo); err != nil {
		errs = append(errs, err)
	}
	if c.TokenFile == "" {
		errs = append(errs, errors.New("forge.token_file: required"))
	}
	if c.UserAgent == "" {
		c.UserAgent = "berth"
	}
	return c, errors.Join(errs...)
}

// detect tells the forge from a host name: the public ones by name, and
// self-hosted ones whose name says what they run.
func detect(host string) Kind {
	h := strings.ToLower(host)
	switch {
	case h == "github.com" || strings.HasSuffix(h, ".github.com"):
		return GitHub
	case h == "gitlab.com" || strings.HasPrefix(h, "gitlab."):
		return GitLab
	case h == "codeberg.org" || strings.HasPrefix(h, "gitea.") || strings.HasPrefix(h, "forgejo."):
		return Gitea
	}
	return ""
}

var scpLike = regexp.MustCompile(`^(?:[^@/]+@)?([^:/]+):(.+)$`)

// splitRepoURL returns the host, the scheme the API is reached with
// (https, or http for an http clone URL) and the repository path without
// ".git" from a clone URL: https://host/owner/repo.git,
// ssh://git@host:22/owner/repo.git or git@host:owner/repo.git.
func splitRepoURL(raw string) (host, scheme, path string, err error) {
	if raw == "" {
		return "", "", "", errors.New("no repository URL")
	}
	scheme = "https"
	if u, perr := url.Parse(raw); perr == nil && u.Scheme != "" && u.Host != "" {
		host, path = u.Hostname(), u.Path
		if u.Scheme == "http" {
			scheme = "http"
			if u.Port() != "" {
				host = u.Host
			}
		} else if u.Scheme == "https" && u.Port() != "" {
			host = u.Host
		}
	} else if m := scpLike.FindStringSubmatch(raw); m != nil {
		host, path = m[1], m[2]
	} else {
		return "", "", "", fmt.Errorf("cannot read the repository URL %q", raw)
	}
	path = strings.TrimSuffix(strings.Trim(path, "/"), ".git")
	return host, scheme, path, nil
}

var repoSeg = regexp.MustCompile(`^[A-Za-z0-9_.][A-Za-z0-9_.-]*$`)

// checkRepo checks a repository path: owner/name on GitHub and Gitea, a
// group path of two or more segments on GitLab.
func checkRepo(kind Kind, repo string) error {
	segs := strings.Split(repo, "/")
	if repo == "" || len(segs) < 2 || (kind != GitLab && len(segs) != 2) {
		return fmt.Errorf("forge.repo: %q is not owner/name", repo)
	}
	for _, s := range segs {
		if !repoSeg.MatchString(s) || s == "." || s == ".." {
			return fmt.Errorf("forge.repo: %q has an invalid segment %q", repo, s)
		}
	}
	return nil
}
