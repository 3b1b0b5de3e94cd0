package reconcile

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"berth.dev/berth/internal/atomicfile"
	"berth.dev/berth/migrate"
)

// RecordFormat is the journal record format this berth writes. Records
// without a format field are format 0 (berth before failure classes): they
// read as they are, with no class, passes or live commit.
const RecordFormat = 1

// Record is one pass in the journal, or a run of passes that ended the same
// way (Passes counts them: an outage of an hour is one record, not sixty).
// A deploy's record is written before each phase that changes the host and
// when the pass ends, so `berth history` shows what happened and a
// restarted agent sees which deploy it was in.
type Record struct {
	Format int    `json:"format"`
	ID     string `json:"id"`
	Env    string `json:"env"`
	// Commit is the revision the pass was about (empty when the branch
	// head could not be read).
	Commit  string `json:"commit"`
	Author  string `json:"author,omitempty"`
	Subject string `json:"subject,omitempty"`
	// Signer is the key id that signed Commit, when signatures are
	// verified.
	Signer   string    `json:"signer,omitempty"`
	Started  time.Time `json:"started"`
	Finished time.Time `json:"finished,omitzero"`
	Result   Result    `json:"result"`
	// Class is what ended a failed or outage pass: verdict or outage.
	Class  string `json:"class,omitempty"`
	Phase  Phase  `json:"phase,omitempty"` // the phase being (or last) taken
	Reason string `json:"reason,omitempty"`
	// Live is the live commit once the pass ended.
	Live    string   `json:"live,omitempty"`
	Changed bool     `json:"changed,omitempty"` // the plan had something to do
	Actions []string `json:"actions,omitempty"`
	// Done is what the pass changed on the host, in order; Undone what
	// its rollback put back (a migration that ran is never undone).
	Done   []string `json:"done,omitempty"`
	Undone []string `json:"undone,omitempty"`
	Images []string `json:"images,omitempty"` // every image the revision uses
	Phases []Timing `json:"phases,omitempty"`
	// Steps time the pass's own work outside the deploy's phases: list,
	// fetch, load, plan (secrets and the container listing included), and
	// the journal writes before each phase.
	Steps    []Timing         `json:"steps,omitempty"`
	OneShots []migrate.Record `json:"one_shots,omitempty"`
	// Passes is how many passes ended this way (0 or 1: this one only);
	// LastPass is when the latest of them ended.
	Passes   int       `json:"passes,omitempty"`
	LastPass time.Time `json:"last_pass,omitzero"`
	// WatchUntil is when the watch of the deploy's switched servers ends
	// (x-berth.watch), once the deploy reached it.
	WatchUntil time.Time `json:"watch_until,omitzero"`
	// Fleet is the deploy's turn in a fleet's rollout (fleet.go).
	Fleet *FleetTurn `json:"fleet,omitempty"`
}

// Count is how many passes the record stands for.
func (r *Record) Count() int { return max(r.Passes, 1) }

// Journal keeps deploy records under the state dir, one file each, 0600,
// written atomically.
type Journal struct {
	Dir  string // <state_dir>/deploys
	Keep int    // records kept; default 200
}

// Write records rec (replacing its previous version).
func (j *Journal) Write(rec *Record) error {
	if err := os.MkdirAll(j.Dir, 0o700); err != nil {
		return fmt.Errorf("journal: %w", err)
	}
	rec.Format = RecordFormat
	b, err := json.MarshalIndent(rec, "", "  ")
	if err != nil {
		return fmt.Errorf("journal: %w", err)
	}
	return atomicfile.WriteFile(filepath.Join(j.Dir, rec.ID+".json"), b, 0o600)
}

// List returns the records, newest first (IDs sort by time).
func (j *Journal) List() ([]Record, error) {
	entries, err := os.ReadDir(j.Dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("journal: %w", err)
	}
	var recs []Record
	for _, e := range entries {
		if !strings.HasSuffix(e.Name(), ".json") || strings.HasPrefix(e.Name(), ".") {
			continue
		}
		b, err := os.ReadFile(filepath.Join(j.Dir, e.Name()))
		if err != nil {
			return nil, fmt.Errorf("journal: %w", err)
		}
		var r Record
		if err := json.Unmarshal(b, &r); err != nil {
			return nil, fmt.Errorf("journal %s: %w", e.Name(), err)
		}
		recs = append(recs, r)
	}
	slices.SortFunc(recs, func(a, b Record) int { return strings.Compare(b.ID, a.ID) })
	return recs, nil
}

// Newest returns the newest record, nil when there is none. It reads one
// file: an idle pass consults it on every poll.
func (j *Journal) Newest() (*Record, error) {
	entries, err := os.ReadDir(j.Dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("journal: %w", err)
	}
	for i := len(entries) - 1; i >= 0; i-- { // ReadDir sorts by name: IDs sort by time
		name := entries[i].Name()
		if !strings.HasSuffix(name, ".json") || strings.HasPrefix(name, ".") {
			continue
		}
		b, err := os.ReadFile(filepath.Join(j.Dir, name))
		if err != nil {
			return nil, fmt.Errorf("journal: %w", err)
		}
		var r Record
		if err := json.Unmarshal(b, &r); err != nil {
			return nil, fmt.Errorf("journal %s: %w", name, err)
		}
		return &r, nil
	}
	return nil, nil
}

// Recover marks deploys that were running when the agent died as
// interrupted: the next pass converges the host from its containers.
func (j *Journal) Recover() ([]Record, error) {
	recs, err := j.List()
	if err != nil {
		return nil, err
	}
	var out []Record
	for _, r := range recs {
		if r.Result != ResultRunning {
			continue
		}
		r.Result, r.Finished = ResultInterrupted, time.Now().UTC()
		r.Reason = "the agent stopped during phase " + string(r.Phase)
		if err := j.Write(&r); err != nil {
			return out, err
		}
		out = append(out, r)
	}
	return out, nil
}

// Prune removes the oldest records beyond Keep.
func (j *Journal) Prune() error {
	keep := j.Keep
	if keep <= 0 {
		keep = 200
	}
	recs, err := j.List()
	if err != nil || len(recs) <= keep {
		return err
	}
	for _, r := range recs[keep:] {
		if err := os.Remove(filepath.Join(j.Dir, r.ID+".json")); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("journal: %w", err)
		}
	}
	return nil
}
