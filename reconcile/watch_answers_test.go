package reconcile

import (
	"testing"

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
