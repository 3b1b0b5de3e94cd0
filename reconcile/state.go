package reconcile

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"berth.dev/berth/internal/atomicfile"
)

// State is what the agent remembers between passes, in state.json under the
// state dir (0600, written atomically). The host's containers are the truth
// about what runs; this records which revision is live, and which failed
// and must not be retried until a new commit or an operator asks.
type State struct {
	Live   *RevisionState `json:"live,omitempty"`
	Failed *RevisionState `json:"failed,omitempty"`
	// Hold pins the host to a revision (berth rollback) instead of the
	// branch head, until `berth resume` or, when Hold.UntilNewCommit, the
	// head moves past Hold.Head.
	Hold *Hold `json:"hold,omitempty"`
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
	Action string    `json:"action"` // rollback | retry | resume
	Commit string    `json:"commit,omitempty"`
	At     time.Time `json:"at"`
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

// takeRequest reads and removes the pending request, if any.
func takeRequest(dir string) (*Request, error) {
	b, err := os.ReadFile(requestPath(dir))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read request: %w", err)
	}
	var r Request
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("read request %s: %w", requestPath(dir), err)
	}
	return &r, os.Remove(requestPath(dir))
}

// RevisionState is one revision and what happened to it.
type RevisionState struct {
	Commit   string    `json:"commit"`
	DeployID string    `json:"deploy_id,omitempty"`
	At       time.Time `json:"at"`
	Reason   string    `json:"reason,omitempty"`
}

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
	return s, nil
}

// SaveState writes the state file atomically.
func SaveState(dir string, s State) error {
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.WriteFile(statePath(dir), b, 0o600)
}
