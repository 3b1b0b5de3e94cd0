package status

import (
	"sync"
	"time"

	"berth.dev/berth/reconcile"
)

// Live is what the running agent knows beyond its state dir: the pass in
// flight and how the last one ended. STATUS= and /api/status show it;
// neither waits on Docker or on the pass. The daemon feeds it from the
// agent's hooks.
type Live struct {
	mu sync.Mutex
	a  Agent
}

// Agent is the running agent's view of one env.
type Agent struct {
	// Pass is the pass in flight, if any.
	Pass *Pass `json:"pass,omitempty"`
	// Last is how the latest pass ended.
	Last *Last `json:"last,omitempty"`
}

// Pass is the pass in flight.
type Pass struct {
	Commit  string          `json:"commit,omitempty"`
	Phase   reconcile.Phase `json:"phase"`
	Started time.Time       `json:"started"`
	// Waiting names the coordinated step the pass waits for (a fleet's:
	// its turn, the canaries, a migration on another host, etcd).
	Waiting reconcile.Wait `json:"waiting,omitempty"`
}

// Last is how the latest pass ended.
type Last struct {
	Result reconcile.Result `json:"result"`
	Class  string           `json:"class,omitempty"`
	Commit string           `json:"commit,omitempty"`
	Phase  reconcile.Phase  `json:"phase,omitempty"`
	Reason string           `json:"reason,omitempty"`
	Passes int              `json:"passes"` // passes in a row that ended this way
	Since  time.Time        `json:"since"`  // when the first of them ended
	Live   string           `json:"live,omitempty"`
}

// Progress notes a pass entering a step and says whether STATUS= changes.
func (l *Live) Progress(p reconcile.Progress) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	was := l.a.Pass
	l.a.Pass = &Pass{Commit: p.Commit, Phase: p.Phase, Started: p.Started, Waiting: p.Waiting}
	if was != nil && was.Waiting != p.Waiting {
		return true
	}
	return p.Phase.Deploys() && (was == nil || was.Phase != p.Phase)
}

// PassEnded notes how a pass ended and says whether STATUS= changes.
func (l *Live) PassEnded(p reconcile.Pass) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	r := p.Record
	was, wasPass := l.a.Last, l.a.Pass
	l.a.Pass = nil
	since := r.Finished
	if !p.New && was != nil && was.Result == r.Result {
		since = was.Since
	}
	l.a.Last = &Last{Result: r.Result, Class: r.Class, Commit: r.Commit, Phase: r.Phase, Reason: r.Reason, Passes: r.Count(), Since: since, Live: r.Live}
	deployed := wasPass != nil && wasPass.Phase.Deploys()
	return was == nil || deployed || was.Result != r.Result || was.Live != r.Live || was.Reason != r.Reason
}

// Snapshot is a copy of the view.
func (l *Live) Snapshot() *Agent {
	l.mu.Lock()
	defer l.mu.Unlock()
	a := l.a
	return &a
}
