package daemon

import (
	"encoding/json"
	"testing"
	"time"

	"berth.dev/berth/fleet"
	"berth.dev/berth/forge"
	"berth.dev/berth/reconcile"
)

// A host whose deploy was rolled back publishes it, and the forge's
// status for the fleet says "rolled back on <host>", not "refused"; a
// record written before the flag existed still reads (as refused).
func TestPassResult_ARolledBackDeployIsRolledBackOnTheForge(t *testing.T) {
	at := time.Date(2026, 12, 6, 18, 0, 0, 0, time.UTC)
	rec := reconcile.Record{Commit: "c2", Result: reconcile.ResultFailed, Class: "verdict", Reason: "servers: web never healthy",
		Changed: true, Done: []string{"create prod-web-2"}, Undone: []string{"remove prod-web-2"}, Finished: at}
	res := passResult(t.TempDir(), reconcile.Pass{Result: rec.Result, Record: rec})
	if !res.RolledBack || res.Revision != "c2" || res.Class != "verdict" {
		t.Fatalf("published result %+v, want c2 rolled back", res)
	}
	b, _ := json.Marshal(fleet.HostState{Host: "web-2", Live: &fleet.Commit{Revision: "c1"}, Result: &res})
	var rolled fleet.HostState
	if err := json.Unmarshal(b, &rolled); err != nil {
		t.Fatal(err)
	}
	var old fleet.HostState // an agent from before the flag
	if err := json.Unmarshal([]byte(`{"host":"web-2","live":{"revision":"c1"},"result":{"revision":"c2","class":"verdict","reason":"servers: web never healthy","at":"2026-12-06T18:00:00Z"}}`), &old); err != nil {
		t.Fatal(err)
	}
	live := hostView(fleet.HostStatus{HostState: fleet.HostState{Host: "web-1", Live: &fleet.Commit{Revision: "c1"}}, Alive: true})
	for _, tc := range []struct {
		st   fleet.HostState
		want string
	}{
		{rolled, "rolled back on web-2: servers: web never healthy"},
		{old, "refused on web-2: servers: web never healthy"},
	} {
		state, text := forge.Summarize("c2", []forge.HostView{live, hostView(fleet.HostStatus{HostState: tc.st, Alive: true})}, nil, nil)
		if state != forge.Failure || text != tc.want {
			t.Errorf("forge status %s %q, want failure %q", state, text, tc.want)
		}
	}
	rec.Undone = nil // failed before it changed anything
	if res := passResult(t.TempDir(), reconcile.Pass{Result: rec.Result, Record: rec}); res.RolledBack {
		t.Errorf("a deploy that undid nothing is published as rolled back: %+v", res)
	}
}
