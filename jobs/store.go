package jobs

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"berth.dev/berth/envs"
	"berth.dev/berth/internal/atomicfile"
	"berth.dev/berth/internal/failure"
)

// Status of a run.
type Status string

const (
	StatusRunning     Status = "running"
	StatusSucceeded   Status = "succeeded"
	StatusFailed      Status = "failed"
	StatusTimeout     Status = "timeout"
	StatusInterrupted Status = "interrupted"
	StatusSkipped     Status = "skipped"
)

// Triggers of a run.
const (
	TriggerSchedule = "schedule"
	TriggerMissed   = "missed" // a catch-up run after downtime (missed: run_once)
	TriggerManual   = "manual" // berth jobs run
)

// StoreVersion is the format of the job store's files (run records and the
// listing), written in each. Records without one are version 1, the format
// before the field existed: the same fields. A later berth reads every
// earlier version; fields are only ever added.
const StoreVersion = 1

// Run is the record of one run of a job, kept under the state dir.
type Run struct {
	Version   int       `json:"version"`
	ID        string    `json:"id"`
	Job       string    `json:"job"`
	Trigger   string    `json:"trigger"`
	Scheduled time.Time `json:"scheduled,omitzero"` // the schedule's time (before jitter)
	Started   time.Time `json:"started,omitzero"`
	Finished  time.Time `json:"finished,omitzero"`
	// DurationMS is Finished-Started, for readers that do not do time.
	DurationMS int64  `json:"duration_ms,omitempty"`
	Status     Status `json:"status"`
	ExitCode   *int   `json:"exit_code,omitempty"`
	Reason     string `json:"reason,omitempty"`
	// Class of a failed run's cause: "verdict" (the job's own doing: an
	// exit code, a panic while running it) or "outage" (the engine,
	// registry or Vault did not answer).
	Class     string `json:"class,omitempty"`
	Image     string `json:"image,omitempty"` // repo@sha256:… the run used
	Revision  string `json:"revision,omitempty"`
	JobHash   string `json:"job_hash,omitempty"`
	Container string `json:"container,omitempty"`
	// Bytes of output not kept (only the tail of each stream is).
	StdoutDropped int64  `json:"stdout_dropped,omitempty"`
	StderrDropped int64  `json:"stderr_dropped,omitempty"`
	Request       string `json:"request,omitempty"` // id of the berth jobs run request
	// Secrets says the run had secret values (its output is kept only
	// redacted, so not at all after an agent restart).
	Secrets bool `json:"secrets,omitempty"`
	// Host and FenceToken are set on a run of a fleet: the host (this
	// one) and the token of its claim on the scheduled time.
	Host       string `json:"host,omitempty"`
	FenceToken int64  `json:"fence_token,omitempty"`
}

// Done says whether the run has ended.
func (r *Run) Done() bool { return r.Status != StatusRunning }

// Store keeps run records and their output: <dir>/<job>/<run>.json, .out
// and .err, files 0600, written atomically. Records survive restarts; the
// oldest runs beyond a job's history limit are removed with their output.
type Store struct {
	Dir string // <state_dir>/jobs
}

func (s *Store) jobDir(job string) string { return filepath.Join(s.Dir, "runs", job) }

// storeFault marks a write that failed because the state dir is full or
// read-only as an outage: it passes when space returns.
func storeFault(err error) error {
	if errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) || errors.Is(err, syscall.EROFS) {
		return failure.AsOutage(err)
	}
	return err
}

// Save writes r.
func (s *Store) Save(r *Run) error {
	if !envs.ValidJobName(r.Job) {
		return fmt.Errorf("job records: invalid job name %q", r.Job)
	}
	dir := s.jobDir(r.Job)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("job records: %w", err)
	}
	r.Version = StoreVersion
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	if err := atomicfile.WriteFile(filepath.Join(dir, r.ID+".json"), append(b, '\n'), 0o600); err != nil {
		return storeFault(fmt.Errorf("job records: %w", err))
	}
	return nil
}

// SaveOutput writes a run's stdout and stderr.
func (s *Store) SaveOutput(job, id string, stdout, stderr []byte) error {
	dir := s.jobDir(job)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("job output: %w", err)
	}
	for ext, b := range map[string][]byte{".out": stdout, ".err": stderr} {
		if err := atomicfile.WriteFile(filepath.Join(dir, id+ext), b, 0o600); err != nil {
			return storeFault(fmt.Errorf("job output: %w", err))
		}
	}
	return nil
}

// Output returns a run's stdout and stderr (empty when none was kept).
func (s *Store) Output(job, id string) (stdout, stderr []byte, err error) {
	dir := s.jobDir(job)
	stdout, err = os.ReadFile(filepath.Join(dir, id+".out"))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, nil, err
	}
	stderr, err = os.ReadFile(filepath.Join(dir, id+".err"))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, nil, err
	}
	return stdout, stderr, nil
}

// Runs returns job's records, newest first.
func (s *Store) Runs(job string) ([]Run, error) {
	ents, err := os.ReadDir(s.jobDir(job))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []Run
	for _, e := range ents {
		name := e.Name()
		if !strings.HasSuffix(name, ".json") || strings.HasPrefix(name, ".") {
			continue
		}
		b, err := os.ReadFile(filepath.Join(s.jobDir(job), name))
		if err != nil {
			return nil, err
		}
		var r Run
		if err := json.Unmarshal(b, &r); err != nil {
			return nil, fmt.Errorf("job record %s/%s: %w", job, name, err)
		}
		out = append(out, r)
	}
	// Ids are time-ordered.
	slices.SortFunc(out, func(a, b Run) int { return strings.Compare(b.ID, a.ID) })
	return out, nil
}

