package main

import (
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"berth.dev/berth/fleet"
	"berth.dev/berth/jobs"
)

// printFleetJobHistory prints the fleet's records, each naming its host.
func printFleetJobHistory(w io.Writer, runs []fleet.JobRecord, asJSON bool) int {
	if asJSON {
		if runs == nil {
			runs = []fleet.JobRecord{}
		}
		return writeJSON(w, runs)
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SCHEDULED\tHOST\tSTATUS\tEXIT\tSTARTED\tDURATION\tTOKEN\tRUN\tREASON")
	for _, r := range runs {
		exit, dur, run := "-", "-", r.RunID
		if r.Status == string(jobs.StatusSucceeded) || r.Status == string(jobs.StatusFailed) {
			exit = fmt.Sprint(r.ExitCode)
		}
		if !r.Started.IsZero() && !r.Ended.IsZero() {
			dur = r.Ended.Sub(r.Started).Round(time.Millisecond).String()
		}
		if run == "" {
			run = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%d\t%s\t%s\n", stamp(r.Scheduled), r.Host, r.Status, exit, stamp(r.Started), dur, r.Token, run, r.Reason)
	}
	tw.Flush()
	return exitOK
}
