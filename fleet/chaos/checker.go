package chaos

import (
	"fmt"
	"sort"
	"time"
)

// The checker reads only the ledgers (side effects, what agents were
// told, faults, operations) and etcd's final state and history, and
// verifies (issue 18):
//
//   - migrations: none ran twice, unless idempotent and taken over after
//     the holder's lease was gone with no result written under its token,
//     and not while the first run's result could have been written; a
//     halt caused by an interrupted mark is lifted when the run's own
//     late result supersedes the mark (checker_mig.go);
//   - jobs: every scheduled time ran at most once, and every time no
//     fault covered ran exactly once (checker_jobs.go);
//   - deploys: max_parallel was never exceeded at any instant (a deploy
//     stops counting once its host's lease is gone: docs/fleet.md), and a
//     halted revision never started after its halt (checker_deploy.go);
//   - at the end: nothing stayed "running" with no run behind it, the
//     fleet converged on the last revision within its bound, and etcd's
//     key count stayed within the documented budget (checker_end.go).

// Input is what the checker reads.
type Input struct {
	Events  []Event
	Final   map[string]KV // the env's keys at the end, agents still running
	FinalAt time.Time
	History []Change // every change under Root, in order
	Root    string   // the env's key prefix, with a trailing slash

	TTL, Timeout   time.Duration
	MaxParallel    int
	KeepRollouts   int
	KeepMigrations int
	Jobs           []JobSpec
	FinalRev       string
	Converged      error // nil if the fleet converged within its bound
}

// Violation is one broken promise.
type Violation struct {
	Property string
	At       time.Time
	Detail   string
}

func (v Violation) String() string {
	return fmt.Sprintf("%s [%s] %s", v.Property, v.At.Format("15:04:05.000"), v.Detail)
}

// Result is the checker's verdict and what the run did.
type Result struct {
	Violations []Violation
	Ops        map[string]int // operations by kind
	Faults     map[string]int // faults by kind
	MaxKeys    int
	MaxBytes   int // keys and values, at most
	Hosts      int
	Budget     int
	Notes      []string // documented exceptions seen (not violations)
	// Unanswered are the periods in which etcd answered not even the
	// harness's own probe, and no fault of etcd was injected (an
	// overloaded machine): etcd was away all the same, and they cover
	// what a cluster fault would.
	Unanswered []time.Duration
}

type interval struct {
	from, to time.Time
	kind     string
	target   string
}

func (iv interval) overlaps(from, to time.Time) bool { return iv.from.Before(to) && from.Before(iv.to) }

// checker is one check's working state.
type checker struct {
	in     Input
	res    *Result
	faults []interval
	start  time.Time // faults_begin
	end    time.Time // faults_end

	lastProbe time.Time // the last etcd_rev sample
}

// etcdUnanswered is the kind of a period in which etcd answered not even
// the harness's probe: seen, not injected.
const etcdUnanswered = "etcd-unanswered"

// Check runs every property over in.
func Check(in Input) *Result {
	c := &checker{in: in, res: &Result{Ops: map[string]int{}, Faults: map[string]int{}}}
	c.index()
	c.migrations()
	c.jobs()
	c.deploys()
	c.ending()
	sort.SliceStable(c.res.Violations, func(i, j int) bool { return c.res.Violations[i].At.Before(c.res.Violations[j].At) })
	return c.res
}

func (c *checker) violate(prop string, at time.Time, format string, args ...any) {
	c.res.Violations = append(c.res.Violations, Violation{Property: prop, At: at, Detail: fmt.Sprintf(format, args...)})
}

