// Package chaos is the fleet's fault harness (scripts/chaos-fleet, issue
// 18, DESIGN §8's last paragraph): a Jepsen-style test of package fleet
// against a real three-member etcd cluster.
//
// N agents run as subprocesses (so they can be SIGSTOPped and SIGKILLed),
// each driving the real fleet client through its own TCP proxy (which can
// delay, hold replies, cut or partition). They follow a stream of
// revisions (migrations, idempotent or not; rollouts with a canary and
// max_parallel) and run `run_on: one` jobs every few seconds, some with
// `concurrency: forbid`. Every side effect — a deploy, a migration run, a
// job run — is written, with its host, token and times, to an
// append-only, fsynced ledger outside etcd before it starts and after it
// ends. A seeded nemesis injects the faults fleets really see (member
// kill and restart, leader change, whole-cluster outage, partition of
// one agent, held replies, SIGSTOP past the TTL, SIGKILL and restart, a
// clock offset of up to ±2 h, joiners mid-rollout, retry and fleet
// rollback mid-fault).
//
// The checker reads only the ledgers and etcd's final state (its keys,
// and its MVCC history: the harness's etcd never compacts), and reports
// every violation of the fleet's promises (checker.go lists them).
//
// It owns nothing berth runs in production: it is a test program.
package chaos
