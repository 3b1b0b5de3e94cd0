package reconcile

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"syscall"
	"testing"

	"github.com/hashicorp/go-hclog"

	"berth.dev/berth/envs"
	"berth.dev/berth/internal/failure"
)

// passes counts what the agent reports: OnPass calls and notifications.
type passes struct {
	got []Pass
}

func (p *passes) on(a *Agent) { a.OnPass = func(x Pass) { p.got = append(p.got, x) } }

// journalPasses is how many passes the journal stands for (records and
// the passes counted into them).
func journalPasses(t *testing.T, j *Journal) int {
	t.Helper()
	recs, err := j.List()
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, r := range recs {
		n += r.Count()
	}
	return n
}

// Every pass that ends, of every class, leaves exactly one journal entry
// (a record of its own, or one more pass counted into the newest), one
// report to OnPass (the metric), and at most one notification; an outage
// is returned to the poller and never marks the commit failed; a verdict
// marks it and is not returned.
func TestAgent_EveryPassLeavesOneRecordOneReportAtMostOneNotification(t *testing.T) {
	host := newFakeHost()
	src := &fakeSource{head: "c1", refuse: map[string]error{}}
	a, _ := newAgent(t, src, host)
	sec := &fakeSecrets{digest: "d1"}
	a.Deployer.Secrets = sec
	load := map[string]func() (*envs.Env, error){}
	a.Load = func(_ context.Context, rev *Revision) (*envs.Env, error) {
		if f := load[rev.Commit]; f != nil {
			return f()
		}
		return fakeEnv(rev.Commit), nil
	}
	var rep passes
	rep.on(a)
	refused := errors.New("connection refused")
	connRefused := fmt.Errorf("dial tcp 127.0.0.1:5000: %w", syscall.ECONNREFUSED)

	steps := []struct {
		name       string
		setup      func()
		ctx        func() (context.Context, context.CancelFunc)
		wantResult Result
		wantClass  failure.Class
		wantErr    bool // returned to the poller
		wantNew    bool
		wantNotify bool
		wantFailed string // state.Failed afterwards
		wantLive   string
	}{
		{name: "first deploy", wantResult: ResultSucceeded, wantNew: true, wantNotify: true, wantLive: "c1"},
		{name: "nothing to do", wantResult: ResultUnchanged, wantLive: "c1"}, // counted into the deploy's record
		{name: "git down", setup: func() { src.listErr = fmt.Errorf("list https://git.example.org/config.git: %w", refused) },
			wantResult: ResultOutage, wantClass: failure.Outage, wantErr: true, wantNew: true, wantLive: "c1"},
		{name: "git still down", wantResult: ResultOutage, wantClass: failure.Outage, wantErr: true, wantLive: "c1"},
		{name: "git down a third pass: notified once", wantResult: ResultOutage, wantClass: failure.Outage, wantErr: true, wantNotify: true, wantLive: "c1"},
		{name: "git down a fourth pass", wantResult: ResultOutage, wantClass: failure.Outage, wantErr: true, wantLive: "c1"},
		{name: "registry down when c2 lands", setup: func() { src.listErr, src.head, host.pullErr = nil, "c2", fmt.Errorf("pull r/app@c2: %w", connRefused) },
			wantResult: ResultOutage, wantClass: failure.Outage, wantErr: true, wantNew: true, wantLive: "c1"},
		{name: "vault down", setup: func() {
			host.pullErr = nil
			load["c2"] = func() (*envs.Env, error) {
				env := fakeEnv("c2")
				env.Services[0].Berth.Secrets = map[string]envs.SecretRef{"DB_PASSWORD": {Path: "kv/db", Field: "pw"}}
				return env, nil
			}
			sec.err = errors.New("vault answered 503: Vault is sealed")
		}, wantResult: ResultOutage, wantClass: failure.Outage, wantErr: true, wantLive: "c1"}, // same phase (prepare) as the registry: counted
		{name: "docker down at the plan", setup: func() {
			sec.err, host.listErr = nil, fmt.Errorf("Cannot connect to the Docker daemon: %w", syscall.ECONNREFUSED)
		},
			wantResult: ResultOutage, wantClass: failure.Outage, wantErr: true, wantNew: true, wantLive: "c1"},
		{name: "c2 never healthy: verdict, rolled back", setup: func() { host.listErr = nil; host.unhealthy["r/app@c2"] = true },
			wantResult: ResultFailed, wantClass: failure.Verdict, wantNew: true, wantNotify: true, wantFailed: "c2", wantLive: "c1"},
		{name: "the failed head is not retried", wantResult: ResultUnchanged, wantNew: true, wantFailed: "c2", wantLive: "c1"},
		{name: "c3 rewrites history: refused", setup: func() { src.head = "c3"; src.refuse["c3"] = errors.New("history rewrite refused") },
			wantResult: ResultFailed, wantClass: failure.Verdict, wantNew: true, wantNotify: true, wantFailed: "c3", wantLive: "c1"},
		{name: "c4 invalid config", setup: func() {
			src.head = "c4"
			load["c4"] = func() (*envs.Env, error) {
				return nil, envs.Problems{{File: "compose.yaml", Service: "web", Field: "image", Message: "not pinned by digest"}}
			}
		}, wantResult: ResultFailed, wantClass: failure.Verdict, wantNew: true, wantNotify: true, wantFailed: "c4", wantLive: "c1"},
		{name: "c5 panics while loading", setup: func() {
			src.head = "c5"
			load["c5"] = func() (*envs.Env, error) { panic("compose-go: index out of range") }
		}, wantResult: ResultFailed, wantClass: failure.Verdict, wantNew: true, wantNotify: true, wantFailed: "c5", wantLive: "c1"},
		{name: "c6 interrupted by shutdown", setup: func() {
			src.head = "c6"
			host.onHealth = func(ctx context.Context) error { <-ctx.Done(); return ctx.Err() }
		}, ctx: func() (context.Context, context.CancelFunc) {
			ctx, cancel := context.WithCancel(t.Context())
			host.onCreate = func() { cancel() } // the agent is told to stop mid-deploy
			return ctx, cancel
		}, wantResult: ResultInterrupted, wantErr: true, wantNew: true, wantFailed: "c5", wantLive: "c1"},
		{name: "c6 on the next start", setup: func() { host.onHealth, host.onCreate = nil, nil },
			wantResult: ResultSucceeded, wantNew: true, wantNotify: true, wantLive: "c6"},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			if st.setup != nil {
				st.setup()
			}
			ctx, cancel := context.WithCancel(t.Context())
			if st.ctx != nil {
				ctx, cancel = st.ctx()
			}
			defer cancel()
			before, reports := journalPasses(t, a.Journal), len(rep.got)
			err := a.Check(ctx)
			if (err != nil) != st.wantErr {
				t.Fatalf("Check returned %v, want an error: %v", err, st.wantErr)
			}
			if got := journalPasses(t, a.Journal) - before; got != 1 {
				t.Fatalf("the journal gained %d passes, want exactly 1", got)
			}
			if got := len(rep.got) - reports; got != 1 {
				t.Fatalf("OnPass called %d times, want once", got)
			}
			p := rep.got[len(rep.got)-1]
			if p.Result != st.wantResult || p.Class != st.wantClass || p.New != st.wantNew || p.Notify != st.wantNotify {
				t.Fatalf("pass: result %s class %s new %v notify %v (%v), want %s %s %v %v",
					p.Result, p.Class, p.New, p.Notify, p.Err, st.wantResult, st.wantClass, st.wantNew, st.wantNotify)
			}
			if st.wantErr && failure.Of(err) != st.wantClass && st.wantClass != failure.Unclassed {
				t.Fatalf("returned %v classed %s", err, failure.Of(err))
			}
			s, _ := LoadState(a.StateDir)
			failed, live := "", ""
			if s.Failed != nil {
				failed = s.Failed.Commit
			}
			if s.Live != nil {
				live = s.Live.Commit
			}
			if failed != st.wantFailed || live != st.wantLive || p.Record.Live != live {
				t.Fatalf("state: live %q failed %q (record live %q), want live %q failed %q", live, failed, p.Record.Live, st.wantLive, st.wantFailed)
			}
		})
	}
	recs, _ := a.Journal.List()
	var lines []string
	for _, r := range recs {
		lines = append(lines, fmt.Sprintf("%s %s %s ×%d", r.Commit, r.Result, r.Phase, r.Count()))
	}
	// 16 passes, 11 records: the outages of one step are one record each.
	want := "c6 succeeded retire ×1|c6 interrupted servers ×1|c5 failed load ×1|c4 failed load ×1|c3 failed fetch ×1|c1 unchanged plan ×1|" +
		"c2 failed servers ×1|c2 outage plan ×1|c2 outage prepare ×2| outage list ×4|c1 succeeded retire ×2"
	if got := strings.Join(lines, "|"); got != want {
		t.Fatalf("journal:\n%s\nwant\n%s", strings.ReplaceAll(got, "|", "\n"), strings.ReplaceAll(want, "|", "\n"))
	}
	for _, r := range recs {
		if r.Commit == "c2" && r.Result == ResultFailed && (len(r.Undone) == 0 || r.Class != "verdict") {
			t.Fatalf("the rolled-back deploy does not say what it undid: %+v", r)
		}
		if r.Result == ResultOutage && (r.Class != "outage" || r.Reason == "") {
			t.Fatalf("an outage record without its class and reason: %+v", r)
		}
	}
}