// index pairs fault starts and ends and counts what happened.
func (c *checker) index() {
	open := map[string][]time.Time{}
	for _, e := range c.in.Events {
		switch e.Kind {
		case "etcd_rev":
			c.probe(e.Time())
		case "fault_start":
			open[e.Outcome+"/"+e.Target] = append(open[e.Outcome+"/"+e.Target], e.Time())
			c.res.Faults[e.Outcome]++
		case "fault_end":
			k := e.Outcome + "/" + e.Target
			if len(open[k]) > 0 {
				c.faults = append(c.faults, interval{from: open[k][0], to: e.Time(), kind: e.Outcome, target: e.Target})
				open[k] = open[k][1:]
			}
		case "faults_begin":
			c.start = e.Time()
		case "faults_end":
			c.end = e.Time()
		case "commit":
			c.res.Ops["commit"]++
		case "op":
			c.res.Ops[e.Outcome]++
		case "deploy_start", "migrate_start", "job_start", "job_skip", "held", "refused", "session_lost":
			c.res.Ops[e.Kind]++
		}
	}
	for k, starts := range open {
		for _, s := range starts {
			kind, target, _ := cut(k, "/")
			c.faults = append(c.faults, interval{from: s, to: c.in.FinalAt, kind: kind, target: target})
		}
	}
	for _, g := range c.faults {
		if g.kind != etcdUnanswered {
			continue
		}
		injected := false
		for _, f := range c.faults {
			switch f.kind {
			case FaultMemberKill, FaultLeaderChange, FaultOutage:
				injected = injected || f.overlaps(g.from, g.to)
			}
		}
		if !injected {
			c.res.Unanswered = append(c.res.Unanswered, g.to.Sub(g.from))
		}
	}
}

// unanswered is how long etcd may leave the harness's probe (a read every
// half second, each with a 1 s timeout) without an answer before that
// counts as etcd away.
const unanswered = 2500 * time.Millisecond

// probe notes an answer to the harness's probe of etcd at at: a gap since
// the previous answer longer than unanswered is a period etcd was away.
func (c *checker) probe(at time.Time) {
	if !c.lastProbe.IsZero() && at.Sub(c.lastProbe) > unanswered {
		c.faults = append(c.faults, interval{from: c.lastProbe, to: at, kind: etcdUnanswered, target: "all"})
	}
	c.lastProbe = at
}

func cut(s, sep string) (string, string, bool) {
	for i := 0; i+len(sep) <= len(s); i++ {
		if s[i:i+len(sep)] == sep {
			return s[:i], s[i+len(sep):], true
		}
	}
	return s, "", false
}

// hostFaulted reports whether a fault that cuts host off (or stops it)
// overlapped [from, to].
func (c *checker) hostFaulted(host string, from, to time.Time) bool {
	for _, f := range c.faults {
		if hostFaults[f.kind] && f.target == host && f.overlaps(from, to) {
			return true
		}
	}
	return false
}

// covered reports whether a fault of etcd itself (a member killed, a
// leader change, the whole cluster down) overlapped [from, to]. A fault
// of one agent covers only what that agent took on (hostFaulted): the
// others must go on working.
func (c *checker) covered(from, to time.Time) bool {
	for _, f := range c.faults {
		switch f.kind {
		case FaultMemberKill, FaultLeaderChange, FaultOutage, etcdUnanswered:
			if f.overlaps(from, to) {
				return true
			}
		}
	}
	return false
}

// stops are the periods host was SIGSTOPped.
func (c *checker) stops(host string) []interval {
	var out []interval
	for _, f := range c.faults {
		if f.kind == FaultStop && f.target == host {
			out = append(out, f)
		}
	}
	return out
}

// procEnd is when the agent process (host, pid) that wrote an event at
// at ended: its stop, its SIGKILL, or the end of the run.
func (c *checker) procEnd(host string, pid int, at time.Time) time.Time {
	for _, e := range c.in.Events {
		if e.Host == host && e.Pid == pid && e.Kind == "stop" && !e.Time().Before(at) {
			return e.Time()
		}
	}
	for _, f := range c.faults {
		if f.kind == FaultKill && f.target == host && !f.from.Before(at) {
			return f.from
		}
	}
	return c.in.FinalAt
}
