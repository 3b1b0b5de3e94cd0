package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"berth.dev/berth/agentconfig"
	"berth.dev/berth/internal/cliflags"
	"berth.dev/berth/internal/termsafe"
	"berth.dev/berth/jobs"
	"berth.dev/berth/operator"
	"berth.dev/berth/statedir"
	"berth.dev/berth/status"
)

// berth jobs list|history|logs|run: read from the state dir, like status;
// `run` asks the running agent (the one process that starts containers).

const jobsUsage = `usage: berth jobs list|history NAME|logs NAME [RUN]|run NAME [--config FILE] [--env ENV]

  list                      the live revision's jobs, next and last runs
  history NAME              a job's runs, newest first
  logs NAME [RUN]           a run's kept stdout and stderr (default: the newest finished)
  run NAME                  ask the agent to run the job now and wait for the result

Run 'berth jobs SUBCOMMAND -h' for its flags.
`

func runJobs(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		io.WriteString(stderr, "berth jobs: missing subcommand (list, history, logs, run)\n\n"+jobsUsage)
		return exitUsage
	}
	sub, rest := args[0], args[1:]
	switch sub {
	case "-h", "--help", "-help", "help":
		io.WriteString(stdout, jobsUsage)
		return exitOK
	case "list":
		return jobsList(rest, stdout, stderr)
	case "history":
		return jobsHistory(rest, stdout, stderr)
	case "logs":
		return jobsLogs(rest, stdout, stderr)
	case "run":
		return jobsRun(ctx, rest, stdout, stderr)
	}
	fmt.Fprintf(stderr, "berth jobs: unknown subcommand %q (list, history, logs, run)\n\n", sub)
	io.WriteString(stderr, jobsUsage)
	return exitUsage
}

// jobArgs parses a jobs subcommand's flags and wants between min and max
// positional arguments (the first is the job's NAME). env is --env as
// given.
func jobArgs(name, usage string, args []string, min, max int, stderr io.Writer, extra func(fs *flag.FlagSet)) (cfg *agentconfig.Config, pos []string, env string, code int, ok bool) {
	fs := cliflags.New("jobs "+name, usage, stderr)
	if extra != nil {
		extra(fs)
	}
	only := fs.String("env", "", "the environment (needed only when several envs have a job of that name)")
	cfg, code, ok = withConfigArgs(fs, args, min, max, "NAME (the job; berth jobs list names them)", stderr)
	if !ok {
		return nil, nil, "", code, false
	}
	return cfg, fs.Args(), *only, exitOK, true
}

