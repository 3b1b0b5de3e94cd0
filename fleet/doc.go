// Package fleet coordinates the berth agents of one environment through
// etcd (DESIGN.md §8, docs/fleet.md). It is the only package in berth that
// talks to etcd, and it imports nothing of reconcile, jobs or migrate: it
// owns the key layout and the protocols, and hands its callers small
// decisions (run this migration, skip it, refuse the revision; take this
// slot; deploy this revision instead; run this scheduled time or not).
//
// Invariants, from /work/shared/FLEET-NOTES.md:
//   - Leases show liveness only. Claims and results are permanent keys
//     written by compare-and-swap; a lost lease never quietly hands a step
//     to a second host.
//   - Every etcd call has a timeout; every watch requires a leader and
//     lists again after compaction; a session whose Done fired is replaced,
//     never reused.
//   - Nothing coordinated starts while etcd is unreachable (errors are
//     failure.AsOutage); steps already running finish and write their
//     results later, by compare-and-swap, from an outbox.
//   - Every claim expires (lease-bound) or is superseded: no operator
//     unlock is ever needed after a crash.
//   - Writes happen on change only; liveness is carried by lease
//     keepalives, not by heartbeat Puts.
package fleet
