package chaos

import (
	"net/url"
	"sort"
	"strings"
	"time"
)

// staleActive: a job's `active` mark says its runner is alive and running
// the time. One with no run of its time behind it must go soon: when its
// host's lease ends (the host died or was cut off), or when the host
// adopts or settles the claim once etcd answers it. One that outlived,
// by 15 s plus a TTL, both its creation and the last fault on its host
// or on etcd was "running" with nothing behind it — and with
// `concurrency: forbid` it made every host skip the job meanwhile.
//
// Times come from the harness's samples of etcd's revision (etcd_rev
// events): a key created at revision c was created no later than the
// first sample at or after c, and deleted at d no earlier than the last
// sample before d.
func (c *checker) staleActive() {
	type sample struct {
		rev int64
		at  time.Time
	}
	var ss []sample
	for _, e := range c.in.Events {
		if e.Kind == "etcd_rev" {
			ss = append(ss, sample{e.Token, e.Time()})
		}
	}
	sort.Slice(ss, func(i, j int) bool { return ss[i].rev < ss[j].rev })
	noLater := func(rev int64) time.Time {
		i := sort.Search(len(ss), func(i int) bool { return ss[i].rev >= rev })
		if i == len(ss) {
			return c.in.FinalAt
		}
		return ss[i].at
	}
	noEarlier := func(rev int64) time.Time {
		i := sort.Search(len(ss), func(i int) bool { return ss[i].rev >= rev })
		if i == 0 {
			return time.Time{}
		}
		return ss[i-1].at
	}
	ran := map[string]bool{}
	for _, e := range c.in.Events {
		if e.Kind == "job_start" {
			ran[e.Job+"\x00"+time.Unix(0, e.T).UTC().Format(timeKeyLayout)] = true
		}
	}
	type life struct {
		create int64
		host   string
	}
	open := map[string]life{}
	check := func(key string, l life, to time.Time) {
		rest := strings.TrimPrefix(key, c.in.Root+"job/")
		seg, tk, _ := strings.Cut(rest, "/active/")
		job, err := url.PathUnescape(seg)
		if err != nil || ran[job+"\x00"+tk] {
			return
		}
		from := noLater(l.create)
		excuse := from
		for _, f := range c.faults {
			hostOne := hostFaults[f.kind] && f.target == l.host
			etcd := f.kind == FaultOutage || f.kind == FaultMemberKill || f.kind == FaultLeaderChange || f.kind == etcdUnanswered
			if (hostOne || etcd) && f.overlaps(from, to) && f.to.After(excuse) {
				excuse = f.to
			}
		}
		if lived := to.Sub(excuse); lived > 15*time.Second+c.in.TTL {
			c.violate("running with no run behind it", from, "job %s time %s: %s's active mark (token %d) lived %s after its last excuse with no run of its time",
				job, tk, l.host, l.create, to.Sub(from).Round(time.Second))
		}
	}
	pfx := c.in.Root + "job/"
	for _, ch := range c.in.History {
		if !strings.HasPrefix(ch.Key, pfx) || !strings.Contains(ch.Key, "/active/") {
			continue
		}
		if ch.Put {
			if _, ok := open[ch.Key]; !ok {
				open[ch.Key] = life{create: ch.Create, host: string(ch.Value)}
			}
			continue
		}
		if l, ok := open[ch.Key]; ok {
			if to := noEarlier(ch.Rev); !to.IsZero() {
				check(ch.Key, l, to)
			}
			delete(open, ch.Key)
		}
	}
	for k, l := range open {
		check(k, l, c.in.FinalAt)
	}
}

const timeKeyLayout = "20060102T150405.000000000Z"
