package main

import (
	"context"
	"fmt"
	"io"
	"maps"
	"os"
	"os/user"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/hashicorp/go-hclog"

	"berth.dev/berth/agentconfig"
	"berth.dev/berth/daemon"
	"berth.dev/berth/fleet"
	"berth.dev/berth/reconcile"
	"berth.dev/berth/status"
)

// fleetCLITimeout bounds a CLI command's work against etcd.
const fleetCLITimeout = 30 * time.Second

// cliFleet is the fleet client of a CLI command, or an error saying the
// agent config has no fleet block.
func cliFleet(cfg *agentconfig.Config, cmd string) (*fleet.Client, error) {
	if cfg.Fleet == nil {
		return nil, fmt.Errorf("berth %s --fleet: the agent config has no fleet: block (docs/fleet.md)", cmd)
	}
	return fleet.New(*cfg.Fleet, fleet.Options{Log: hclog.NewNullLogger()})
}

// runPause is `berth pause [--fleet] [--reason TEXT]`: stop following the
// branch, keeping the live revision and self-heal, until berth resume.
func runPause(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("pause", "[--config FILE] [--env ENV] [--fleet] [--reason TEXT] [--format text|json]", stderr)
	only := fs.String("env", "", "the environment (needed when the agent runs several)")
	all := fs.Bool("fleet", false, "pause every host of the env's fleet")
	reason := fs.String("reason", "", "why (shown in status)")
	format := addFormat(fs)
	cfg, code, ok := withConfig(fs, args, stderr)
	if !ok {
		return code
	}
	env, err := oneEnv(cfg, *only)
	if err != nil {
		return usageError(fs, "%v", err)
	}
	by := operator()
	if *all {
		return fleetOp(ctx, cfg, env, "pause", answer{stdout, format.json()}, stderr, func(ctx context.Context, c *fleet.Client) (string, error) {
			err := c.Pause(ctx, env, fleet.PauseInfo{By: by, Reason: *reason})
			return fmt.Sprintf("env %s paused fleet-wide by %s: no host follows the branch until berth resume --fleet; live revisions keep being served and self-healed", env, by), err
		})
	}
	return submit(cfg, env, reconcile.Request{Action: "pause", By: by, Reason: *reason}, answer{stdout, format.json()}, stderr,
		fmt.Sprintf("pause requested by %s: the branch is not followed until berth resume; the live revision keeps being served and self-healed", by))
}

// runResume is `berth resume [--fleet]`: follow the branch again after a
// pause or a rollback (fleet-wide: the fleet's pause and rollback).
func runResume(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("resume", "[--config FILE] [--env ENV] [--fleet] [--format text|json]", stderr)
	only := fs.String("env", "", "the environment (needed when the agent runs several)")
	all := fs.Bool("fleet", false, "end the fleet-wide pause or rollback")
	format := addFormat(fs)
	cfg, code, ok := withConfig(fs, args, stderr)
	if !ok {
		return code
	}
	env, err := oneEnv(cfg, *only)
	if err != nil {
		return usageError(fs, "%v", err)
	}
	if *all {
		return fleetOp(ctx, cfg, env, "resume", answer{stdout, format.json()}, stderr, func(ctx context.Context, c *fleet.Client) (string, error) {
			return fmt.Sprintf("env %s resumed fleet-wide: every host follows the branch again", env), c.Resume(ctx, env)
		})
	}
	return submit(cfg, env, reconcile.Request{Action: "resume"}, answer{stdout, format.json()}, stderr, "resume requested: the agent follows the branch again")
}

// runRetry is `berth retry`: this host forgets its failed revision; with a
// fleet, every halt and failed or interrupted migration of the env is
// cleared fleet-wide too.
func runRetry(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("retry", "[--config FILE] [--env ENV] [--format text|json]", stderr)
	only := fs.String("env", "", "the environment (needed when the agent runs several)")
	format := addFormat(fs)
	cfg, code, ok := withConfig(fs, args, stderr)
	if !ok {
		return code
	}
	env, err := oneEnv(cfg, *only)
	if err != nil {
		return usageError(fs, "%v", err)
	}
	if cfg.Fleet != nil {
		if code := fleetOp(ctx, cfg, env, "retry", answer{stdout, format.json()}, stderr, func(ctx context.Context, c *fleet.Client) (string, error) {
			_, err := c.Retry(ctx, env, fleet.PauseInfo{By: operator()})
			return fmt.Sprintf("env %s: halts and failed or interrupted migrations cleared fleet-wide", env), err
		}); code != exitOK {
			return code
		}
	}
	return submit(cfg, env, reconcile.Request{Action: "retry"}, answer{stdout, format.json()}, stderr, "retry of the failed revision requested")
}