// Run returns one record.
func (s *Store) Run(job, id string) (*Run, error) {
	b, err := os.ReadFile(filepath.Join(s.jobDir(job), id+".json"))
	if err != nil {
		return nil, err
	}
	var r Run
	return &r, json.Unmarshal(b, &r)
}

// Jobs returns the names of jobs with records.
func (s *Store) Jobs() ([]string, error) {
	ents, err := os.ReadDir(filepath.Join(s.Dir, "runs"))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	var out []string
	for _, e := range ents {
		if e.IsDir() {
			out = append(out, e.Name())
		}
	}
	return out, err
}

// Prune keeps job's newest keep finished records (and any still running).
func (s *Store) Prune(job string, keep int) error {
	runs, err := s.Runs(job)
	if err != nil {
		return err
	}
	kept := 0
	var errs []error
	for _, r := range runs {
		if !r.Done() || kept < keep {
			kept += btoi(r.Done())
			continue
		}
		for _, ext := range []string{".json", ".out", ".err"} {
			if err := os.Remove(filepath.Join(s.jobDir(job), r.ID+ext)); err != nil && !errors.Is(err, fs.ErrNotExist) {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// Listing is what `berth jobs list` and the API show: the live revision's
// jobs and when each runs next, written by the scheduler when it changes.
type Listing struct {
	Version  int       `json:"version"`
	Revision string    `json:"revision"`
	Updated  time.Time `json:"updated"`
	Jobs     []Entry   `json:"jobs"`
}

// Entry is one job in a Listing.
type Entry struct {
	Name        string    `json:"name"`
	Schedule    string    `json:"schedule"`
	Timezone    string    `json:"timezone,omitempty"`
	Service     string    `json:"service,omitempty"`
	Image       string    `json:"image"`
	Command     []string  `json:"command,omitempty"`
	Timeout     string    `json:"timeout,omitempty"`
	Concurrency string    `json:"concurrency"`
	Missed      string    `json:"missed"`
	Jitter      string    `json:"jitter,omitempty"`
	History     int       `json:"history"`
	Hash        string    `json:"hash"`
	Next        time.Time `json:"next,omitzero"`
	Running     []string  `json:"running,omitempty"` // run ids in flight
	RunOn       string    `json:"run_on,omitempty"`  // with a fleet: one or all
}

func (s *Store) listingPath() string { return filepath.Join(s.Dir, "jobs.json") }

// SaveListing writes l.
func (s *Store) SaveListing(l *Listing) error {
	if err := os.MkdirAll(s.Dir, 0o700); err != nil {
		return storeFault(err)
	}
	l.Version = StoreVersion
	b, err := json.MarshalIndent(l, "", "  ")
	if err != nil {
		return err
	}
	return storeFault(atomicfile.WriteFile(s.listingPath(), append(b, '\n'), 0o600))
}

// Listing reads the listing; an agent that never loaded jobs has none.
func (s *Store) Listing() (*Listing, error) {
	b, err := os.ReadFile(s.listingPath())
	if errors.Is(err, fs.ErrNotExist) {
		return &Listing{}, nil
	}
	if err != nil {
		return nil, err
	}
	var l Listing
	if err := json.Unmarshal(b, &l); err != nil {
		return nil, fmt.Errorf("%s: %w", s.listingPath(), err)
	}
	return &l, nil
}

// Request asks the agent to run a job now (berth jobs run).
type Request struct {
	ID  string    `json:"id"`
	Job string    `json:"job"`
	At  time.Time `json:"at"`
}

func (s *Store) requestDir() string { return filepath.Join(s.Dir, "requests") }

// SubmitRequest leaves r for the agent.
func (s *Store) SubmitRequest(r Request) error {
	if err := os.MkdirAll(s.requestDir(), 0o700); err != nil {
		return err
	}
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	return atomicfile.WriteFile(filepath.Join(s.requestDir(), r.ID+".json"), b, 0o600)
}

// TakeRequests returns and removes the pending requests, oldest first.
func (s *Store) TakeRequests() ([]Request, error) {
	ents, err := os.ReadDir(s.requestDir())
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []Request
	for _, e := range ents {
		if !strings.HasSuffix(e.Name(), ".json") || strings.HasPrefix(e.Name(), ".") {
			continue
		}
		p := filepath.Join(s.requestDir(), e.Name())
		b, err := os.ReadFile(p)
		os.Remove(p)
		var r Request
		if err != nil || json.Unmarshal(b, &r) != nil {
			continue
		}
		out = append(out, r)
	}
	slices.SortFunc(out, func(a, b Request) int { return a.At.Compare(b.At) })
	return out, nil
}

var idSeq atomic.Uint32

// NewID is a time-ordered unique id: "20261124T101500.123Z-0001a2b3"; a
// sequence number keeps ids made in the same millisecond in order.
func NewID(now time.Time) string {
	b := make([]byte, 2)
	rand.Read(b)
	return fmt.Sprintf("%s-%04x%s", now.UTC().Format("20060102T150405.000Z"), idSeq.Add(1)&0xffff, hex.EncodeToString(b))
}

// NewestFinished is the id of job's newest run that ended and made output
// (not a skipped one): what `berth jobs logs NAME` shows.
func (s *Store) NewestFinished(job string) (string, error) {
	runs, err := s.Runs(job)
	if err != nil {
		return "", err
	}
	for _, r := range runs {
		if r.Done() && r.Status != StatusSkipped {
			return r.ID, nil
		}
	}
	return "", fmt.Errorf("job %s has no finished run", job)
}
