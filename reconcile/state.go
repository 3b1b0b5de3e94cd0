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
