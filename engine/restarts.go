package engine

import (
	"context"
	"sync"
	"time"

	"berth.dev/berth/internal/backoff"
	"github.com/docker/docker/api/types/events"
	"github.com/docker/docker/api/types/filters"
)

// restarts notices when dockerd stops: a restarting engine without
// live-restore stops every container on its way down, and a container that
// exits because of that says nothing about the revision. An open event
// stream breaks when the engine stops; berth keeps one (filtered to the
// engine's own rare events, so nothing flows on it) from the first
// container it creates on.
type restarts struct {
	once    sync.Once
	mu      sync.Mutex
	up      time.Time // the stream is open since; zero while it is not
	lastGap time.Time // the last time it was not open
}

// watchRestarts starts watching the engine's event stream, once, and
// returns when the first subscription was answered (or failed).
func (e *Engine) watchRestarts() {
	e.restarts.once.Do(func() {
		first := make(chan struct{})
		go e.watchLoop(first)
		<-first
	})
}

// subscribe opens an event stream filtered by args. Events returns once
// the engine answered the request: that is bounded as any call, then the
// stream runs until cancel. subscribed says the engine answered.
func (e *Engine) subscribe(args filters.Args) (msgs <-chan events.Message, errs <-chan error, cancel func(), subscribed bool) {
	ctx, cancel := context.WithCancel(context.Background())
	bound := e.Timeouts.Call
	if bound <= 0 {
		bound = DefaultTimeouts.Call
	}
	timer := time.AfterFunc(bound, cancel)
	msgs, errs = e.c.Events(ctx, events.ListOptions{Filters: args})
	return msgs, errs, cancel, timer.Stop() && len(errs) == 0
}

// streamRetry is the pace of resubscribing to the engine's event
// streams: 1 s after a stream broke, doubling to 30 s while the engine
// stays away.
var streamRetry = backoff.Policy{Min: time.Second, Max: 30 * time.Second, Jitter: 0.1}

func (e *Engine) watchLoop(first chan struct{}) {
	r := &e.restarts
	e.follow(filters.NewArgs(filters.Arg("type", string(events.DaemonEventType))), first,
		func(subscribed bool) {
			r.mu.Lock()
			if subscribed {
				r.up = time.Now()
			} else {
				r.lastGap = time.Now()
			}
			r.mu.Unlock()
		},
		func(events.Message) {},
		func() {
			r.mu.Lock()
			r.up, r.lastGap = time.Time{}, time.Now()
			r.mu.Unlock()
		})
}

// follow keeps an event stream of args open for good: up is told whether
// each subscription took, msg gets each event, down is called when the
// stream breaks; first is closed after the first subscription (taken or
// not). It resubscribes soon after a restart and backs off while the
// engine stays away.
func (e *Engine) follow(args filters.Args, first chan struct{}, up func(subscribed bool), msg func(events.Message), down func()) {
	failures := 0
	for {
		msgs, errs, cancel, subscribed := e.subscribe(args)
		up(subscribed)
		if first != nil {
			close(first)
			first = nil
		}
	stream:
		for {
			select {
			case m := <-msgs:
				msg(m)
			case <-errs:
				break stream
			}
		}
		cancel()
		down()
		if subscribed {
			failures = 0
		}
		failures++
		time.Sleep(streamRetry.Delay(failures))
	}
}

// mayHaveRestarted reports whether the engine may have stopped since t:
// berth's event stream broke since, or was not open at t.
func (e *Engine) mayHaveRestarted(since time.Time) bool {
	r := &e.restarts
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.up.IsZero() || r.up.After(since) || r.lastGap.After(since)
}
