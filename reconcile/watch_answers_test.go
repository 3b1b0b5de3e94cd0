package reconcile

import (
	"testing"

	"berth.dev/berth/internal/testenv"
	"berth.dev/berth/lb"
)

// The watch counts the new servers HAProxy's own checks hold DOWN ("DOWN",
// "DOWN 1/2" while coming back), beside their answers.
func TestSumAnswers_CountsServersTheBalancerHoldsDown(t *testing.T) {
	stats := []lb.ServerStat{
		{Addr: "127.0.0.1:1", Status: "DOWN", Responses: 10, Responses5xx: 2},
		{Addr: "127.0.0.1:2", Status: "DOWN 1/2", Responses: 5, ConnErrors: 1},
		{Addr: "127.0.0.1:3", Status: "UP", Responses: 7},
		{Addr: "127.0.0.1:9", Status: "DOWN", Responses: 100}, // not a new server
	}
	got := sumAnswers(stats, []string{"127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3"})
	if *got != (answerStats{responses: 23, bad: 3, servers: 3, down: 2}) {
		t.Fatalf("sumAnswers = %+v", *got)
	}
}

// turnBadInWatch makes revision's web servers turn bad (the test app's
// APP_UNHEALTHY_WHEN or APP_FAIL_WHEN naming /unhealthy) as the deploy's
// watch begins: after the switch, however slow a busy machine made the
// gates before it.
func (s *stackHost) turnBadInWatch(revision string) {
	s.deployer.BeforePhase = func(p Phase, _ *Report) error {
		if p != PhaseWatch {
			return nil
		}
		var ids []string
		ms, err := s.engine.List(s.t.Context(), s.name)
		if err != nil {
			return err
		}
		for _, m := range ms {
			if m.Service == "web" && m.Revision == revision {
				ids = append(ids, m.ID)
			}
		}
		testenv.TouchInContainers(s.t, s.d.Client, "/unhealthy", ids...)
		return nil
	}
	s.t.Cleanup(func() { s.deployer.BeforePhase = nil })
}
