package reconcile

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"berth.dev/berth/engine"
	"berth.dev/berth/internal/backoff"
	"berth.dev/berth/internal/failure"
	"berth.dev/berth/lb"
)

// The watch (x-berth.watch): after the switch, each watched server's old
// containers keep running, out of the balancer, while the new ones must
// stay healthy — running, not reported unhealthy by their HEALTHCHECK —
// and, where the balancer counts answers (HAProxy), must not fail more of
// them than the old ones did. A failure within the watch is a verdict on
// the revision: the deploy rolls back, which switches back to the old
// servers (instantly: they still run; HAProxy kept them in maintenance),
// removes the new ones and restarts the old workers.

const (
	// watchEvery paces the watch's reading of the balancer's counts (one
	// `show stat` per HAProxy backend, over a local socket); the
	// containers are listed every other time.
	watchEvery = 250 * time.Millisecond
	// watchOutageGrace is how long the watch goes on while Docker or the
	// balancer does not answer before the deploy ends as an outage.
	watchOutageGrace = 10 * time.Second
	// Failed answers on the new servers end the watch when there are at
	// least watchMinBad of them and they are more than watchMaxRate of the
	// answers, or more than twice the old servers' rate before the switch:
	// since the watch began, or in the last reading (a release that fails
	// after a long good start is not averaged away).
	watchMinBad  = 5
	watchMaxRate = 0.01
)

// answerStats are a set of servers' answers as the balancer counts them
// since each was added: all, and failed (5xx, or none: a connection or
// response error); and how many of the servers there are, and how many
// the balancer's own health checks hold DOWN.
type answerStats struct {
	responses, bad int64
	servers, down  int
}

func (s *answerStats) rate() float64 {
	if s == nil || s.responses == 0 {
		return 0
	}
	return float64(s.bad) / float64(s.responses)
}

// answers reads sw's counts for backends; nil when sw counts none or does
// not answer (the watch then goes by health alone).
func (p *deploy) answers(ctx context.Context, sw Switcher, backends []string) *answerStats {
	a, ok := sw.(Answers)
	if !ok || len(backends) == 0 {
		return nil
	}
	st, err := a.ServerStats(ctx)
	if err != nil {
		p.log.Debug("watch: balancer counts not read", "error", err)
		return nil
	}
	return sumAnswers(st, backends)
}

func sumAnswers(stats []lb.ServerStat, backends []string) *answerStats {
	out := &answerStats{}
	for _, s := range stats {
		if slices.Contains(backends, s.Addr) {
			out.responses += s.Responses + s.ConnErrors + s.RespErrors
			out.bad += s.Responses5xx + s.ConnErrors + s.RespErrors
			out.servers++
			if strings.HasPrefix(s.Status, "DOWN") {
				out.down++
			}
		}
	}
	return out
}

// nothingToWatch: no server switched in this deploy has a watch.
func (p *deploy) nothingToWatch() bool {
	for _, c := range p.cuts {
		if c.watch > 0 {
			return false
		}
	}
	return true
}

// watchUntil is when the longest watch of the deploy ends.
func (p *deploy) watchUntil() time.Time {
	var until time.Time
	for _, c := range p.cuts {
		if t := c.switched.Add(c.watch); c.watch > 0 && t.After(until) {
			until = t
		}
	}
	return until
}

// watch watches each switched server with a watch until its own watch
// ends; it returns a verdict for the first that fails.
func (p *deploy) watch(ctx context.Context) error {
	until := p.res.WatchUntil
	p.log.Info("watching the new servers; the old ones stay out of the balancer until the watch ends", "until", until.Format(time.RFC3339))
	// Counts since the new servers were added: the baseline, and the
	// last reading.
	base, last := map[*cut]*answerStats{}, map[*cut]*answerStats{}
	for _, c := range p.cuts {
		if c.watch > 0 {
			base[c] = p.answers(ctx, c.sw, c.set.backends())
			last[c] = base[c]
		}
	}
	var outageSince time.Time
	for tick := 0; ; tick++ {
		now := time.Now()
		var active []*cut
		for _, c := range p.cuts {
			if c.watch > 0 && now.Before(c.switched.Add(c.watch)) {
				active = append(active, c)
			}
		}
		if len(active) == 0 {
			p.log.Info("watch passed", "watched", time.Since(p.cuts[0].switched).Round(time.Millisecond))
			return nil
		}
		err := p.checkWatch(ctx, active, base, last, tick%2 == 0)
		switch {
		case err == nil:
			outageSince = time.Time{}
		case failure.Of(err) == failure.Verdict:
			return err
		case ctx.Err() != nil:
			return ctx.Err()
		default:
			if outageSince.IsZero() {
				outageSince = now
			}
			if now.Sub(outageSince) > watchOutageGrace {
				return asOutage(fmt.Errorf("the new servers could not be watched: %w", err))
			}
		}
		p.progressed()
		if err := backoff.Sleep(ctx, watchEvery); err != nil {
			return err
		}
	}
}

// checkWatch checks the active cuts once: their balancer's counts, and
// with containers, their containers.
func (p *deploy) checkWatch(ctx context.Context, active []*cut, base, last map[*cut]*answerStats, containers bool) error {
	var ms []engine.Managed
	if containers {
		var err error
		if ms, err = p.Observer.List(ctx, p.in.Env.Name); err != nil {
			return asOutage(err)
		}
	}
	for _, c := range active {
		for i, id := range c.set.ids {
			if !containers {
				break
			}
			j := slices.IndexFunc(ms, func(m engine.Managed) bool { return m.ID == id })
			var why string
			switch {
			case j < 0:
				why = "vanished"
			case ms[j].State != "running":
				why = "is " + ms[j].State
			case ms[j].Health == "unhealthy":
				why = "turned unhealthy"
			}
			if why != "" {
				return failure.AsVerdict(fmt.Errorf("service %s: container %s %s %s after the switch, within its watch of %s",
					c.a.Service, c.set.names[i], why, time.Since(c.switched).Round(100*time.Millisecond), c.watch))
			}
		}
		b := base[c]
		if b == nil {
			continue
		}
		now := p.answers(ctx, c.sw, c.set.backends())
		if now == nil {
			continue
		}
		if now.servers > 0 && now.down == now.servers {
			// They passed the balancer's checks before the switch: every
			// one failing them since leaves the service without a server
			// ("no server available"), whatever few answers it counted.
			return failure.AsVerdict(fmt.Errorf("service %s: the balancer's health checks took every new server down %s after the switch, within its watch of %s",
				c.a.Service, time.Since(c.switched).Round(100*time.Millisecond), c.watch))
		}
		limit := max(watchMaxRate, 2*c.before.rate())
		for _, from := range []*answerStats{b, last[c]} {
			got := &answerStats{responses: now.responses - from.responses, bad: now.bad - from.bad}
			if got.bad >= watchMinBad && got.rate() > limit {
				return failure.AsVerdict(fmt.Errorf("service %s: the new servers failed %d of %d answers (5xx or none) %s after the switch, within its watch of %s; the old ones failed %.1f%% before it",
					c.a.Service, got.bad, got.responses, time.Since(c.switched).Round(100*time.Millisecond), c.watch, 100*c.before.rate()))
			}
		}
		last[c] = now
	}
	return nil
}
