package chaos

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"time"
)

// Event is one line of a ledger: a side effect's start or end, what an
// agent was told, a fault, an operator's operation. Times are the real
// clock of the machine (every process of a run shares it), never an
// agent's skewed one.
type Event struct {
	At   int64  `json:"at"` // unix ns
	Host string `json:"host"`
	Pid  int    `json:"pid,omitempty"`
	Kind string `json:"kind"`

	Rev     string `json:"rev,omitempty"`   // a revision
	Job     string `json:"job,omitempty"`   // a job's name
	T       int64  `json:"t,omitempty"`     // a job's scheduled time, unix ns
	Mig     string `json:"mig,omitempty"`   // a migration's id
	Token   int64  `json:"token,omitempty"` // a fencing token
	Slot    int    `json:"slot,omitempty"`
	AdmRev  int64  `json:"adm_rev,omitempty"` // the etcd revision that admitted a deploy
	Canary  bool   `json:"canary,omitempty"`
	Joining bool   `json:"joining,omitempty"`
	Idem    bool   `json:"idem,omitempty"`
	Forbid  bool   `json:"forbid,omitempty"`
	OK      bool   `json:"ok,omitempty"`
	Outcome string `json:"outcome,omitempty"`
	Lease   string `json:"lease,omitempty"`
	Target  string `json:"target,omitempty"` // a fault's target (agent, member)
	Dur     int64  `json:"dur,omitempty"`    // ns
	Note    string `json:"note,omitempty"`
}

// Time is At as a time.
func (e Event) Time() time.Time { return time.Unix(0, e.At) }

// Ledger appends events to one file, each line fsynced before Write
// returns: a side effect is on disk before it starts.
type Ledger struct {
	mu   sync.Mutex
	f    *os.File
	host string
	pid  int
}

// OpenLedger opens (creates) the ledger of host in dir.
func OpenLedger(dir, host string) (*Ledger, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("create ledger dir: %w", err)
	}
	f, err := os.OpenFile(filepath.Join(dir, host+".jsonl"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open ledger: %w", err)
	}
	return &Ledger{f: f, host: host, pid: os.Getpid()}, nil
}

// Write appends e (stamped now unless At is set) and syncs it.
func (l *Ledger) Write(e Event) {
	if e.At == 0 {
		e.At = time.Now().UnixNano()
	}
	e.Host, e.Pid = l.host, l.pid
	b, _ := json.Marshal(e)
	l.mu.Lock()
	defer l.mu.Unlock()
	if _, err := l.f.Write(append(b, '\n')); err != nil {
		fmt.Fprintf(os.Stderr, "ledger %s: %v\n", l.host, err)
		os.Exit(70) // a side effect we cannot record must not happen
	}
	if err := l.f.Sync(); err != nil {
		fmt.Fprintf(os.Stderr, "ledger %s: sync: %v\n", l.host, err)
		os.Exit(70)
	}
}

// Close closes the file.
func (l *Ledger) Close() error { return l.f.Close() }

// ReadLedgers reads every ledger in dir, sorted by time. A last line cut
// short by a SIGKILL is skipped.
func ReadLedgers(dir string) ([]Event, error) {
	files, err := filepath.Glob(filepath.Join(dir, "*.jsonl"))
	if err != nil {
		return nil, err
	}
	var out []Event
	for _, name := range files {
		f, err := os.Open(name)
		if err != nil {
			return nil, err
		}
		sc := bufio.NewScanner(f)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			var e Event
			if json.Unmarshal(sc.Bytes(), &e) == nil {
				out = append(out, e)
			}
		}
		f.Close()
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].At < out[j].At })
	return out, nil
}
