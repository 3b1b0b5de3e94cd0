package ui

import (
	"time"

	template "berth.dev/berth/internal/htmltemplate"
)

// The view model: what the templates show, built by local.go and
// fleetsrc.go from the journal, the state dir, the job store and etcd.
// Every string in it has been through clean (or cleanBlock); hrefs are
// built by href, with every path segment escaped.

// layout is what every page shares.
type layout struct {
	Title string
	// Scope is what the page shows: "host" (this host's files) or
	// "fleet" (etcd); its live updates follow that only.
	Scope string
	// Nav links the views of this server.
	Nav []link
	// Now is when the page was built.
	Now time.Time
	// Refresh is the plain refresh, in seconds, for browsers without
	// JavaScript (a <noscript> meta refresh).
	Refresh int
	// FP is the fingerprint of what the page shows (live.go).
	FP   string
	Body any
	// Main is Body drawn by its page's template (pageSet.execute).
	Main template.HTML
}

type link struct {
	Text, Href string
	Current    bool
}

// hostView is this host's page: every env the agent runs.
type hostView struct {
	Host string
	// FleetHref links the fleet's view when the agent is in one.
	FleetHref string
	Envs      []envView
}

// envView is one env of this host.
type envView struct {
	Name string
	Live *revView
	// Marks are the states a person must see first: held, failed,
	// paused, waiting, a pass in flight.
	Marks    []mark
	Docker   string // why the containers are missing (Docker not answering)
	Services []serviceView
	Timeline timeline
	Jobs     []jobView
	// HistoryHref lists the env's whole history.
	HistoryHref string
	Err         string
}

// revView is a revision with its commit's details.
type revView struct {
	Commit, Short     string
	Author, Subject   string
	Signer            string
	Since             time.Time
	DeployID, DeployH string // the deploy's id and its record's href
}

// mark is one state of an env or a fleet: Kind is its CSS class and its
// first word (held, failed, paused, waiting, deploying, halted, rollback).
type mark struct {
	Kind   string
	Text   string
	By     string
	At     time.Time
	Commit string
	Href   string
}

type serviceView struct {
	Name, Role string
	// Replicas wanted (0: unknown) and running.
	Replicas, Running int
	LB                string
	Health            string // the worst health of its current containers
	Containers        []containerView
}

type containerView struct {
	Name, State, Health string
	Revision            string // short
	Slot                int
	Ports               []string
	Current             bool // of the live revision
}

// jobView is one job with the strip of its last runs.
type jobView struct {
	Env, Name          string
	Schedule, Timezone string
	Next               time.Time
	Running            int
	Runs               []runView // oldest first: the strip reads left to right
	Href               string
	// Last is the newest run shown in full (with its output tail on the
	// job's page).
	Last *runView
}

type runView struct {
	ID, Href          string
	Status, Class     string // Class: ok, fail, skip, missed, run, interrupted
	Glyph             string // what a text browser shows in the strip
	Trigger, Host     string
	Scheduled         time.Time
	Started, Finished time.Time
	Duration          string
	Exit, Reason      string
	Revision          string
	// Output is the tail of the run's stdout and stderr (redacted when
	// kept, cleaned here), on the run's page only.
	Stdout, Stderr               string
	StdoutDropped, StderrDropped int64
}

// historyView is a filtered page of an env's deploy records.
type historyView struct {
	Env    string
	Envs   []string
	Result string // the filter: a result, or "" for all
	Query  string // the filter: text in the commit, subject, author or reason
	// Results are the choices of the result filter.
	Results    []string
	Rows       []historyRow
	Total      int
	Page       int
	Pages      int
	Prev, Next string
}

type historyRow struct {
	Env, ID, Href   string
	Commit, Short   string
	Author, Subject string
	Started         time.Time
	Duration        string
	Result, Class   string
	Phase, Reason   string
	Passes          int
	Done, Undone    int
}

// deployView is one deploy record.
type deployView struct {
	Env, ID         string
	Commit, Short   string
	Author, Subject string
	Signer          string
	Started         time.Time
	Finished        time.Time
	Duration        string
	Result, Class   string
	ResultClass     string // verdict or outage
	Phase, Reason   string
	Passes          int
	Live            string
	Timeline        timeline
	Phases, Steps   []phaseRow
	Actions         []string
	Done, Undone    []string
	Images          []string
	OneShots        []oneShotRow
	Fleet           *turnView
	HistoryHref     string
}

type phaseRow struct {
	Name, Duration string
	Failed         bool
}

type oneShotRow struct {
	Service, Result, Duration, Output string
}

type turnView struct {
	Asked, Admitted, Released time.Time
	Slot                      int
	Canary, Joining           bool
	Outcome                   string
}

// jobPage is one job: its runs, and one run's output.
type jobPage struct {
	Env  string
	Job  jobView
	Runs []runView // newest first
	Run  *runView  // the run shown with its output
}
