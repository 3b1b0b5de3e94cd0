package chaos

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"sync"
	"syscall"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"berth.dev/berth/fleet"
)

// The faults the nemesis injects (issue 18). Each is logged to the
// harness's ledger as fault_start/fault_end with its kind and target.
const (
	FaultMemberKill   = "member-kill"   // SIGKILL one etcd member, restart it
	FaultLeaderChange = "leader-change" // hand the leadership to another member
	FaultOutage       = "cluster-outage"
	FaultPartition    = "partition" // one agent cut off from every member
	FaultHold         = "hold"      // etcd's replies to one agent held back past its timeout: ambiguous commits
	FaultDelay        = "delay"     // one agent's link slow both ways
	FaultStop         = "sigstop"   // SIGSTOP one agent past its TTL, then SIGCONT
	FaultKill         = "sigkill"   // SIGKILL one agent, restart it
	FaultClock        = "clock"     // one agent's clock off by up to ±2 h
	FaultJoin         = "join"      // a new host joins mid-rollout
	FaultRetry        = "retry"     // `berth retry`, issued during another fault
	FaultRollback     = "rollback"  // `berth rollback --fleet`, issued during another fault
)

// hostFaults are the faults that make one agent's view of etcd wrong for
// a while: during them, and a TTL after, that agent may lose what its
// lease held.
var hostFaults = map[string]bool{FaultPartition: true, FaultHold: true, FaultDelay: true, FaultStop: true, FaultKill: true}

type nemesis struct {
	h   *Harness
	rng *rand.Rand

	mu      sync.Mutex
	active  int
	busy    map[string]bool // agents with a fault on them
	cluster bool            // a member or cluster fault is on
	wg      sync.WaitGroup
}

// run injects faults until ctx ends, then waits for the faults it
// started to end (every fault heals itself).
func (n *nemesis) run(ctx context.Context) {
	n.busy = map[string]bool{}
	kinds := []struct {
		kind   string
		weight int
	}{
		{FaultMemberKill, 3}, {FaultLeaderChange, 3}, {FaultOutage, 2}, {FaultPartition, 3}, {FaultHold, 6},
		{FaultDelay, 1}, {FaultStop, 3}, {FaultKill, 3}, {FaultClock, 2}, {FaultJoin, 2}, {FaultRetry, 1}, {FaultRollback, 1},
	}
	total := 0
	for _, k := range kinds {
		total += k.weight
	}
	go n.aim(ctx)
	for {
		if !sleepCtx(ctx, n.uniform(1500*time.Millisecond, 5*time.Second)) {
			break
		}
		r := n.rng.IntN(total)
		kind := ""
		for _, k := range kinds {
			if r -= k.weight; r < 0 {
				kind = k.kind
				break
			}
		}
		n.start(ctx, kind)
	}
	n.wg.Wait()
}

func (n *nemesis) uniform(lo, hi time.Duration) time.Duration {
	return lo + time.Duration(n.rng.Int64N(int64(hi-lo)+1))
}

