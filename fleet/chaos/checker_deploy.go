package chaos

import (
	"fmt"
	"net/url"
	"sort"
	"strings"
	"time"
)

// deploys: max_parallel was never exceeded at any instant, joiners
// included, and a halted revision never started after its halt.
//
// A deploy counts from its start to its end (or its process's death),
// minus the time its process was stopped. One documented exception
// (docs/fleet.md): a deploy slot is bound to its host's lease, so a host
// that loses its lease mid-deploy (cut off, paused) stops counting from
// when the lease can have expired on etcd — a TTL before the host
// noticed — and another host may take the slot.
func (c *checker) deploys() {
	type edge struct {
		at   time.Time
		d    int
		host string
	}
	var edges []edge
	for i, e := range c.in.Events {
		if e.Kind != "deploy_start" {
			continue
		}
		to := time.Time{}
		lost := time.Time{}
		for _, f := range c.in.Events[i+1:] {
			if f.Host != e.Host || f.Pid != e.Pid {
				continue
			}
			if f.Kind == "session_lost" && lost.IsZero() {
				lost = f.Time()
			}
			if f.Kind == "deploy_end" && to.IsZero() {
				to = f.Time()
			}
			// A host thawed from a pause finishes the deploy it was in
			// before it sees its lease gone: a loss it notices after
			// the end, with no session in between, is the same lease.
			if !to.IsZero() && (!lost.IsZero() || f.Kind == "session" || f.Kind == "deploy_start") {
				break
			}
		}
		if to.IsZero() {
			to = c.procEnd(e.Host, e.Pid, e.Time())
		}
		if !lost.IsZero() {
			if cut := lost.Add(-c.in.TTL - time.Second); cut.Before(to) {
				if cut.Before(e.Time()) {
					cut = e.Time()
				}
				c.res.Notes = append(c.res.Notes, fmt.Sprintf("%s lost its lease while deploying %s (slot %d): the slot counted until %s",
					e.Host, e.Rev, e.Slot, cut.Format("15:04:05.000")))
				to = cut
			}
		}
		for _, p := range minus(e.Time(), to, c.stops(e.Host)) {
			edges = append(edges, edge{p.from, 1, e.Host + " " + e.Rev + joinTag(e)}, edge{p.to, -1, e.Host + " " + e.Rev + joinTag(e)})
		}
	}
	sort.SliceStable(edges, func(i, j int) bool {
		if !edges[i].at.Equal(edges[j].at) {
			return edges[i].at.Before(edges[j].at)
		}
		return edges[i].d < edges[j].d // an end before a start at the same instant
	})
	in := map[string]int{}
	over := false
	n := 0
	for _, ed := range edges {
		n += ed.d
		in[ed.host] += ed.d
		if in[ed.host] == 0 {
			delete(in, ed.host)
		}
		if n > c.in.MaxParallel && !over {
			var who []string
			for h := range in {
				who = append(who, h)
			}
			sort.Strings(who)
			c.violate("max_parallel exceeded", ed.at, "%d hosts deploying at once (max_parallel %d): %s", n, c.in.MaxParallel, strings.Join(who, ", "))
		}
		over = n > c.in.MaxParallel
	}
	c.haltedStarts()
}

func joinTag(e Event) string {
	if e.Joining {
		return " (joining)"
	}
	return ""
}

// minus is [from, to) without the periods in holes.
func minus(from, to time.Time, holes []interval) []interval {
	parts := []interval{{from: from, to: to}}
	for _, h := range holes {
		var next []interval
		for _, p := range parts {
			if !h.overlaps(p.from, p.to) {
				next = append(next, p)
				continue
			}
			if p.from.Before(h.from) {
				next = append(next, interval{from: p.from, to: h.from})
			}
			if h.to.Before(p.to) {
				next = append(next, interval{from: h.to, to: p.to})
			}
		}
		parts = next
	}
	return parts
}

// haltedStarts: a deploy admitted at etcd revision A of a revision whose
// halt existed at A started after its halt.
func (c *checker) haltedStarts() {
	type span struct{ from, to int64 }
	halts := map[string][]span{}
	open := map[string]int64{}
	for _, ch := range c.in.History {
		if !strings.HasPrefix(ch.Key, c.in.Root+"halt/") {
			continue
		}
		if ch.Put {
			if _, ok := open[ch.Key]; !ok {
				open[ch.Key] = ch.Rev
			}
			continue
		}
		if from, ok := open[ch.Key]; ok {
			halts[ch.Key] = append(halts[ch.Key], span{from, ch.Rev})
			delete(open, ch.Key)
		}
	}
	for k, from := range open {
		halts[k] = append(halts[k], span{from, 1 << 62})
	}
	for _, e := range c.in.Events {
		if e.Kind != "deploy_start" || e.AdmRev == 0 {
			continue
		}
		for _, s := range halts[c.in.Root+"halt/"+url.PathEscape(e.Rev)] {
			if s.from <= e.AdmRev && e.AdmRev < s.to {
				c.violate("halted revision started", e.Time(), "%s started %s (admitted at etcd revision %d) though it was halted at revision %d",
					e.Host, e.Rev, e.AdmRev, s.from)
			}
		}
	}
}
