package main

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"github.com/hashicorp/go-hclog"
	"github.com/sirupsen/logrus"
)

// TestNewLogger_LogrusLinesBecomeJSON: compose-go warns through logrus;
// the journal must stay one JSON object per line.
func TestNewLogger_LogrusLinesBecomeJSON(t *testing.T) {
	var b bytes.Buffer
	newLogger(&b, hclog.Info)
	t.Cleanup(func() { newLogger(&bytes.Buffer{}, hclog.Off) })
	logrus.WithField("file", "compose.yaml").Warn(`The "R" variable is not set. Defaulting to a blank string.`)
	lines := strings.Split(strings.TrimSpace(b.String()), "\n")
	var rec map[string]any
	if len(lines) != 1 || json.Unmarshal([]byte(lines[0]), &rec) != nil {
		t.Fatalf("not one JSON line: %q", b.String())
	}
	if rec["@level"] != "warn" || rec["@module"] != "berth.compose" || rec["file"] != "compose.yaml" || !strings.Contains(rec["@message"].(string), `"R" variable is not set`) {
		t.Fatalf("record %v", rec)
	}
}
