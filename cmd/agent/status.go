package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"berth.dev/berth/engine"
	"berth.dev/berth/reconcile"
)

// The CLI reads the agent's state dir (and, for status, the Docker engine)
// directly: it works whether or not the daemon runs. The local HTTP API
// serves the same data (its issue).

type statusJSON struct {
	Env    string                   `json:"env"`
	Live   *reconcile.RevisionState `json:"live,omitempty"`
	Failed *reconcile.RevisionState `json:"failed,omitempty"`
	// Paused is this host's `berth pause`: who, when, why.
	Paused *reconcile.Pause `json:"paused,omitempty"`
	// FleetHeld is the head the fleet halted, as this host last saw it.
	FleetHeld *reconcile.FleetHeld `json:"fleet_held,omitempty"`
	// LastPass is the newest journal record: how the latest pass (or run
	// of passes ending alike) ended. LastDeploy is the newest that
	// deployed or failed something.
	LastPass   *reconcile.Record `json:"last_pass,omitempty"`
	LastDeploy *reconcile.Record `json:"last_deploy,omitempty"`
	Containers []engine.Managed  `json:"containers"`
	// Docker says why the containers are missing: the engine did not
	// answer within statusDockerTimeout (a hung dockerd) or failed.
	Docker string `json:"docker,omitempty"`
	// Agent is what the running agent knows beyond the state dir (the
	// local API only).
	Agent *agentJSON `json:"agent,omitempty"`
}

// statusDockerTimeout bounds the container listing of status: a hung
// dockerd must not hang `berth status` or the API.
var statusDockerTimeout = 3 * time.Second

// statusAllJSON is the status of an agent that runs several envs.
type statusAllJSON struct {
	Envs []*statusJSON `json:"envs"`
}

func runStatus(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("status", "[--config FILE] [--env ENV] [--json]", stderr)
	asJSON := fs.Bool("json", false, "print JSON")
	only := fs.String("env", "", "only this environment (default: every env the agent runs)")
	cfg, code, ok := withConfig(fs, args, stderr)
	if !ok {
		return code
	}
	names, err := selectEnvs(cfg, *only)
	if err != nil {
		fmt.Fprintf(stderr, "berth status: %v\n", err)
		return exitUsage
	}
	var eng *engine.Engine
	dc, err := newDocker(cfg)
	if err == nil {
		defer dc.Close()
		eng = engine.New(dc, nil)
	}
	var outs []*statusJSON
	code = exitOK
	for _, name := range names {
		out, err := statusData(ctx, cfg, name, eng, nil)
		if err != nil && out == nil {
			fmt.Fprintf(stderr, "berth status: env %s: %v\n", name, err)
			return exitFailure
		}
		if out.Docker != "" {
			code = exitFailure
		}
		outs = append(outs, out)
	}
	switch {
	case *asJSON && len(outs) == 1:
		writeJSON(stdout, outs[0])
	case *asJSON:
		writeJSON(stdout, statusAllJSON{Envs: outs})
	default:
		for i, out := range outs {
			if i > 0 {
				fmt.Fprintln(stdout)
			}
			printStatus(stdout, *out)
		}
	}
	return code
}

// selectEnvs is the env a command names with --env, checked against the
// config, or every env the agent runs.
func selectEnvs(cfg *Config, only string) ([]string, error) {
	if only == "" {
		return cfg.EnvNames(), nil
	}
	if !slices.Contains(cfg.EnvNames(), only) {
		return nil, fmt.Errorf("--env %s: the agent runs %s", only, strings.Join(cfg.EnvNames(), ", "))
	}
	return []string{only}, nil
}

// oneEnv is the env a command that changes something acts on: --env, or
// the only env the agent runs.
func oneEnv(cfg *Config, only string) (string, error) {
	names, err := selectEnvs(cfg, only)
	if err != nil {
		return "", err
	}
	if len(names) > 1 {
		return "", fmt.Errorf("the agent runs several envs (%s): name one with --env", strings.Join(names, ", "))
	}
	return names[0], nil
}

