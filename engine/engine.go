package engine

import (
	"os"
	"sync"
	"time"

	"github.com/docker/docker/client"
	"github.com/hashicorp/go-hclog"
)

// Engine is berth's handle on the local Docker engine.
type Engine struct {
	c   *client.Client
	log hclog.Logger
	// PullStall aborts a pull that made no progress for this long.
	PullStall time.Duration
	// Timeouts bound each call to the engine (DefaultTimeouts).
	Timeouts Timeouts
	// project serializes EnsureProject: Docker accepts two networks of one
	// name, so a deploy and a job run must not both create it.
	project sync.Mutex
	// InitPath is a static berth binary, bind-mounted read-only into
	// containers with secret files as their init (default: this binary).
	InitPath string

	mu      sync.Mutex
	pending map[string][]byte // secret files to hand over at Start, by container id

	restarts restarts
	health   healthEvents
}

// New wraps a Docker client (API version negotiated: Debian's engine
// speaks 1.41).
func New(c *client.Client, log hclog.Logger) *Engine {
	if log == nil {
		log = hclog.NewNullLogger()
	}
	init, _ := os.Executable()
	return &Engine{c: c, log: log.Named("engine"), PullStall: 2 * time.Minute, Timeouts: DefaultTimeouts, InitPath: init, pending: map[string][]byte{}}
}
