package daemon

import (
	"berth.dev/berth/notify"
	"berth.dev/berth/reconcile"
	"berth.dev/berth/status"
)

// Observer is the hook to follow every env's passes: each step a pass
// enters (Progress: the phase, what it waits on) and how each pass ended
// (PassEnded: the one typed outcome, reconcile.Pass, once its state and
// journal record are durable). The daemon's own consumers are observers —
// the watchdog, STATUS= and the API's live view, metrics, notifications,
// the fleet's host record — and a forge reporter or a status page adds
// its own through Daemon.Observers, reading the same value.
//
// Calls come from the env's pass goroutine, in order, one env after
// another never interleaved within an env. An observer must not block:
// it hands slow work (a forge's API, a page's clients) to a goroutine of
// its own, so that a forge or a page that is down never delays a deploy.
type Observer interface {
	Progress(env string, p reconcile.Progress)
	PassEnded(env string, p reconcile.Pass)
}

// observers fan one env's hooks out to every observer, in order.
type observers []Observer

func (os observers) progress(env string) func(reconcile.Progress) {
	return func(p reconcile.Progress) {
		for _, o := range os {
			o.Progress(env, p)
		}
	}
}

func (os observers) passEnded(env string) func(reconcile.Pass) {
	return func(p reconcile.Pass) {
		for _, o := range os {
			o.PassEnded(env, p)
		}
	}
}

// liveView keeps an env's status.Live (the API's view) and re-renders
// STATUS= when its part changes.
type liveView struct {
	live   *status.Live
	status func()
}

func (v liveView) Progress(_ string, p reconcile.Progress) {
	if v.live.Progress(p) {
		v.status()
	}
}

func (v liveView) PassEnded(_ string, p reconcile.Pass) {
	if v.live.PassEnded(p) {
		v.status()
	}
}

// notifications sends a notification for each pass reconcile says is
// worth one (Pass.Notify).
type notifications struct{ n *notify.Notifier }

func (notifications) Progress(string, reconcile.Progress) {}

func (o notifications) PassEnded(env string, p reconcile.Pass) {
	if p.Notify && o.n != nil {
		o.n.Send(passEvent(env, p))
	}
}

// passOnly is an observer of outcomes alone.
type passOnly func(env string, p reconcile.Pass)

func (passOnly) Progress(string, reconcile.Progress) {}

func (f passOnly) PassEnded(env string, p reconcile.Pass) { f(env, p) }
