package main

import (
	"fmt"
	"io"
	"os"

	"github.com/hashicorp/go-hclog"
	"github.com/mattn/go-isatty"
	"github.com/sirupsen/logrus"
)

// newLogger is the one root logger: JSON when stderr is not a terminal
// (journald), human-readable otherwise.
// What libraries log through logrus goes to it too (routeLogrus).
func newLogger(w io.Writer, level hclog.Level) hclog.Logger {
	json := true
	probe := w
	if t, ok := w.(termSafe); ok {
		probe = t.w
	}
	if f, ok := probe.(*os.File); ok && isatty.IsTerminal(f.Fd()) {
		json = false
	}
	log := hclog.New(&hclog.LoggerOptions{Name: "berth", Output: w, JSONFormat: json, Level: level})
	routeLogrus(log.Named("compose"))
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

// routeLogrus sends what libraries log through logrus's standard logger
// (compose-go's warnings: a variable not set, an obsolete version key) to
// log, so that the agent's journal stays one JSON object per line.
func routeLogrus(log hclog.Logger) {
	logrus.SetOutput(io.Discard)
	logrus.StandardLogger().ReplaceHooks(logrus.LevelHooks{})
	logrus.AddHook(logrusHook{log})
}

type logrusHook struct{ log hclog.Logger }

func (logrusHook) Levels() []logrus.Level { return logrus.AllLevels }

func (h logrusHook) Fire(e *logrus.Entry) error {
	args := make([]any, 0, 2*len(e.Data))
	for k, v := range e.Data {
		args = append(args, k, v)
	}
	switch e.Level {
	case logrus.PanicLevel, logrus.FatalLevel, logrus.ErrorLevel:
		h.log.Error(e.Message, args...)
	case logrus.WarnLevel:
		h.log.Warn(e.Message, args...)
	case logrus.InfoLevel:
		h.log.Info(e.Message, args...)
	default:
		h.log.Debug(e.Message, args...)
	}
	return nil
}
