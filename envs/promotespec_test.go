package envs

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestPromoteSpec_ParsedAndChecked(t *testing.T) {
	for _, tc := range []struct {
		name, block string
		want        *PromoteSpec
		problem     string
	}{
		{name: "ok", block: "promote: {to: prod, after: 30m}", want: &PromoteSpec{To: "prod", After: 30 * time.Minute}},
		{name: "itself", block: "promote: {to: staging, after: 30m}", problem: "cannot promote to itself"},
		{name: "no after", block: "promote: {to: prod}", problem: "x-berth.promote.after"},
		{name: "bad name", block: "promote: {to: ../prod, after: 1m}", problem: "not an environment name"},
		{name: "unknown key", block: "promote: {to: prod, after: 1m, merge: true}", problem: "merge"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			os.MkdirAll(filepath.Join(dir, "envs", "staging"), 0o755)
			compose := "services:\n  app:\n    image: r.example.org/a@sha256:" + strings.Repeat("a", 64) + "\n    x-berth: {role: worker}\nx-berth:\n  " + tc.block + "\n"
			os.WriteFile(filepath.Join(dir, "envs", "staging", "compose.yaml"), []byte(compose), 0o644)
			env, err := Load(context.Background(), dir, "staging", Options{})
			if tc.problem != "" {
				if err == nil || !strings.Contains(err.Error(), tc.problem) {
					t.Fatalf("want a problem naming %q, got %v", tc.problem, err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if *env.Promote != *tc.want {
				t.Errorf("got %+v", env.Promote)
			}
		})
	}
}
