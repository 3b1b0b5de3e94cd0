// Package reconcile makes a host match a desired state, one revision at a
// time: plan, prepare (pull, resolve secrets), one-shot CLI containers,
// workers, servers, the load-balancer switch and retire, with rollback in
// reverse on any failure and a journal that lets a restarted agent converge.
// It declares the small interfaces it needs (deps.go); adapters implement them.
package reconcile
