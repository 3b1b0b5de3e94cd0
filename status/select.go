package status

import (
	"fmt"
	"slices"
	"strings"

	"berth.dev/berth/agentconfig"
)

// SelectEnvs is the env a command or an API query names, checked against
// the config, or every env the agent runs when it names none.
func SelectEnvs(cfg *agentconfig.Config, only string) ([]string, error) {
	if only == "" {
		return cfg.EnvNames(), nil
	}
	if !slices.Contains(cfg.EnvNames(), only) {
		return nil, fmt.Errorf("--env %s: the agent runs %s", only, strings.Join(cfg.EnvNames(), ", "))
	}
	return []string{only}, nil
}
