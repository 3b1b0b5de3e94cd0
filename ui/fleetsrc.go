package ui

import (
	"context"
	"fmt"
	"io"
	"slices"
	"sync"
	"time"

	"berth.dev/berth/fleet"
)

// FleetReader is what the fleet's pages read from etcd; *fleet.Client is
// one. A page costs one Overview (one transaction per dozen envs),
// whatever the number of hosts, jobs or revisions.
type FleetReader interface {
	Envs(ctx context.Context) ([]string, error)
	Overview(ctx context.Context, envs []string) ([]fleet.Overview, error)
	Revision(ctx context.Context) (int64, error)
}

// Fleet is the fleet's side of the page.
type Fleet struct {
	Reader FleetReader
	// Envs are shown always (the agent's own); others found under the
	// prefix are shown too unless Only is set.
	Envs []string
	Only bool
	// Host is this agent's name in the fleet ("" for berth ui): its row
	// links the host's own page.
	Host string

	mu     sync.Mutex
	envs   []string
	envsAt time.Time
	// The last read: when it landed and how it ended; good is the last
	// read that succeeded, made at goodAt.
	lastAt   time.Time
	lastErr  error
	good     []fleet.Overview
	goodAt   time.Time
	inflight chan struct{}
	// etcd's revision as the live updates last read it (revErr: that
	// read failed), and whether a read of it is in flight.
	rev     int64
	revErr  bool
	revAt   time.Time
	revBusy bool
}

// How long a read is reused: every viewer of a page within snapFor
// shares one etcd read; the env list is read again every envsFor.
const (
	snapFor = time.Second
	envsFor = 30 * time.Second
	// fleetTimeout bounds a read of etcd, made in the background: a
	// page waits for it at most pageWait, then shows the last fleet it
	// has (or says that etcd has not answered), and the read that lands
	// later serves the next page.
	fleetTimeout = 5 * time.Second
	pageWait     = 2 * time.Second
)

// errSlow is a read still in flight when a page stopped waiting for it.
var errSlow = fmt.Errorf("etcd has not answered within %s", pageWait)

// overview is the fleet for a page: a fresh read shared by concurrent
// requests, or, when etcd fails or is slow, the error with the last fleet
// read (nil if none) and when it was read. At most one read is in flight,
// whatever the number of viewers, and no page waits longer than pageWait.
func (f *Fleet) overview(ctx context.Context, clock func() time.Time) (snap []fleet.Overview, at time.Time, err error) {
	now := clock()
	f.mu.Lock()
	if !f.lastAt.IsZero() && now.Sub(f.lastAt) < snapFor {
		defer f.mu.Unlock()
		return f.good, f.goodAt, f.lastErr
	}
	ch := f.inflight
	if ch == nil {
		ch = make(chan struct{})
		f.inflight = ch
		go f.refresh(ch, clock)
	}
	f.mu.Unlock()
	wait := time.NewTimer(pageWait)
	defer wait.Stop()
	select {
	case <-ch:
	case <-wait.C:
	case <-ctx.Done():
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	select {
	case <-ch:
		return f.good, f.goodAt, f.lastErr
	default:
		return f.good, f.goodAt, errSlow
	}
}

// refresh reads the fleet, detached from the page that asked (it serves
// the next ones), and closes done.
func (f *Fleet) refresh(done chan struct{}, clock func() time.Time) {
	start := clock()
	ctx, cancel := context.WithTimeout(context.Background(), fleetTimeout)
	snap, err := f.read(ctx, start)
	cancel()
	f.mu.Lock()
	f.lastAt, f.lastErr, f.inflight = clock(), err, nil
	if err == nil {
		f.good, f.goodAt = snap, start
	}
	f.mu.Unlock()
	close(done)
}

// forget drops the last read and the env list (the page was not
// requested for a while), and the reader's own cache when it keeps one.
func (f *Fleet) forget() {
	f.mu.Lock()
	f.good, f.goodAt, f.lastAt, f.lastErr, f.envs, f.envsAt = nil, time.Time{}, time.Time{}, nil, nil, time.Time{}
	f.mu.Unlock()
	if r, ok := f.Reader.(interface{ Forget() }); ok {
		r.Forget()
	}
}

func (f *Fleet) read(ctx context.Context, now time.Time) ([]fleet.Overview, error) {
	names := slices.Clone(f.Envs)
	if !f.Only {
		f.mu.Lock()
		known, at := f.envs, f.envsAt
		f.mu.Unlock()
		if at.IsZero() || now.Sub(at) >= envsFor {
			found, err := f.Reader.Envs(ctx)
			if err != nil {
				return nil, fmt.Errorf("etcd unreachable: list envs: %w", err)
			}
			known = found
			f.mu.Lock()
			f.envs, f.envsAt = found, now
			f.mu.Unlock()
		}
		for _, e := range known {
			if !slices.Contains(names, e) {
				names = append(names, e)
			}
		}
	}
	slices.Sort(names)
	if len(names) == 0 {
		return nil, nil
	}
	out, err := f.Reader.Overview(ctx, names)
	if err != nil {
		return nil, fmt.Errorf("etcd unreachable: %w", err)
	}
	return out, nil
}

// stamp writes what the live updates compare of the fleet: etcd's
// revision as last read, and whether that read failed. It never waits:
// when the revision is older than fpEvery, one read of it starts in the
// background and the next stamp has it.
func (f *Fleet) stamp(w io.Writer, now time.Time) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fmt.Fprintf(w, "etcd %d %t\n", f.rev, f.revErr)
	if f.revBusy || (!f.revAt.IsZero() && now.Sub(f.revAt) < fpEvery) {
		return
	}
	f.revBusy = true
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), fleetTimeout)
		rev, err := f.Reader.Revision(ctx)
		cancel()
		f.mu.Lock()
		defer f.mu.Unlock()
		f.revBusy, f.revAt, f.revErr = false, now, err != nil
		if err == nil {
			f.rev = rev
		}
	}()
}
