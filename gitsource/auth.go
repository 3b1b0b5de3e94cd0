package gitsource

import (
	"errors"
	"fmt"
	"net/url"
	"os"
	"regexp"
	"strings"

	"github.com/go-git/go-git/v5/plumbing/transport"
	githttp "github.com/go-git/go-git/v5/plumbing/transport/http"
	gitssh "github.com/go-git/go-git/v5/plumbing/transport/ssh"
)

// Auth is how the agent authenticates to the config repository. Secrets are
// named by file, re-read on every use, so a rotated token or key needs no
// restart and never sits in the agent config.
type Auth struct {
	// HTTPS: basic auth with Username and the content of TokenFile as the
	// password (a personal access or deploy token). Username defaults to
	// "git", which most forges accept with a token.
	Username  string `yaml:"username"`
	TokenFile string `yaml:"token_file"`
	// SSH: a private key file and the known_hosts file its host key must
	// be in. An unknown or changed host key is refused.
	SSHKeyFile     string `yaml:"ssh_key_file"`
	KnownHostsFile string `yaml:"known_hosts_file"`
}

// endpoint is a parsed repository URL with credentials moved out of it.
type endpoint struct {
	url      string // as given to go-git, without userinfo for http(s)
	safe     string // for logs and errors
	scheme   string // https, http, ssh, file
	user     string // from the URL, if any
	password string // from the URL, if any (discouraged; use token_file)
}

var scpLike = regexp.MustCompile(`^([A-Za-z0-9._-]+)@([A-Za-z0-9.-]+):(.+)$`)

// parseEndpoint accepts https://, http://, ssh://, file:// and scp-like
// git@host:path URLs.
func parseEndpoint(raw string) (endpoint, error) {
	if m := scpLike.FindStringSubmatch(raw); m != nil && !strings.Contains(raw, "://") {
		return endpoint{url: raw, safe: raw, scheme: "ssh", user: m[1]}, nil
	}
	u, err := url.Parse(raw)
	if err != nil {
		return endpoint{}, fmt.Errorf("repo url: %w", errors.New(sanitizeText(err.Error())))
	}
	e := endpoint{scheme: u.Scheme}
	switch u.Scheme {
	case "https", "http", "ssh":
		if u.Host == "" {
			return endpoint{}, fmt.Errorf("repo url %s has no host", Sanitize(raw))
		}
	case "file":
		if u.Path == "" {
			return endpoint{}, fmt.Errorf("repo url %s has no path", raw)
		}
	default:
		return endpoint{}, fmt.Errorf("repo url %s: unsupported scheme %q (https, ssh, file)", Sanitize(raw), u.Scheme)
	}
	if u.User != nil {
		e.user = u.User.Username()
		e.password, _ = u.User.Password()
		if u.Scheme != "ssh" {
			u.User = nil
		}
	}
	e.url = u.String()
	e.safe = Sanitize(raw)
	return e, nil
}

// authMethod builds go-git's auth for one network call.
func (e endpoint) authMethod(a Auth) (transport.AuthMethod, error) {
	switch e.scheme {
	case "https", "http":
		user, pass := e.user, e.password
		if a.TokenFile != "" {
			b, err := os.ReadFile(a.TokenFile)
			if err != nil {
				return nil, fmt.Errorf("read token file: %w", err)
			}
			pass = strings.TrimSpace(string(b))
			if a.Username != "" {
				user = a.Username
			}
			if user == "" {
				user = "git"
			}
		}
		if user == "" && pass == "" {
			return nil, nil
		}
		return &githttp.BasicAuth{Username: user, Password: pass}, nil
	case "ssh":
		if a.SSHKeyFile == "" {
			return nil, errors.New("ssh repo url needs auth.ssh_key_file")
		}
		if a.KnownHostsFile == "" {
			return nil, errors.New("ssh repo url needs auth.known_hosts_file: unknown host keys are never accepted")
		}
		user := e.user
		if user == "" {
			user = "git"
		}
		keys, err := gitssh.NewPublicKeysFromFile(user, a.SSHKeyFile, "")
		if err != nil {
			return nil, fmt.Errorf("read ssh key: %w", err)
		}
		cb, err := gitssh.NewKnownHostsCallback(a.KnownHostsFile)
		if err != nil {
			return nil, fmt.Errorf("read known_hosts: %w", err)
		}
		keys.HostKeyCallback = cb
		return keys, nil
	}
	return nil, nil
}

var userinfoRe = regexp.MustCompile(`(?i)([a-z][a-z0-9+.-]*://)[^/@\s]*@`)

// Sanitize removes credentials from a URL for logs and errors.
func Sanitize(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.User == nil {
		return sanitizeText(raw)
	}
	if u.Scheme == "ssh" {
		u.User = url.User(u.User.Username()) // a user name is not a secret
	} else {
		u.User = nil
	}
	return u.String()
}

// sanitizeText removes userinfo from any URL inside s (error texts from
// libraries may quote the URL they were given).
func sanitizeText(s string) string { return userinfoRe.ReplaceAllString(s, "$1") }
