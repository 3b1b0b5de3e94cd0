package imagesig

import (
	"errors"
	"net"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
)

// dockerHub are the names under which dockerd reaches Docker Hub's
// registry (go-containerregistry already turns docker.io into
// index.docker.io).
var dockerHub = map[string]bool{"docker.io": true, "index.docker.io": true, "registry-1.docker.io": true, "registry.hub.docker.com": true}

// canonicalRegistry is the spelling of a registry rules compare: the host
// in lower case without its trailing dot, without the default ports (:443,
// and :80 of a plain-HTTP registry), Docker Hub as index.docker.io. A
// name written another way reaches the same registry through dockerd, so
// it must meet the same rules; matching more spellings only adds checks.
func canonicalRegistry(reg string) string {
	host, port, err := net.SplitHostPort(reg)
	if err != nil { // no port
		host, port = reg, ""
	}
	host = strings.TrimSuffix(strings.ToLower(strings.Trim(host, "[]")), ".")
	if port == "443" || port == "80" {
		port = ""
	}
	if port == "" && dockerHub[host] {
		return "index.docker.io"
	}
	if strings.Contains(host, ":") { // IPv6
		host = "[" + host + "]"
	}
	if port != "" {
		return host + ":" + port
	}
	return host
}

// canonicalRepo is a parsed repository name with its registry spelt
// canonically (canonicalRegistry) and its path in lower case (dockerd
// takes no capitals there).
func canonicalRepo(repo name.Repository) string {
	return canonicalRegistry(repo.RegistryStr()) + "/" + strings.ToLower(repo.RepositoryStr())
}

// repoOf is ref's repository as rules compare it (canonicalRepo), or an
// error when ref does not parse as an image reference.
func repoOf(ref string) (string, error) {
	r, err := name.ParseReference(ref)
	if err != nil {
		return "", err
	}
	return canonicalRepo(r.Context()), nil
}

// normalisePrefix turns a rule's prefix into the form repoOf gives: the
// registry as go-containerregistry names it (docker.io is
// index.docker.io), spelt canonically, the path as written. A prefix
// without a slash is a registry; Docker Hub's official images are
// docker.io/library/NAME, as "nginx" parses.
func normalisePrefix(p string) (string, error) {
	p = strings.TrimSuffix(strings.TrimSpace(p), "/")
	if p == "*" {
		return "", nil
	}
	if p == "" {
		return "", errors.New(`a registry or repository prefix is required ("*" for every image)`)
	}
	reg, path, _ := strings.Cut(p, "/")
	r, err := name.NewRegistry(reg)
	if err != nil {
		return "", err
	}
	if path == "" {
		return canonicalRegistry(r.Name()), nil
	}
	// Checked as a repository name; kept as written (Docker Hub would
	// add library/ to a one-component path).
	if _, err := name.NewRepository(r.Name() + "/" + path); err != nil {
		return "", err
	}
	return canonicalRegistry(r.Name()) + "/" + strings.ToLower(path), nil
}
