package envs

import (
	"fmt"
	"maps"
	"slices"
	"strings"
)

// checkNameClash refuses the names of this env's containers that another
// env of the host makes too. Docker names a container PROJECT-SERVICE-N
// (a one-shot PROJECT-SERVICE-run-REV, a job's run PROJECT-job-JOB-RUN),
// and with several envs each env's project is its name: env prod's
// service eu-web and env prod-eu's service web both want prod-eu-web-1.
// The env whose name is the shorter one of the pair is refused, with the
// service or job that runs into the other env's names; the other env
// never starts a name this one could take.
func checkNameClash(c *collector, env *Env, hostEnvs []string) {
	self := env.Project.Name
	for _, other := range hostEnvs {
		rest, ok := strings.CutPrefix(other, self+"-")
		if other == env.Name || !ok || rest == "" {
			continue
		}
		clash := rest + "-"
		hint := fmt.Sprintf("rename it so that it does not begin with %q, or run envs %s and %s on different hosts", clash, self, other)
		for _, s := range env.Services {
			if strings.HasPrefix(s.Name, clash) {
				c.service(s.Name, "", fmt.Sprintf("its containers (%s-%s-1, …) take the names env %s's containers need (%s-…)", self, s.Name, other, other), hint)
			}
		}
		if rest == "job" || strings.HasPrefix(rest, "job-") {
			for _, name := range slices.Sorted(maps.Keys(env.Jobs)) {
				if strings.HasPrefix("job-"+name+"-", clash) {
					c.top(extKey+".jobs."+name, fmt.Sprintf("its runs' containers (%s-job-%s-…) take names env %s's containers need (%s-…)", self, name, other, other), hint)
				}
			}
		}
	}
}