// statusData is what `berth status --json` and /api/status show of env.
// It reads the env's state, and its containers from Docker within
// statusDockerTimeout; an engine that does not answer is reported in
// Docker, never waited for. live, when set, adds the running agent's view.
func statusData(ctx context.Context, cfg *Config, env string, eng *engine.Engine, live *liveStatus) (*statusJSON, error) {
	st, err := reconcile.LoadState(cfg.envDir(env))
	if err != nil {
		return nil, err
	}
	out := &statusJSON{Env: env, Live: st.Live, Failed: st.Failed, Paused: st.Pause, FleetHeld: st.FleetHeld, Containers: []engine.Managed{}}
	recs, err := cfg.journalOf(env).List()
	if err != nil {
		return nil, err
	}
	for i := range recs {
		if out.LastPass == nil {
			out.LastPass = &recs[i]
		}
		if recs[i].Result != reconcile.ResultUnchanged {
			out.LastDeploy = &recs[i]
			break
		}
	}
	if live != nil {
		out.Agent = live.snapshot()
	}
	if eng == nil {
		out.Docker = "no Docker client"
		return out, nil
	}
	ctx, cancel := context.WithTimeout(ctx, statusDockerTimeout)
	defer cancel()
	ms, err := eng.List(ctx, env)
	switch {
	case ctx.Err() != nil:
		out.Docker = fmt.Sprintf("not answering within %s (a hung dockerd?)", statusDockerTimeout)
	case err != nil:
		out.Docker = err.Error()
	default:
		out.Containers = ms
	}
	return out, nil
}

// liveStatus is what the running agent knows beyond its state dir: the
// pass in flight and how the last one ended. STATUS= and /api/status show
// it; neither waits on Docker or on the pass.
type liveStatus struct {
	mu sync.Mutex
	a  agentJSON
}

type agentJSON struct {
	// Pass is the pass in flight, if any.
	Pass *passJSON `json:"pass,omitempty"`
	// Last is how the latest pass ended.
	Last *lastJSON `json:"last,omitempty"`
}

type passJSON struct {
	Commit  string    `json:"commit,omitempty"`
	Phase   string    `json:"phase"`
	Started time.Time `json:"started"`
	// Waiting names the coordinated step the pass waits for (a fleet's:
	// its turn, the canaries, a migration on another host, etcd).
	Waiting string `json:"waiting,omitempty"`
}

type lastJSON struct {
	Result string    `json:"result"`
	Class  string    `json:"class,omitempty"`
	Commit string    `json:"commit,omitempty"`
	Phase  string    `json:"phase,omitempty"`
	Reason string    `json:"reason,omitempty"`
	Passes int       `json:"passes"` // passes in a row that ended this way
	Since  time.Time `json:"since"`  // when the first of them ended
	Live   string    `json:"live,omitempty"`
}

// deployPhases are the steps of a deploy that changes the host: STATUS=
// shows them, not the list/fetch/plan of every idle poll.
var deployPhases = []string{"prepare", "cli", "workers", "servers", "watch", "retire"}

// progress notes a pass entering a step and says whether STATUS= changes.
func (l *liveStatus) progress(p reconcile.Progress) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	was := l.a.Pass
	l.a.Pass = &passJSON{Commit: p.Commit, Phase: p.Phase, Started: p.Started, Waiting: p.Waiting}
	if was != nil && was.Waiting != p.Waiting {
		return true
	}
	return slices.Contains(deployPhases, p.Phase) && (was == nil || was.Phase != p.Phase)
}

// passEnded notes how a pass ended and says whether STATUS= changes.
func (l *liveStatus) passEnded(p reconcile.Pass) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	r := p.Record
	was, wasPass := l.a.Last, l.a.Pass
	l.a.Pass = nil
	since := r.Finished
	if !p.New && was != nil && was.Result == r.Result {
		since = was.Since
	}
	l.a.Last = &lastJSON{Result: r.Result, Class: r.Class, Commit: r.Commit, Phase: r.Phase, Reason: r.Reason, Passes: r.Count(), Since: since, Live: r.Live}
	deployed := wasPass != nil && slices.Contains(deployPhases, wasPass.Phase)
	return was == nil || deployed || was.Result != r.Result || was.Live != r.Live || was.Reason != r.Reason
}