type panickySecrets struct{}

func (panickySecrets) Resolve(context.Context, string, map[string]envs.SecretRef) ([]string, string, error) {
	panic("vault client: nil map")
}

// A panic while loading, planning or deploying a revision is recovered at
// the pass boundary (or in the goroutine of a parallel step), recorded as a
// verdict on that revision with what was done rolled back, and the agent
// keeps serving: the next good commit deploys.
func TestAgent_PanicIsAVerdictOnTheRevisionAndTheAgentGoesOn(t *testing.T) {
	tests := []struct {
		name   string
		inject func(a *Agent, host *fakeHost)
		where  string
	}{
		{name: "load", where: "panic in load", inject: func(a *Agent, _ *fakeHost) {
			load := a.Load
			a.Load = func(ctx context.Context, rev *Revision) (*envs.Env, error) {
				if rev.Commit == "c2" {
					panic("yaml: nil node")
				}
				return load(ctx, rev)
			}
		}},
		{name: "a phase (create a container)", where: "panic in servers", inject: func(_ *Agent, host *fakeHost) {
			host.onCreate = func() {
				host.onCreate = nil
				panic("engine: nil request")
			}
		}},
		{name: "a parallel step (secrets)", where: "panic in prepare", inject: func(a *Agent, _ *fakeHost) {
			a.Deployer.Secrets = panickySecrets{}
			load := a.Load
			a.Load = func(ctx context.Context, rev *Revision) (*envs.Env, error) {
				env, err := load(ctx, rev)
				if rev.Commit == "c2" {
					env.Services[0].Berth.Secrets = map[string]envs.SecretRef{"DB_PASSWORD": {Path: "kv/db", Field: "pw"}}
				}
				return env, err
			}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			host := newFakeHost()
			src := &fakeSource{head: "c1"}
			a, sw := newAgent(t, src, host)
			var rep passes
			rep.on(a)
			if err := a.Check(t.Context()); err != nil {
				t.Fatal(err)
			}
			tc.inject(a, host)
			src.head = "c2"
			if err := a.Check(t.Context()); err != nil {
				t.Fatalf("a panic is a verdict, recorded and not returned: %v", err)
			}
			p := rep.got[len(rep.got)-1]
			st, _ := LoadState(a.StateDir)
			if p.Class != failure.Verdict || st.Failed == nil || st.Failed.Commit != "c2" || !strings.Contains(st.Failed.Reason, tc.where) ||
				strings.Contains(st.Failed.Reason, "goroutine") {
				t.Fatalf("pass %+v, failed %+v: want a verdict on c2 naming %q, no stack", p, st.Failed, tc.where)
			}
			if got := strings.Join(host.running(), ","); got != "web@c1" || sw.backends[0] != "127.0.0.1:32768" {
				t.Fatalf("after the panic running %s: want c1 whole", got)
			}
			src.head = "c3"
			if err := a.Check(t.Context()); err != nil {
				t.Fatal(err)
			}
			if got := strings.Join(host.running(), ","); got != "web@c3" {
				t.Fatalf("the next commit: running %s, want web@c3", got)
			}
		})
	}
}

