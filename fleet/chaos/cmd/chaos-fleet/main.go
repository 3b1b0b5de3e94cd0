// Command chaos-fleet is the fleet's fault harness (scripts/chaos-fleet,
// package berth.dev/berth/fleet/chaos): it prints the operations, the
// faults and the violations, and exits 1 on any violation.
//
//	chaos-fleet --seed 7 --duration 2m
package main

import (
	"flag"
	"fmt"
	"os"
	"time"

	"berth.dev/berth/fleet/chaos"
)

func main() {
	switch os.Getenv("CHAOS_ROLE") {
	case "etcd":
		os.Exit(chaos.EtcdMain())
	case "agent":
		os.Exit(chaos.AgentMain())
	}
	var cfg chaos.Config
	flag.Int64Var(&cfg.Seed, "seed", time.Now().UnixNano()%100000, "the nemesis's and the workload's seed")
	flag.DurationVar(&cfg.Duration, "duration", 2*time.Minute, "how long faults are injected (then the fleet must converge)")
	flag.IntVar(&cfg.Agents, "agents", 5, "agents at start")
	flag.IntVar(&cfg.MaxJoiners, "joiners", 2, "hosts that may join mid-rollout")
	flag.DurationVar(&cfg.TTL, "ttl", 3*time.Second, "the agents' lease TTL")
	flag.DurationVar(&cfg.Timeout, "timeout", time.Second, "the agents' etcd call timeout")
	flag.IntVar(&cfg.MaxParallel, "max-parallel", 2, "every revision's max_parallel")
	flag.StringVar(&cfg.Dir, "dir", "", "run directory (default: a temp dir, kept on a violation)")
	flag.BoolVar(&cfg.Keep, "keep", false, "keep the run directory")
	flag.Parse()
	bin, err := os.Executable()
	if err != nil {
		fmt.Fprintln(os.Stderr, "chaos-fleet:", err)
		os.Exit(2)
	}
	cfg.Bin = bin
	r, err := chaos.Run(cfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, "chaos-fleet:", err)
		os.Exit(2)
	}
	if len(r.Violations) > 0 {
		os.Exit(1)
	}
}
