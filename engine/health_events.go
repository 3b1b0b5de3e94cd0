package engine

import (
	"sync"
	"time"

	"github.com/docker/docker/api/types/events"
	"github.com/docker/docker/api/types/filters"
)

// healthEvents follows containers' health through the engine's event
// stream: one stream for every wait (health_status and die events), so a
// health gate learns the moment a container turns healthy or exits, with
// one inspect per event instead of one every 100 ms per container (which,
// with a few replicas gated at once on a loaded host, is dockerd's CPU
// taken from the containers starting). While the stream is not open the
// waits poll as before.
type healthEvents struct {
	once sync.Once
	mu   sync.Mutex
	up   bool                         // the stream is open
	subs map[string][]chan<- struct{} // by container id
}

// healthPollStreaming and healthPollFallback pace WaitHealthy's inspects
// with the event stream open (a safety net: an event missed, a settle
// time to notice) and without it.
const (
	healthPollStreaming = time.Second
	healthPollFallback  = 100 * time.Millisecond
)

// subscribe returns a channel that receives (without blocking the stream)
// whenever container id has a health or exit event, whether the stream is
// open now, and a function that ends the subscription.
func (e *Engine) subscribeHealth(id string) (<-chan struct{}, bool, func()) {
	h := &e.health
	h.once.Do(func() {
		h.subs = map[string][]chan<- struct{}{}
		first := make(chan struct{})
		go e.healthLoop(first)
		<-first
	})
	ch := make(chan struct{}, 1)
	h.mu.Lock()
	h.subs[id] = append(h.subs[id], ch)
	up := h.up
	h.mu.Unlock()
	return ch, up, func() {
		h.mu.Lock()
		defer h.mu.Unlock()
		list := h.subs[id]
		for i, c := range list {
			if c == ch {
				list = append(list[:i], list[i+1:]...)
				break
			}
		}
		if len(list) == 0 {
			delete(h.subs, id)
		} else {
			h.subs[id] = list
		}
	}
}

// healthUp reports whether the event stream is open.
func (e *Engine) healthUp() bool {
	e.health.mu.Lock()
	defer e.health.mu.Unlock()
	return e.health.up
}

func (e *Engine) healthLoop(first chan struct{}) {
	h := &e.health
	wake := func(list []chan<- struct{}) {
		for _, ch := range list {
			select {
			case ch <- struct{}{}:
			default: // one pending wake-up is enough
			}
		}
	}
	e.follow(filters.NewArgs(
		filters.Arg("type", string(events.ContainerEventType)),
		filters.Arg("event", string(events.ActionHealthStatus)),
		filters.Arg("event", string(events.ActionDie)),
	), first,
		func(subscribed bool) {
			h.mu.Lock()
			h.up = subscribed
			h.mu.Unlock()
		},
		func(m events.Message) {
			h.mu.Lock()
			wake(h.subs[m.Actor.ID])
			h.mu.Unlock()
		},
		func() {
			h.mu.Lock()
			h.up = false
			// Everyone waiting looks again now: an event may have been lost.
			for _, list := range h.subs {
				wake(list)
			}
			h.mu.Unlock()
		})
}
