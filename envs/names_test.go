package envs

import (
	"slices"
	"strings"
	"testing"
)

// Env prod's service eu-web would take prod-eu-web-1, the name env
// prod-eu's web needs: on a host that runs both, prod is refused, naming
// the service; alone, or beside envs whose names cannot meet, it loads.
func TestLoad_ContainerNamesOfTwoEnvsOfTheHostMustNotMeet(t *testing.T) {
	img := "r/app@" + d1
	compose := "services:\n  eu-web: {image: " + img + "}\n  eu: {image: " + img + "}\n  api: {image: " + img + "}\n" +
		"x-berth:\n  jobs:\n    web-nightly: {schedule: '@daily', service: api, command: [x]}\n"
	f := "envs/prod/compose.yaml"
	tests := []struct {
		name string
		host []string
		want []string
	}{
		{name: "alone", host: []string{"prod"}},
		{name: "beside envs whose names cannot meet", host: []string{"prod", "staging", "prodx", "prod_eu"}},
		{name: "beside prod-eu", host: []string{"prod", "prod-eu"}, want: []string{
			f + ":eu-web:: its containers (prod-eu-web-1, …) take the names env prod-eu's containers need (prod-eu-…) (rename it so that it does not begin with \"eu-\", or run envs prod and prod-eu on different hosts)",
		}},
		{name: "beside prod-job", host: []string{"prod-job", "prod"}, want: []string{
			f + "::x-berth.jobs.web-nightly: its runs' containers (prod-job-web-nightly-…) take names env prod-job's containers need (prod-job-…) (rename it so that it does not begin with \"job-\", or run envs prod and prod-job on different hosts)",
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, ps := load(t, map[string]string{f: compose}, Options{HostEnvs: tc.host})
			var got []string
			for _, p := range ps {
				got = append(got, p.String())
			}
			if !slices.Equal(got, tc.want) {
				t.Fatalf("problems:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tc.want, "\n"))
			}
		})
	}
}

// A top-level x-berth.lb in an env with no server switches nothing: it is
// refused (docs/config-repo.md), as one no server uses.
func TestLoad_TopLevelLBWithoutAServerIsRefused(t *testing.T) {
	f := "envs/prod/compose.yaml"
	_, ps := load(t, map[string]string{f: "services:\n  w: {image: r/app@" + d1 + "}\nx-berth:\n  lb: {type: nginx, upstream: app}\n"}, Options{})
	if len(ps) != 1 || ps[0].String() != f+"::x-berth.lb: the env has no server: the balancer would switch nothing (remove the top-level x-berth.lb, or give the service behind it x-berth.role: server)" {
		t.Fatalf("problems: %v", ps)
	}
}

// A newline or carriage return in any part of a problem is written as \n
// or \r: one problem is one line, and no value forges a line of its own.
func TestProblem_IsOneLine(t *testing.T) {
	p := Problem{File: "envs/prod/compose.yaml", Service: "w\nenvs/prod: ok (1 service, 0 jobs)", Field: "labels.a\rb", Message: "label \"x\ny\" is refused", Hint: "h\n"}
	if got := p.String(); strings.ContainsAny(got, "\n\r") || !strings.Contains(got, `w\nenvs/prod: ok`) || !strings.Contains(got, `labels.a\rb`) {
		t.Fatalf("%q", got)
	}
}
