package main

import (
	"strings"
	"testing"
	"time"

	"berth.dev/berth/fleet"
	"berth.dev/berth/status"
)

// berth fleet status names a host whose clock is off: its skew, and the
// state "skewed" once it is off by 5 s or more (its job claims ahead of
// etcd's clock are refused).
func TestPrintFleet_SkewedHostNamed(t *testing.T) {
	now := time.Now()
	var b strings.Builder
	printFleet(&b, status.FleetEnv{Env: "prod", Hosts: []fleet.HostStatus{
		{HostState: fleet.HostState{Host: "web-1", ClockSkew: time.Second}, Alive: true, LastSeen: now},
		{HostState: fleet.HostState{Host: "web-2", ClockSkew: 2*time.Hour + 3*time.Second}, Alive: true, LastSeen: now},
	}})
	lines := strings.Split(b.String(), "\n")
	if !strings.Contains(lines[1], "SKEW") {
		t.Fatalf("header %q: want a SKEW column", lines[1])
	}
	if f := strings.Fields(lines[2]); f[0] != "web-1" || f[1] != "alive" || f[2] != "1s" {
		t.Errorf("web-1: %q", lines[2])
	}
	if f := strings.Fields(lines[3]); f[0] != "web-2" || f[1] != "skewed" || f[2] != "2h0m3s" {
		t.Errorf("web-2: %q", lines[3])
	}
}