func (l *liveStatus) snapshot() *agentJSON {
	l.mu.Lock()
	defer l.mu.Unlock()
	a := l.a
	return &a
}

// statusLine is the unit's STATUS=: each env's line, in config order.
func statusLine(cfg *Config, rs []*envRuntime) string {
	var parts []string
	for _, r := range rs {
		parts = append(parts, r.live.line(cfg, r.name))
	}
	return strings.Join(parts, " | ")
}

// line is env's part of the unit's STATUS= (systemctl status berth): the
// live revision, a deploy in flight, and a verdict or outage that holds
// the head back.
func (l *liveStatus) line(cfg *Config, env string) string {
	a := l.snapshot()
	s := "env " + env + ": "
	st, err := reconcile.LoadState(cfg.envDir(env))
	switch {
	case err != nil:
		s += "state unreadable: " + err.Error()
	case st.Live != nil:
		s += fmt.Sprintf("live %.12s since %s", st.Live.Commit, st.Live.At.Format(time.RFC3339))
	default:
		s += "no live revision yet"
	}
	if p := a.Pass; p != nil && slices.Contains(deployPhases, p.Phase) {
		s += fmt.Sprintf("; deploying %.12s: %s", p.Commit, p.Phase)
	}
	if p := a.Pass; p != nil && p.Waiting != "" {
		s += fmt.Sprintf("; %.12s %s", p.Commit, p.Waiting)
	}
	switch last := a.Last; {
	case last == nil:
		if a.Pass == nil {
			s += "; first check running"
		}
	case last.Result == reconcile.ResultOutage:
		s += fmt.Sprintf("; outage since %s (%d passes), retrying: %s", last.Since.Format(time.RFC3339), last.Passes, oneLine(last.Reason))
	case last.Result == reconcile.ResultFailed:
		s += fmt.Sprintf("; %.12s failed (verdict): %s", last.Commit, oneLine(last.Reason))
	case last.Result == reconcile.ResultHeld:
		s += fmt.Sprintf("; %.12s held: %s", last.Commit, oneLine(last.Reason))
	default:
		if err == nil && st.Failed != nil {
			s += fmt.Sprintf("; %.12s failed", st.Failed.Commit)
		}
	}
	if err == nil && st.Pause != nil {
		s += fmt.Sprintf("; paused by %s since %s", st.Pause.By, st.Pause.At.Format(time.RFC3339))
	}
	return s
}

// oneLine is the first line of s, at most 200 bytes: STATUS= is one line.
func oneLine(s string) string {
	s, _, _ = strings.Cut(s, "\n")
	if len(s) > 200 {
		s = s[:200] + "…"
	}
	return s
}

// historyData is what `berth history --json` and /api/history show: the
// newest n records of the envs named, newest first (each record names its
// env).
func historyData(cfg *Config, names []string, n int) ([]reconcile.Record, error) {
	var recs []reconcile.Record
	var errs []error
	for _, env := range names {
		rs, err := cfg.journalOf(env).List()
		if err != nil {
			errs = append(errs, fmt.Errorf("env %s: %w", env, err))
		}
		for i := range rs {
			if rs[i].Env == "" {
				rs[i].Env = env // a record of a pass that ended before the env was known
			}
		}
		recs = append(recs, rs...)
	}
	err := errors.Join(errs...)
	slices.SortStableFunc(recs, func(a, b reconcile.Record) int { return strings.Compare(b.ID, a.ID) })
	if len(recs) > n {
		recs = recs[:n]
	}
	if recs == nil {
		recs = []reconcile.Record{}
	}
	return recs, err
}

