package reconcile

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/hashicorp/go-hclog"

	"berth.dev/berth/internal/atomicfile"
)

// State is what the agent remembers between passes, in state.json under the
// state dir (0600, written atomically). The host's containers are the truth
// about what runs; this records which revision is live, and which failed
// and must not be retried until a new commit or an operator asks.
type State struct {
	// Format is the state file format (StateFormat when written by this
	// berth; 0 before formats were recorded, read the same way).
	Format int            `json:"format"`
	Live   *RevisionState `json:"live,omitempty"`
	Failed *RevisionState `json:"failed,omitempty"`
	// Hold pins the host to a revision (berth rollback) instead of the
	// branch head, until `berth resume` or, when Hold.UntilNewCommit, the
	// head moves past Hold.Head.
	Hold *Hold `json:"hold,omitempty"`
	// Pause stops following the branch (berth pause) until berth resume.
	Pause *Pause `json:"pause,omitempty"`
	// FleetHeld is the head the fleet halted, and FleetRetry the fleet's
	// retry generation this host last saw (fleet.go).
	FleetHeld  *FleetHeld `json:"fleet_held,omitempty"`
	FleetRetry int64      `json:"fleet_retry,omitempty"`
}

// Hold is a rollback in force.
type Hold struct {
	Commit         string    `json:"commit"`
	Head           string    `json:"head"` // the branch head when the hold began
	UntilNewCommit bool      `json:"until_new_commit"`
	At             time.Time `json:"at"`
}

// Request is an operator's word to the agent (berth rollback, retry,
// resume), left in request.json for the agent's next check: the agent is the
// only writer of state.json.
type Request struct {
	Action string    `json:"action"` // rollback | retry | resume | pause
	Commit string    `json:"commit,omitempty"`
	At     time.Time `json:"at"`
	// By and Reason say who paused and why (pause).
	By     string `json:"by,omitempty"`
	Reason string `json:"reason,omitempty"`
}

// RollbackTarget is the revision `berth rollback` goes back to: the
// newest one this host deployed successfully that is not live, or, with
// want, the newest successful one whose commit begins with want; "" when
// the journal (recs, newest first) has none.
func RollbackTarget(recs []Record, live, want string) string {
	for _, r := range recs {
		if r.Result != ResultSucceeded {
			continue
		}
		if want == "" && r.Commit != live || want != "" && strings.HasPrefix(r.Commit, want) {
			return r.Commit
		}
	}
	return ""
}

func requestPath(dir string) string { return filepath.Join(dir, "request.json") }

// SubmitRequest leaves r for the agent, replacing any earlier request.
func SubmitRequest(dir string, r Request) error {
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	return atomicfile.WriteFile(requestPath(dir), b, 0o600)
}

// readRequest reads the pending request, if any, and its raw bytes (for
// dropRequest). An unreadable request is dropped with an error: it must not
// block every later pass.
func readRequest(dir string, log hclog.Logger) (*Request, []byte, error) {
	b, err := os.ReadFile(requestPath(dir))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil, nil
	}
	if err != nil {
		return nil, nil, fmt.Errorf("read request: %w", err)
	}
	var r Request
	if err := json.Unmarshal(b, &r); err != nil {
		log.Warn("unreadable request dropped", "error", err)
		if rerr := os.Remove(requestPath(dir)); rerr != nil {
			return nil, nil, fmt.Errorf("drop unreadable request %s: %w", requestPath(dir), rerr)
		}
		return nil, nil, nil
	}
	return &r, b, nil
}

// dropRequest removes the request once it is applied, unless a newer one
// replaced it meanwhile.
func dropRequest(dir string, applied []byte) error {
	b, err := os.ReadFile(requestPath(dir))
	if errors.Is(err, fs.ErrNotExist) || (err == nil && !bytes.Equal(b, applied)) {
		return nil
	}
	if err == nil {
		err = os.Remove(requestPath(dir))
	}
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("drop applied request: %w", err)
	}
	return nil
}

// RevisionState is one revision and what happened to it.
type RevisionState struct {
	Commit   string    `json:"commit"`
	DeployID string    `json:"deploy_id,omitempty"`
	At       time.Time `json:"at"`
	Reason   string    `json:"reason,omitempty"`
}

// StateFormat is the state.json format this berth writes.
const StateFormat = 1

func statePath(dir string) string { return filepath.Join(dir, "state.json") }

// LoadState reads the state file; a missing one is an empty state.
func LoadState(dir string) (State, error) {
	var s State
	b, err := os.ReadFile(statePath(dir))
	if errors.Is(err, fs.ErrNotExist) {
		return s, nil
	}
	if err != nil {
		return s, fmt.Errorf("read state: %w", err)
	}
	if err := json.Unmarshal(b, &s); err != nil {
		return s, fmt.Errorf("read state %s: %w", statePath(dir), err)
	}
	if s.Format > StateFormat {
		return s, fmt.Errorf("read state %s: format %d is newer than this berth reads (%d): a newer berth wrote it", statePath(dir), s.Format, StateFormat)
	}
	return s, nil
}

// SaveState writes the state file atomically.
func SaveState(dir string, s State) error {
	s.Format = StateFormat
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.WriteFile(statePath(dir), b, 0o600)
}
