package daemon

import (
	"io"

	"github.com/hashicorp/go-hclog"
	"github.com/sirupsen/logrus"
)

// RouteLogrus sends what libraries log through logrus's standard logger
// (compose-go's warnings: a variable not set, an obsolete version key) to
// log, so that the agent's journal stays one JSON object per line.
func RouteLogrus(log hclog.Logger) {
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
