package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"berth.dev/berth/fleet"
	"berth.dev/berth/internal/cliflags"
	"berth.dev/berth/operator"
	"berth.dev/berth/status"
)

// runFleet is `berth fleet status`.
func runFleet(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	const usage = "Usage: berth fleet status [--config FILE] [--env ENV] [--format text|json]\n"
	switch {
	case len(args) == 0:
		io.WriteString(stderr, "berth fleet: missing subcommand (status)\n"+usage)
		return exitUsage
	case args[0] == "-h" || args[0] == "--help" || args[0] == "help":
		io.WriteString(stdout, usage)
		return exitOK
	case args[0] != "status":
		fmt.Fprintf(stderr, "berth fleet: unknown subcommand %q (status)\n%s", args[0], usage)
		return exitUsage
	}
	fs := cliflags.New("fleet status", "[--config FILE] [--env ENV] [--format text|json]", stderr)
	format := cliflags.AddFormat(fs)
	cfg, names, code, ok := withEnvs(fs, args[1:], stderr)
	if !ok {
		return code
	}
	data, err := operator.Status(ctx, cfg, names)
	switch {
	case errors.Is(err, operator.ErrNoFleet):
		return failed(stderr, "fleet status", err, exitConfig)
	case err != nil:
		return failed(stderr, "fleet status", err, exitFailure)
	}
	// Exit 1 when a revision is halted or a host refuses one: a script
	// watching a rollout learns it stopped (docs/reference.md).
	code = exitOK
	if slices.ContainsFunc(data, status.FleetEnv.Stopped) {
		code = exitFailure
	}
	if format.JSON() {
		if data == nil {
			data = []status.FleetEnv{}
		}
		writeJSON(stdout, status.FleetAll{Envs: data})
		return code
	}
	for i, e := range data {
		if i > 0 {
			fmt.Fprintln(stdout)
		}
		printFleet(stdout, e)
	}
	return code
}

func printFleet(w io.Writer, e status.FleetEnv) {
	fmt.Fprintf(w, "env %s: %d hosts\n", e.Env, len(e.Hosts))
	if p := e.Paused; p != nil {
		fmt.Fprintf(w, "paused fleet-wide by %s since %s%s\n", p.By, p.At.Format(time.RFC3339), reasonSuffix(p.Reason))
	}
	if r := e.Rollback; r != nil {
		fmt.Fprintf(w, "rolled back fleet-wide to %.12s (head %.12s) by %s at %s%s\n", r.Commit, r.Head, r.By, r.At.Format(time.RFC3339), reasonSuffix(r.Reason))
	}
	for _, h := range e.Halts {
		fmt.Fprintf(w, "halted %.12s on %s at %s: %s\n", h.Revision, h.Host, h.At.Format(time.RFC3339), h.Reason)
	}
	for _, m := range e.Migrations {
		if m.Status != fleet.MigrationDone {
			fmt.Fprintf(w, "migration %s (%.12s): %s on %s%s\n", m.Service, m.Revision, m.Status, m.Host, reasonSuffix(m.Reason))
		}
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "HOST\tSTATE\tSKEW\tLIVE\tAUTHOR\tSUBJECT\tDEPLOY\tRESULT\tHEALTH\tVERSION\tLAST SEEN")
	for _, h := range e.Hosts {
		state := string(status.HostStateOf(&h))
		if state == string(status.HostFailed) {
			state = fmt.Sprintf("failed %.12s", h.Failed)
		}
		skew := "-"
		if h.ClockSkew != 0 {
			skew = h.ClockSkew.Round(time.Second).String()
		}
		live, author, subject := "-", "-", "-"
		if h.Live != nil {
			live, author, subject = fmt.Sprintf("%.12s", h.Live.Revision), dash(h.Live.Author), dash(h.Live.Subject)
		}
		deploy := "-"
		if d := h.Deploy; d != nil {
			deploy = fmt.Sprintf("%.12s %s", d.Revision, d.Phase)
		}
		if h.Waiting != "" {
			deploy += " (" + h.Waiting + ")"
		}
		result := "-"
		if r := h.Result; r != nil {
			result = r.Class
			if r.Reason != "" {
				result += ": " + status.OneLine(r.Reason)
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", h.Host, state, skew, live, author, subject, deploy, result,
			healthLine(h.Health), dash(h.Version), h.LastSeen.Format(time.RFC3339))
	}
	tw.Flush()
}

func healthLine(h map[string]string) string {
	if len(h) == 0 {
		return "-"
	}
	var parts []string
	for _, s := range slices.Sorted(maps.Keys(h)) {
		parts = append(parts, s+"="+h[s])
	}
	return strings.Join(parts, ",")
}