// signedSource serves revisions with an author and a verified signer.
type signedSource struct{ fakeSource }

func (s *signedSource) Fetch(ctx context.Context, commit, since string) (*Revision, error) {
	rev, err := s.fakeSource.Fetch(ctx, commit, since)
	if rev != nil {
		rev.Author, rev.Signer, rev.Subject = "Ada <ada@example.org>", "0123456789ABCDEF", "promote "+commit
	}
	return rev, err
}

// The journal keeps who wrote and who signed the revision, and every line
// the deploy logs names its phase.
func TestAgent_RecordsAuthorAndSignerAndLogsThePhase(t *testing.T) {
	host := newFakeHost()
	src := &signedSource{fakeSource{head: "c1"}}
	a, _ := newAgent(t, &src.fakeSource, host)
	a.Source = src
	var logs strings.Builder
	a.Log = hclog.New(&hclog.LoggerOptions{Output: &logs, JSONFormat: true, Level: hclog.Debug})
	a.Deployer.Log = a.Log
	if err := a.Check(t.Context()); err != nil {
		t.Fatal(err)
	}
	rec, _ := a.Journal.Newest()
	if rec.Author != "Ada <ada@example.org>" || rec.Signer != "0123456789ABCDEF" || rec.Subject != "promote c1" {
		t.Fatalf("record %+v", rec)
	}
	lines := 0
	for _, l := range strings.Split(strings.TrimSpace(logs.String()), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatal(err)
		}
		if m["deploy_id"] == nil {
			continue // not a line of the deploy
		}
		lines++
		if m["phase"] == nil || m["commit"] == nil {
			t.Errorf("a deploy log line without its phase or commit: %s", l)
		}
	}
	if lines < 4 {
		t.Fatalf("only %d deploy log lines:\n%s", lines, logs.String())
	}
}