// start begins one fault, unless it cannot apply now (too many at once,
// its target busy).
func (n *nemesis) start(ctx context.Context, kind string) {
	h := n.h
	ttl := h.cfg.TTL
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.active >= 3 || ctx.Err() != nil {
		return
	}
	run := func(target string, release func(), f func() string) {
		n.active++
		n.wg.Add(1)
		go func() {
			defer n.wg.Done()
			start := time.Now()
			h.led.Write(Event{Kind: "fault_start", Outcome: kind, Target: target})
			note := f()
			h.led.Write(Event{Kind: "fault_end", Outcome: kind, Target: target, Dur: int64(time.Since(start)), Note: note})
			h.say("fault %-14s %-8s %5.1fs %s", kind, target, time.Since(start).Seconds(), note)
			n.mu.Lock()
			n.active--
			release()
			n.mu.Unlock()
		}()
	}
	switch kind {
	case FaultMemberKill, FaultLeaderChange, FaultOutage:
		if n.cluster {
			return
		}
		n.cluster = true
		release := func() { n.cluster = false }
		switch kind {
		case FaultMemberKill:
			m := h.cl.members[n.rng.IntN(len(h.cl.members))]
			d := n.uniform(time.Second, 5*time.Second)
			run(m.name, release, func() string {
				m.kill()
				time.Sleep(d)
				return h.restartMembers(m)
			})
		case FaultLeaderChange:
			restart := n.rng.IntN(2) == 0
			run("leader", release, func() string { return h.changeLeader(ctx, restart) })
		case FaultOutage:
			d := time.Duration(float64(ttl) * (0.5 + 3.5*n.rng.Float64()))
			run("all", release, n.outageFunc(d))
		}
	case FaultJoin:
		if !h.work.rollingOut() || len(h.agents) >= h.cfg.Agents+h.cfg.MaxJoiners {
			return
		}
		run("new", func() {}, func() string { return h.join() })
	case FaultRetry, FaultRollback:
		if n.active == 0 {
			return // mid-fault only
		}
		run("fleet", func() {}, func() string { return h.work.operate(ctx, kind) })
	default:
		ap := h.pickAgent(n.rng, n.busy)
		if ap == nil {
			return
		}
		n.busy[ap.host] = true
		release := func() { delete(n.busy, ap.host) }
		switch kind {
		case FaultPartition:
			d := time.Duration(float64(ttl) * (1 + 2*n.rng.Float64()))
			run(ap.host, release, func() string {
				ap.px.setPartitioned(true)
				time.Sleep(d)
				ap.px.setPartitioned(false)
				return ""
			})
		case FaultHold:
			hold := h.cfg.Timeout + h.cfg.Timeout/2
			d := n.uniform(3*time.Second, 8*time.Second)
			run(ap.host, release, func() string {
				ap.px.setHold(hold, 0.2)
				time.Sleep(d)
				ap.px.setHold(0, 0)
				return fmt.Sprintf("a fifth of the replies held %s", hold)
			})
		case FaultDelay:
			lat := n.uniform(50*time.Millisecond, 300*time.Millisecond)
			d := n.uniform(3*time.Second, 8*time.Second)
			run(ap.host, release, func() string {
				ap.px.setDelay(lat)
				time.Sleep(d)
				ap.px.setDelay(0)
				return fmt.Sprintf("latency %s", lat)
			})
		case FaultStop:
			d := time.Duration(float64(ttl) * (1.2 + 1.8*n.rng.Float64()))
			run(ap.host, release, func() string {
				ap.signal(syscall.SIGSTOP)
				time.Sleep(d)
				ap.signal(syscall.SIGCONT)
				return ""
			})
		case FaultKill:
			d := n.uniform(200*time.Millisecond, 3*time.Second)
			run(ap.host, release, func() string {
				ap.kill()
				time.Sleep(d)
				if err := h.startAgent(ap); err != nil {
					return err.Error()
				}
				return ""
			})
		case FaultClock:
			off := n.uniform(time.Minute, 2*time.Hour)
			if n.rng.IntN(2) == 0 {
				off = -off
			}
			d := n.uniform(8*time.Second, 25*time.Second)
			run(ap.host, release, func() string {
				ap.setClock(off)
				time.Sleep(d)
				ap.setClock(0)
				return fmt.Sprintf("offset %s", off)
			})
		}
	}
}

// aim takes etcd away at the moments that matter most: when a migration
// starts running (its result then waits through the outage), half the
// time. It watches etcd as any client may; the faults stay the nemesis's.
func (n *nemesis) aim(ctx context.Context) {
	rng := rand.New(rand.NewPCG(uint64(n.h.cfg.Seed), 3))
	for wr := range n.h.mon.Watch(ctx, "/berth/"+Env+"/migrate/", clientv3.WithPrefix()) {
		for _, ev := range wr.Events {
			var st fleet.MigrationState
			if ev.Type != clientv3.EventTypePut || json.Unmarshal(ev.Kv.Value, &st) != nil || st.Status != fleet.MigrationRunning {
				continue
			}
			if rng.IntN(2) == 0 {
				time.Sleep(time.Duration(rng.Int64N(int64(500 * time.Millisecond))))
				n.outage(ctx, time.Duration(float64(n.h.cfg.TTL)*(2+2*rng.Float64())))
			}
		}
	}
}

func (n *nemesis) outageFunc(d time.Duration) func() string {
	return func() string {
		for _, m := range n.h.cl.members {
			m.kill()
		}
		time.Sleep(d)
		return fmt.Sprintf("down %.1fs; %s", d.Seconds(), n.h.restartMembers(n.h.cl.members...))
	}
}

// outage takes the whole cluster down for d now, unless another fault of
// etcd is on.
func (n *nemesis) outage(ctx context.Context, d time.Duration) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.cluster || n.active >= 3 || ctx.Err() != nil {
		return
	}
	n.cluster = true
	n.active++
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		start := time.Now()
		n.h.led.Write(Event{Kind: "fault_start", Outcome: FaultOutage, Target: "all"})
		note := "aimed at a running migration; " + n.outageFunc(d)()
		n.h.led.Write(Event{Kind: "fault_end", Outcome: FaultOutage, Target: "all", Dur: int64(time.Since(start)), Note: note})
		n.h.say("fault %-14s %-8s %5.1fs %s", FaultOutage, "all", time.Since(start).Seconds(), note)
		n.mu.Lock()
		n.active--
		n.cluster = false
		n.mu.Unlock()
	}()
}
