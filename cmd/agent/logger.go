package main

import (
	"fmt"
	"io"
	"os"

	"github.com/hashicorp/go-hclog"
	"github.com/mattn/go-isatty"

	"berth.dev/berth/daemon"
	"berth.dev/berth/internal/termsafe"
)

// newLogger is the one root logger: JSON when stderr is not a terminal
// (journald), human-readable otherwise.
// What libraries log through logrus goes to it too (daemon.RouteLogrus).
func newLogger(w io.Writer, level hclog.Level) hclog.Logger {
	json := true
	if f, ok := termsafe.Under(w).(*os.File); ok && isatty.IsTerminal(f.Fd()) {
		json = false
	}
	log := hclog.New(&hclog.LoggerOptions{Name: "berth", Output: w, JSONFormat: json, Level: level})
	daemon.RouteLogrus(log.Named("compose"))
	return log
}

// logLevel is a --log-level flag: one of hclog's levels by name, never
// silently another.
type logLevel struct{ hclog.Level }

func (l *logLevel) String() string { return l.Level.String() }

func (l *logLevel) Set(s string) error {
	v := hclog.LevelFromString(s)
	if v == hclog.NoLevel || v == hclog.Off {
		return fmt.Errorf("%q: trace, debug, info, warn or error", s)
	}
	l.Level = v
	return nil
}
