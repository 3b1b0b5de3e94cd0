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

// JobEnv is the env a job command acts on: --env, else the one env whose
// live revision has the job.
func JobEnv(cfg *agentconfig.Config, only, job string) (string, error) {
	if only != "" || len(cfg.EnvNames()) == 1 {
		return OneEnv(cfg, only)
	}
	var has []string
	for _, env := range cfg.EnvNames() {
		l, err := cfg.JobStore(env).Listing()
		if err != nil {
			continue
		}
		for _, e := range l.Jobs {
			if e.Name == job {
				has = append(has, env)
			}
		}
	}
	switch len(has) {
	case 1:
		return has[0], nil
	case 0:
		return "", fmt.Errorf("no env's live revision has a job %q (berth jobs list)", job)
	}
	return "", fmt.Errorf("envs %s all have a job %q: name one with --env", strings.Join(has, ", "), job)
}

// OneEnv is the env a command that changes something acts on: --env, or
// the only env the agent runs.
func OneEnv(cfg *agentconfig.Config, only string) (string, error) {
	names, err := SelectEnvs(cfg, only)
	if err != nil {
		return "", err
	}
	if len(names) > 1 {
		return "", fmt.Errorf("the agent runs several envs (%s): name one with --env", strings.Join(names, ", "))
	}
	return names[0], nil
}
