// Package lb switches a load balancer between a service's old and new server
// containers: it writes the upstream file atomically, checks the config,
// reloads, probes through the balancer, and restores the previous file on any
// failure. nginx first; HAProxy and a command hook fit the same interface.
package lb
