package main

import (
	"context"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"berth.dev/berth/daemon"
	"berth.dev/berth/engine"
	"berth.dev/berth/internal/cliflags"
	"berth.dev/berth/reconcile"
	"berth.dev/berth/status"
)

// The CLI reads the agent's state dir (and, for status, the Docker engine)
// directly, through package status: it works whether or not the daemon
// runs. The local API serves the same values.

func runStatus(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := cliflags.New("status", "[--config FILE] [--env ENV] [--format text|json]", stderr)
	format := cliflags.AddFormat(fs)
	cfg, names, code, ok := withEnvs(fs, args, stderr)
	if !ok {
		return code
	}
	var eng status.Lister
	if dc, err := daemon.NewDocker(cfg); err == nil {
		defer dc.Close()
		eng = engine.New(dc, nil)
	}
	var outs []*status.Env
	code = exitOK
	for _, name := range names {
		out, err := status.Read(ctx, cfg, name, eng, nil)
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
	case format.JSON() && len(outs) == 1:
		writeJSON(stdout, outs[0])
	case format.JSON():
		writeJSON(stdout, status.All{Envs: outs})
	default:
		for i, out := range outs {
			if i > 0 {
				fmt.Fprintln(stdout)
			}
			printStatus(stdout, *out)
		}
	}
	// Exit 1 says why on stderr, as every command does; the report above
	// still shows what berth's own state holds.
	for _, out := range outs {
		if out.Docker != "" {
			fmt.Fprintf(stderr, "berth status: env %s: its containers could not be listed: %s\n", out.Env, out.Docker)
		}
	}
	return code
}

func printStatus(w io.Writer, s status.Env) {
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
	fs := cliflags.New("history", "[--config FILE] [--env ENV] [--format text|json] [-n N]", stderr)
	format := cliflags.AddFormat(fs)
	n := cliflags.AddCount(fs, "n", 20, "how many passes, newest first")
	cfg, names, code, ok := withEnvs(fs, args, stderr)
	if !ok {
		return code
	}
	recs, err := status.History(cfg, names, int(*n))
	if err != nil {
		return failed(stderr, "history", err, exitFailure)
	}
	if format.JSON() {
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
		fmt.Fprintf(tw, "%s\t%.12s\t%s\t%d\t%s\t%s\t%s\t%s\t%s\n", r.ID, commit, r.Result, r.Count(), dur, dash(r.Author), dash(r.Signer), r.Subject, status.OneLine(r.Reason))
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
