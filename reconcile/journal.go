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

// Results of a deploy record.
const (
	ResultRunning     = "running"
	ResultSucceeded   = "succeeded"
	ResultFailed      = "failed" // rolled back
	ResultInterrupted = "interrupted"
)

// Record is one deploy in the journal: written before each phase is taken
// and when the deploy ends, so `berth history` shows what happened and a
// restarted agent sees which deploy it was in.
type Record struct {
	ID       string           `json:"id"`
	Env      string           `json:"env"`
	Commit   string           `json:"commit"`
	Author   string           `json:"author,omitempty"`
	Subject  string           `json:"subject,omitempty"`
	Started  time.Time        `json:"started"`
	Finished time.Time        `json:"finished,omitzero"`
	Result   string           `json:"result"`
	Phase    string           `json:"phase,omitempty"` // the phase being (or last) taken
	Reason   string           `json:"reason,omitempty"`
	Actions  []string         `json:"actions,omitempty"`
	Images   []string         `json:"images,omitempty"` // every image the revision uses
	Phases   []Phase          `json:"phases,omitempty"`
	OneShots []migrate.Record `json:"one_shots,omitempty"`
}

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
		r.Reason = "the agent stopped during phase " + r.Phase
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
