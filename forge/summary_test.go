package forge

import (
	"testing"
	"time"
)

func TestSummarize_OneStatusPerEnv(t *testing.T) {
	const rev, old = "r2", "r1"
	at := time.Unix(1767225600, 0)
	host := func(name string, live string, mod func(*HostView)) HostView {
		h := HostView{Host: name, Alive: true, Live: live}
		if mod != nil {
			mod(&h)
		}
		return h
	}
	ro := &RolloutView{Canaries: []string{"web-1"}, MaxParallel: 2}
	for _, tc := range []struct {
		name  string
		hosts []HostView
		halts []HaltView
		ro    *RolloutView
		state State
		desc  string
	}{
		{name: "one host deploying", hosts: []HostView{host("web-1", old, func(h *HostView) { h.Deploying, h.Phase = rev, "servers" })},
			state: Pending, desc: "deploying on web-1: servers"},
		{name: "one host waiting for a slot", hosts: []HostView{host("web-1", old, func(h *HostView) { h.Deploying, h.Waiting = rev, "a rollout slot" })},
			state: Pending, desc: "waiting on web-1: a rollout slot"},
		{name: "one host live", hosts: []HostView{host("web-1", rev, nil)}, state: Success, desc: "live on web-1"},
		{name: "one host rolled back", hosts: []HostView{host("web-1", old, func(h *HostView) {
			h.Failed = rev
			h.Result = &Outcome{Revision: rev, Class: "verdict", Reason: "web unhealthy 2.8 s after the switch", RolledBack: true}
		})}, state: Failure, desc: "rolled back on web-1: web unhealthy 2.8 s after the switch"},
		{name: "one host refused before any change", hosts: []HostView{host("web-1", old, func(h *HostView) {
			h.Result = &Outcome{Revision: rev, Class: "verdict", Reason: "envs/prod/compose.yaml:web:privileged: not allowed"}
		})}, state: Failure, desc: "refused on web-1: envs/prod/compose.yaml:web:privileged: not allowed"},
		{name: "one host in an outage", hosts: []HostView{host("web-1", old, func(h *HostView) {
			h.Result = &Outcome{Revision: rev, Class: "outage", Reason: "registry unreachable"}
		})}, state: Pending, desc: "waiting on web-1: registry unreachable"},
		{name: "one host held", hosts: []HostView{host("web-1", old, func(h *HostView) {
			h.Result = &Outcome{Revision: rev, Class: "held", Reason: "revision halted fleet-wide"}
		})}, state: Error, desc: "held on web-1: revision halted fleet-wide"},
		{name: "fleet: canary deploying", ro: ro, hosts: []HostView{
			host("web-1", old, func(h *HostView) { h.Deploying = rev }), host("web-2", old, nil), host("web-3", old, nil),
		}, state: Pending, desc: "live on 0/3 hosts, wave 1 (canary)"},
		{name: "fleet: wave 2 with a gone host not counted", ro: ro, hosts: []HostView{
			host("web-1", rev, nil), host("web-2", rev, nil), host("web-3", old, nil), host("web-4", old, nil), host("web-5", old, nil),
			{Host: "web-9", Alive: false, Live: old},
		}, state: Pending, desc: "live on 2/5 hosts, wave 2, canary ok"},
		{name: "fleet: all live", ro: ro, hosts: []HostView{host("web-1", rev, nil), host("web-2", rev, nil), host("web-3", rev, nil)},
			state: Success, desc: "live on 3/3 hosts"},
		{name: "fleet: halted", ro: ro, hosts: []HostView{host("web-1", old, nil), host("web-2", old, nil)},
			halts: []HaltView{{Revision: rev, Host: "web-1", Reason: "migration failed"}}, state: Error, desc: "held: halted fleet-wide after web-1: migration failed"},
		{name: "fleet: a host waiting in an outage", hosts: []HostView{
			host("web-1", rev, nil), host("web-2", old, func(h *HostView) {
				h.Result = &Outcome{Revision: rev, Class: "outage", Reason: "etcd unreachable", At: at}
			}),
		}, state: Pending, desc: "live on 1/2 hosts; web-2 waiting: etcd unreachable"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st, d := Summarize(rev, tc.hosts, tc.halts, tc.ro)
			if st != tc.state || d != tc.desc {
				t.Errorf("got %s %q, want %s %q", st, d, tc.state, tc.desc)
			}
		})
	}
}

func TestTarget_TheLatestRevisionInFlight(t *testing.T) {
	at := time.Unix(1767225600, 0)
	hosts := []HostView{
		{Host: "a", Alive: true, Result: &Outcome{Revision: "r1", At: at}},
		{Host: "b", Alive: true, Deploying: "r2", Started: at.Add(time.Minute)},
		{Host: "c", Alive: false, Deploying: "r3", Started: at.Add(time.Hour)},
	}
	if got := Target(hosts); got != "r2" {
		t.Errorf("target %q, want r2 (the gone host does not count)", got)
	}
}
