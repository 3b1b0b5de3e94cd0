package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"text/tabwriter"
	"time"

	"berth.dev/berth/engine"
	"berth.dev/berth/reconcile"
)

// The CLI reads the agent's state dir (and, for status, the Docker engine)
// directly: it works whether or not the daemon runs. The local HTTP API
// serves the same data (its issue).

type statusJSON struct {
	Env        string                   `json:"env"`
	Live       *reconcile.RevisionState `json:"live,omitempty"`
	Failed     *reconcile.RevisionState `json:"failed,omitempty"`
	LastDeploy *reconcile.Record        `json:"last_deploy,omitempty"`
	Containers []engine.Managed         `json:"containers"`
}

func runStatus(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("status", "[--config FILE] [--json]", stderr)
	asJSON := fs.Bool("json", false, "print JSON")
	cfg, code, ok := withConfig(fs, args, stderr)
	if !ok {
		return code
	}
	var eng *engine.Engine
	dc, err := newDocker(cfg)
	if err == nil {
		defer dc.Close()
		eng = engine.New(dc, nil)
	}
	out, err := statusData(ctx, cfg, eng)
	if err != nil {
		fmt.Fprintf(stderr, "berth status: %v\n", err)
		if out == nil {
			return exitFailure
		}
	}
	if *asJSON {
		writeJSON(stdout, out)
	} else {
		printStatus(stdout, *out)
	}
	if err != nil {
		return exitFailure
	}
	return exitOK
}

// statusData is what `berth status --json` and /api/status show. With an
// engine error it returns the state-dir part and the error.
func statusData(ctx context.Context, cfg *Config, eng *engine.Engine) (*statusJSON, error) {
	st, err := reconcile.LoadState(cfg.StateDir)
	if err != nil {
		return nil, err
	}
	out := &statusJSON{Env: cfg.Env, Live: st.Live, Failed: st.Failed, Containers: []engine.Managed{}}
	recs, err := (&reconcile.Journal{Dir: filepath.Join(cfg.StateDir, "deploys")}).List()
	if err != nil {
		return nil, err
	}
	if len(recs) > 0 {
		out.LastDeploy = &recs[0]
	}
	if eng == nil {
		return out, errors.New("containers: no Docker client")
	}
	ms, err := eng.List(ctx, cfg.Env)
	if err != nil {
		return out, fmt.Errorf("containers: %w", err)
	}
	out.Containers = ms
	return out, nil
}

// historyData is what `berth history --json` and /api/history show.
func historyData(cfg *Config, n int) ([]reconcile.Record, error) {
	recs, err := (&reconcile.Journal{Dir: filepath.Join(cfg.StateDir, "deploys")}).List()
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
	if d := s.LastDeploy; d != nil {
		fmt.Fprintf(w, "last deploy %s: %s (%.12s %s)\n", d.ID, d.Result, d.Commit, d.Subject)
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
	fs := newFlagSet("history", "[--config FILE] [--json] [-n N]", stderr)
	asJSON := fs.Bool("json", false, "print JSON")
	n := fs.Int("n", 20, "how many deploys, newest first")
	cfg, code, ok := withConfig(fs, args, stderr)
	if !ok {
		return code
	}
	recs, err := historyData(cfg, *n)
	if err != nil {
		fmt.Fprintf(stderr, "berth history: %v\n", err)
		return exitFailure
	}
	if *asJSON {
		return writeJSON(stdout, recs)
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "DEPLOY\tCOMMIT\tRESULT\tDURATION\tSUBJECT\tREASON")
	for _, r := range recs {
		dur := "-"
		if !r.Finished.IsZero() {
			dur = r.Finished.Sub(r.Started).Round(100 * time.Millisecond).String()
		}
		fmt.Fprintf(tw, "%s\t%.12s\t%s\t%s\t%s\t%s\n", r.ID, r.Commit, r.Result, dur, r.Subject, r.Reason)
	}
	tw.Flush()
	return exitOK
}
