package envs

import (
	"fmt"
	"strings"
)

// NeverSecretMounts are Vault paths no secret reference may name, whatever
// the agent config says: they hold the agent's own token and identity
// (auth/token/lookup-self hands out the token itself), Vault's
// configuration, or per-token storage.
var NeverSecretMounts = []string{"auth", "sys", "identity", "cubbyhole"}

// CheckSecretPath says whether a secret reference may name path: never
// under NeverSecretMounts, and, when allowed lists prefixes (agent config
// vault.allowed_paths), only under one of them. Without allowed, the
// resolver also requires a KV mount (secrets.Vault): dynamic mounts must
// be listed.
func CheckSecretPath(path string, allowed []string) error {
	first, _, _ := strings.Cut(path, "/")
	for _, m := range NeverSecretMounts {
		if strings.EqualFold(first, m) {
			return fmt.Errorf("Vault path %s is refused: %s/ is never readable by a config repository", path, m)
		}
	}
	if len(allowed) > 0 && !UnderSecretPrefix(path, allowed) {
		return fmt.Errorf("Vault path %s is outside vault.allowed_paths", path)
	}
	return nil
}

// UnderSecretPrefix reports whether path is one of prefixes or below one,
// by whole path segments.
func UnderSecretPrefix(path string, prefixes []string) bool {
	for _, p := range prefixes {
		p = strings.Trim(p, "/")
		if p != "" && (path == p || strings.HasPrefix(path, p+"/")) {
			return true
		}
	}
	return false
}

func secretPathHint(allowed []string) string {
	if len(allowed) == 0 {
		return "secrets come from KV mounts; vault.allowed_paths in /etc/berth/agent.yaml lists the prefixes a repo may use"
	}
	return "allowed: " + strings.Join(allowed, ", ")
}
