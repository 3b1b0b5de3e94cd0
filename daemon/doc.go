// Package daemon owns `berth run`: it builds every env's reconcile.Agent
// from the agent config and the adapters (wiring.go), drives them from
// one poll clock (host.go), answers systemd (sd_notify, the watchdog),
// publishes this host's state to the fleet, counts the metrics, sends the
// notifications and serves the local API. cmd/agent only parses flags and
// calls Run or Once; everything here runs in tests without the binary.
package daemon