func printStatus(w io.Writer, s statusJSON) {
	fmt.Fprintf(w, "env %s\n", s.Env)
	if s.Live != nil {
		fmt.Fprintf(w, "live    %.12s  since %s (deploy %s)\n", s.Live.Commit, s.Live.At.Format(time.RFC3339), s.Live.DeployID)
	} else {
		fmt.Fprintln(w, "live    none yet")
	}
	if s.Failed != nil {
		fmt.Fprintf(w, "failed  %.12s  %s: %s\n", s.Failed.Commit, s.Failed.At.Format(time.RFC3339), s.Failed.Reason)
	}
	if p := s.Paused; p != nil {
		fmt.Fprintf(w, "paused  by %s since %s%s: the branch is not followed (berth resume)\n", p.By, p.At.Format(time.RFC3339), reasonSuffix(p.Reason))
	}
	if h := s.FleetHeld; h != nil {
		fmt.Fprintf(w, "held    %.12s halted fleet-wide: %s\n", h.Commit, h.Reason)
	}
	if d := s.LastDeploy; d != nil {
		fmt.Fprintf(w, "last deploy %s: %s (%.12s %s)\n", d.ID, d.Result, d.Commit, d.Subject)
	}
	if p := s.LastPass; p != nil && p.Result == reconcile.ResultOutage {
		fmt.Fprintf(w, "outage  %d passes since %s, retrying by itself: %s\n", p.Count(), p.Finished.Format(time.RFC3339), p.Reason)
	}
	if a := s.Agent; a != nil && a.Pass != nil && a.Pass.Waiting != "" {
		fmt.Fprintf(w, "waiting %.12s: %s\n", a.Pass.Commit, a.Pass.Waiting)
	}
	if s.Docker != "" {
		fmt.Fprintf(w, "docker  %s\n", s.Docker)
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "\nSERVICE\tROLE\tCONTAINER\tSTATE\tHEALTH\tREVISION")
	for _, c := range s.Containers {
		health := c.Health
		if health == "" {
			health = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%.12s\n", c.Service, c.Role, c.Name, c.State, health, c.Revision)
	}
	tw.Flush()
}

func runHistory(_ context.Context, args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("history", "[--config FILE] [--env ENV] [--json] [-n N]", stderr)
	asJSON := fs.Bool("json", false, "print JSON")
	n := fs.Int("n", 20, "how many deploys, newest first")
	only := fs.String("env", "", "only this environment (default: every env the agent runs)")
	cfg, code, ok := withConfig(fs, args, stderr)
	if !ok {
		return code
	}
	names, err := selectEnvs(cfg, *only)
	if err != nil {
		fmt.Fprintf(stderr, "berth history: %v\n", err)
		return exitUsage
	}
	recs, err := historyData(cfg, names, *n)
	if err != nil {
		fmt.Fprintf(stderr, "berth history: %v\n", err)
		return exitFailure
	}
	if *asJSON {
		return writeJSON(stdout, recs)
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	several := len(names) > 1
	if several {
		fmt.Fprint(tw, "ENV\t")
	}
	fmt.Fprintln(tw, "DEPLOY\tCOMMIT\tRESULT\tPASSES\tDURATION\tAUTHOR\tSIGNER\tSUBJECT\tREASON")
	for _, r := range recs {
		dur := "-"
		if !r.Finished.IsZero() {
			dur = r.Finished.Sub(r.Started).Round(100 * time.Millisecond).String()
		}
		commit := r.Commit
		if commit == "" {
			commit = "-" // the branch head could not be read
		}
		if several {
			fmt.Fprintf(tw, "%s\t", r.Env)
		}
		fmt.Fprintf(tw, "%s\t%.12s\t%s\t%d\t%s\t%s\t%s\t%s\t%s\n", r.ID, commit, r.Result, r.Count(), dur, dash(r.Author), dash(r.Signer), r.Subject, oneLine(r.Reason))
	}
	tw.Flush()
	return exitOK
}

func reasonSuffix(r string) string {
	if r == "" {
		return ""
	}
	return " (" + r + ")"
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