func jobsList(args []string, stdout, stderr io.Writer) int {
	var format *cliflags.Format
	cfg, _, only, code, ok := jobArgs("list", "[--config FILE] [--env ENV] [--format text|json]", args, 0, 0, stderr, func(fs *flag.FlagSet) { format = cliflags.AddFormat(fs) })
	if !ok {
		return code
	}
	names, err := status.SelectEnvs(cfg, only)
	if err != nil {
		return failed(stderr, "jobs list", err, exitUsage)
	}
	rows, err := status.Jobs(cfg, names)
	if err != nil {
		return failed(stderr, "jobs list", err, exitFailure)
	}
	if format.JSON() {
		return writeJSON(stdout, rows)
	}
	if len(rows) == 0 {
		fmt.Fprintln(stdout, "no jobs in the live revision")
		return exitOK
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	if len(names) > 1 {
		fmt.Fprint(tw, "ENV\t")
	}
	fmt.Fprintln(tw, "JOB\tSCHEDULE\tTIMEZONE\tNEXT\tLAST\tLAST STATUS\tRUNNING")
	for _, r := range rows {
		if len(names) > 1 {
			fmt.Fprintf(tw, "%s\t", r.Env)
		}
		tz := r.Timezone
		if tz == "" {
			tz = "local"
		}
		last, status := "-", "-"
		if r.Last != nil {
			last, status = stamp(r.Last.Started, r.Last.Scheduled), string(r.Last.Status)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%d\n", r.Name, r.Schedule, tz, stamp(r.Next), last, status, len(r.Running))
	}
	tw.Flush()
	return exitOK
}

func jobsHistory(args []string, stdout, stderr io.Writer) int {
	var local *bool
	var format *cliflags.Format
	var n *cliflags.Count
	cfg, pos, only, code, ok := jobArgs("history", "NAME [--config FILE] [--env ENV] [--format text|json] [-n N] [--local]", args, 1, 1, stderr, func(fs *flag.FlagSet) {
		format = cliflags.AddFormat(fs)
		n = cliflags.AddCount(fs, "n", 20, "how many runs, newest first")
		local = fs.Bool("local", false, "with a fleet: this host's own runs (with their run ids and triggers) instead of the fleet's")
	})
	if !ok {
		return code
	}
	env, err := status.JobEnv(cfg, only, pos[0])
	if err != nil {
		return failed(stderr, "jobs history", err, exitUsage)
	}
	if cfg.Fleet != nil && !*local {
		// The fleet's runs, each naming its host: the same on every host.
		runs, err := operator.JobHistory(context.Background(), cfg, env, pos[0], int(*n))
		if err == nil {
			return printFleetJobHistory(stdout, runs, format.JSON())
		}
		fmt.Fprintf(stderr, "berth jobs history: the fleet's history is unreadable (%v); this host's own runs follow\n", err)
	}
	runs, err := cfg.JobStore(env).Runs(pos[0])
	if err != nil {
		return failed(stderr, "jobs history", err, exitFailure)
	}
	if len(runs) > int(*n) {
		runs = runs[:*n]
	}
	if format.JSON() {
		if runs == nil {
			runs = []jobs.Run{}
		}
		return writeJSON(stdout, runs)
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "RUN\tTRIGGER\tSCHEDULED\tSTARTED\tDURATION\tSTATUS\tEXIT\tREASON")
	for _, r := range runs {
		exit, dur := "-", "-"
		if r.ExitCode != nil {
			exit = fmt.Sprint(*r.ExitCode)
		}
		if !r.Finished.IsZero() && !r.Started.IsZero() {
			dur = (time.Duration(r.DurationMS) * time.Millisecond).String()
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.ID, r.Trigger, stamp(r.Scheduled), stamp(r.Started), dur, r.Status, exit, r.Reason)
	}
	tw.Flush()
	return exitOK
}

func jobsLogs(args []string, stdout, stderr io.Writer) int {
	cfg, pos, only, code, ok := jobArgs("logs", "NAME [RUN] [--config FILE] [--env ENV]", args, 1, 2, stderr, nil)
	if !ok {
		return code
	}
	env, err := status.JobEnv(cfg, only, pos[0])
	if err != nil {
		return failed(stderr, "jobs logs", err, exitUsage)
	}
	st := cfg.JobStore(env)
	job, id := pos[0], ""
	if len(pos) == 2 {
		id = pos[1]
	} else {
		var err error
		if id, err = st.NewestFinished(job); err != nil {
			return failed(stderr, "jobs logs", err, exitFailure)
		}
	}
	r, err := st.Run(job, id)
	if err != nil {
		fmt.Fprintf(stderr, "berth jobs logs: no run %s of job %s\n", id, job)
		return exitFailure
	}
	out, errb, err := st.Output(job, id)
	if err != nil {
		return failed(stderr, "jobs logs", err, exitFailure)
	}
	if r.StdoutDropped > 0 {
		fmt.Fprintf(stdout, "[berth: %d earlier bytes of stdout not kept]\n", r.StdoutDropped)
	}
	termsafe.Raw(stdout).Write(out) // the container's own bytes, escaped on a terminal only
	if r.StderrDropped > 0 {
		fmt.Fprintf(stderr, "[berth: %d earlier bytes of stderr not kept]\n", r.StderrDropped)
	}
	termsafe.Raw(stderr).Write(errb)
	return exitOK
}

func jobsRun(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	var detach *bool
	var wait *time.Duration
	var format *cliflags.Format
	cfg, pos, only, code, ok := jobArgs("run", "NAME [--config FILE] [--env ENV] [--detach] [--wait DURATION] [--format text|json]", args, 1, 1, stderr, func(fs *flag.FlagSet) {
		format = cliflags.AddFormat(fs)
		detach = fs.Bool("detach", false, "return once the run started")
		wait = fs.Duration("wait", 0, "give up waiting for the run after this long (0: the job's timeout, else forever)")
	})
	if !ok {
		return code
	}
	job := pos[0]
	env, err := status.JobEnv(cfg, only, job)
	if err != nil {
		return failed(stderr, "jobs run", err, exitUsage)
	}
	st := cfg.JobStore(env)
	req, timeout, err := st.Ask(job)
	if err != nil {
		return failed(stderr, "jobs run", err, exitFailure)
	}
	if !statedir.Signal(cfg.StateDir) {
		fmt.Fprintf(stderr, "berth jobs run: the agent is not running on %s; it runs %s when it starts\n", cfg.StateDir, job)
		return exitFailure
	}
	if *wait == 0 && timeout > 0 {
		*wait = timeout + time.Minute
	}
	if *wait > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, *wait)
		defer cancel()
	}
	run, err := st.Await(ctx, job, req.ID, *detach)
	if err != nil {
		return failed(stderr, "jobs run", err, exitFailure)
	}
	code = exitOK
	if run.Done() && run.Status != jobs.StatusSucceeded {
		code = exitFailure
	}
	if format.JSON() {
		writeJSON(stdout, run)
		return code
	}
	if !run.Done() {
		fmt.Fprintf(stdout, "run %s started; berth jobs logs %s %s when it ends\n", run.ID, job, run.ID)
		return exitOK
	}
	fmt.Fprintf(stdout, "run %s: %s", run.ID, run.Status)
	if run.Reason != "" {
		fmt.Fprintf(stdout, " (%s)", run.Reason)
	}
	fmt.Fprintln(stdout)
	return code
}

// stamp shows the first non-zero time, local and to the second.
func stamp(ts ...time.Time) string {
	for _, t := range ts {
		if !t.IsZero() {
			return t.Local().Format("2006-01-02 15:04:05")
		}
	}
	return "-"
}

func writeJSON(w io.Writer, v any) int {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
	return exitOK
}