// fleetOp runs one fleet-wide change with a bounded wait for etcd.
func fleetOp(ctx context.Context, cfg *agentconfig.Config, env, cmd string, out answer, stderr io.Writer, op func(context.Context, *fleet.Client) (string, error)) int {
	c, err := cliFleet(cfg, cmd)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return exitConfig
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(ctx, fleetCLITimeout)
	defer cancel()
	done, err := op(ctx, c)
	if err != nil {
		fmt.Fprintf(stderr, "berth %s --fleet: %v\n", cmd, status.EtcdErr(err))
		return exitFailure
	}
	out.say(requestJSON{Env: env, Action: cmd, Fleet: true, Message: done})
	return exitOK
}

// rollbackFleet is `berth rollback --fleet`: the branch head is halted
// fleet-wide, and every host deploys target through the waves until a
// new commit or berth resume --fleet.
func rollbackFleet(ctx context.Context, cfg *agentconfig.Config, env, target string, reason string, out answer, stderr io.Writer) int {
	dir, err := os.MkdirTemp("", "berth-rollback-")
	if err != nil {
		fmt.Fprintf(stderr, "berth rollback --fleet: %v\n", err)
		return exitFailure
	}
	defer os.RemoveAll(dir)
	src, err := daemon.NewSource(cfg, dir, hclog.NewNullLogger())
	if err != nil {
		fmt.Fprintf(stderr, "berth rollback --fleet: %v\n", err)
		return exitConfig
	}
	lctx, cancel := context.WithTimeout(ctx, fleetCLITimeout)
	head, err := src.Head(lctx)
	cancel()
	if err != nil {
		fmt.Fprintf(stderr, "berth rollback --fleet: the branch head (which the rollback holds back): %v\n", err)
		return exitFailure
	}
	if head == target {
		fmt.Fprintf(stderr, "berth rollback --fleet: %.12s is the branch head already\n", target)
		return exitFailure
	}
	by := operator()
	return fleetOp(ctx, cfg, env, "rollback", out, stderr, func(ctx context.Context, c *fleet.Client) (string, error) {
		err := c.Rollback(ctx, env, fleet.RollbackInfo{Commit: target, Head: head, By: by, Reason: reason})
		return fmt.Sprintf("env %s: fleet-wide rollback to %.12s requested by %s; head %.12s halted; every host deploys %.12s through the waves until a new commit or berth resume --fleet",
			env, target, by, head, target), err
	})
}

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
	fs := newFlagSet("fleet status", "[--config FILE] [--env ENV] [--format text|json]", stderr)
	only := fs.String("env", "", "only this environment (default: every env the agent runs)")
	format := addFormat(fs)
	cfg, code, ok := withConfig(fs, args[1:], stderr)
	if !ok {
		return code
	}
	names, err := status.SelectEnvs(cfg, *only)
	if err != nil {
		return usageError(fs, "%v", err)
	}
	c, err := cliFleet(cfg, "fleet status")
	if err != nil {
		fmt.Fprintln(stderr, strings.Replace(err.Error(), " --fleet", "", 1))
		return exitConfig
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(ctx, fleetCLITimeout)
	defer cancel()
	data, err := status.Fleet(ctx, c, names)
	if err != nil {
		fmt.Fprintf(stderr, "berth fleet status: %v\n", err)
		return exitFailure
	}
	// Exit 1 when a revision is halted or a host refuses one: a script
	// watching a rollout learns it stopped (docs/reference.md).
	code = exitOK
	for _, e := range data {
		if len(e.Halts) > 0 || slices.ContainsFunc(e.Hosts, func(h fleet.HostStatus) bool { return h.Alive && h.Failed != "" }) {
			code = exitFailure
		}
	}
	if format.json() {
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
		state := "alive"
		switch {
		case !h.Alive:
			state = "gone"
		case h.Failed != "":
			state = fmt.Sprintf("failed %.12s", h.Failed)
		case h.Paused != nil:
			state = "paused"
		case h.Held != "":
			state = "held"
		case h.ClockSkew.Abs() >= fleet.SkewWarn:
			state = "skewed" // its job claims ahead of etcd's clock are refused
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

// operator names who runs a CLI command: the sudo user or the user, at
// this host.
func operator() string {
	name := os.Getenv("SUDO_USER")
	if name == "" {
		if u, err := user.Current(); err == nil {
			name = u.Username
		}
	}
	if name == "" {
		name = "unknown"
	}
	if h, err := os.Hostname(); err == nil {
		name += "@" + h
	}
	return name
}
