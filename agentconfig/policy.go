package agentconfig

import (
	"fmt"
	"os"
	"strings"

	"go.yaml.in/yaml/v4"

	"berth.dev/berth/envs"
)

// policyKeys is the part of an agent.yaml that decides what a revision
// may ask for: the rest (repo, Vault address, state dir) is the host's.
type policyKeys struct {
	Policy envs.Policy `yaml:"policy"`
	Vault  struct {
		AllowedPaths []string `yaml:"allowed_paths"`
	} `yaml:"vault"`
	Nginx struct {
		ConfDir string `yaml:"conf_dir"`
	} `yaml:"nginx"`
}

// ReadPolicy reads the policy of an agent.yaml for `berth validate
// --policy`: the policy: block strictly (a typo must not loosen or tighten
// it silently), and the policy-related keys of vault: and nginx:. The
// host's other keys are not looked at.
func ReadPolicy(path string) (envs.Options, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return envs.Options{}, fmt.Errorf("read policy: %w", err)
	}
	var doc struct {
		Policy yaml.Node `yaml:"policy"`
	}
	if err := yaml.Unmarshal(b, &doc); err != nil {
		return envs.Options{}, fmt.Errorf("%s:\n%w", path, Problems{{Message: strings.TrimPrefix(err.Error(), "yaml: ")}})
	}
	var ps problems
	if doc.Policy.Kind != 0 {
		var p envs.Policy
		checkNode(&doc.Policy, &p, "policy", &ps)
	}
	var k policyKeys
	if len(ps.list) == 0 {
		if err := yaml.Unmarshal(b, &k); err != nil {
			ps.add("", decodeMessage(err))
		}
		checkPolicy(k.Policy, &ps)
	}
	if len(ps.list) > 0 {
		return envs.Options{}, fmt.Errorf("%s:\n%w", path, ps.list)
	}
	return envs.Options{Policy: k.Policy, SecretPaths: k.Vault.AllowedPaths, LB: envs.LBOptions{ConfDir: k.Nginx.ConfDir}}, nil
}
