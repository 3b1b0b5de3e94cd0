package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

func TestRun_ExitCodesAndOutput(t *testing.T) {
	tests := []struct {
		name       string
		args       []string
		wantCode   int
		wantStdout string
		wantStderr string
	}{
		{name: "help lists every designed command", args: []string{"--help"}, wantCode: exitOK, wantStdout: "jobs list|history NAME"},
		{name: "no arguments is a usage error", args: nil, wantCode: exitUsage, wantStderr: "Usage:"},
		{name: "unknown command", args: []string{"deploy"}, wantCode: exitUsage, wantStderr: `unknown command "deploy"`},
		{name: "version", args: []string{"version"}, wantCode: exitOK, wantStdout: runtime.Version()},
		{name: "jobs without a subcommand", args: []string{"jobs"}, wantCode: exitUsage, wantStderr: "usage: berth jobs list"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := run(context.Background(), tc.args, &stdout, &stderr)
			if code != tc.wantCode {
				t.Errorf("exit code %d, want %d (stderr %q)", code, tc.wantCode, stderr.String())
			}
			if !strings.Contains(stdout.String(), tc.wantStdout) {
				t.Errorf("stdout %q lacks %q", stdout.String(), tc.wantStdout)
			}
			if !strings.Contains(stderr.String(), tc.wantStderr) {
				t.Errorf("stderr %q lacks %q", stderr.String(), tc.wantStderr)
			}
		})
	}
}

func TestUsage_NamesEveryCommandOfTheDesign(t *testing.T) {
	var b bytes.Buffer
	usage(&b)
	for _, c := range []string{"run", "validate", "plan", "status", "history", "rollback", "jobs", "promote", "version"} {
		if !strings.Contains(b.String(), "\n  "+c) {
			t.Errorf("help lacks command %q", c)
		}
	}
}

// Every command and subcommand answers -h and --help with its usage and
// exit 0, without reading an agent config or touching anything.
func TestHelp_EveryCommandAndSubcommand(t *testing.T) {
	var cmds [][]string
	for _, c := range commands() {
		cmds = append(cmds, []string{c.name})
	}
	for _, sub := range []string{"list", "history", "logs", "run"} {
		cmds = append(cmds, []string{"jobs", sub})
	}
	cmds = append(cmds, []string{"fleet", "status"})
	for _, c := range cmds {
		for _, flag := range []string{"-h", "--help"} {
			args := append(append([]string{}, c...), flag)
			t.Run(strings.Join(args, " "), func(t *testing.T) {
				var stdout, stderr bytes.Buffer
				code := run(context.Background(), args, &stdout, &stderr)
				out := stdout.String() + stderr.String()
				if code != exitOK || !strings.Contains(strings.ToLower(out), "usage: berth "+c[0]) {
					t.Fatalf("exit %d, output %q: want 0 and the usage of berth %s", code, out, strings.Join(c, " "))
				}
			})
		}
	}
	var stdout bytes.Buffer
	if code := run(context.Background(), []string{"help", "jobs"}, &stdout, &stdout); code != exitOK || !strings.Contains(stdout.String(), "usage: berth jobs") {
		t.Fatalf("berth help jobs: exit %d\n%s", code, stdout.String())
	}
}

func TestRun_CheckConfigExitCodes(t *testing.T) {
	good := writeConfig(t, "env: prod\nrepo: {url: https://git.example.org/c.git}\n")
	bad := writeConfig(t, "env: prod\nrepo: {url: x, nope: 1}\n")
	var out, errOut strings.Builder
	if code := run(t.Context(), []string{"run", "--check-config", "--config", good}, &out, &errOut); code != exitOK || !strings.Contains(out.String(), good+": ok") {
		t.Fatalf("good config: exit %d, %q %q", code, out.String(), errOut.String())
	}
	errOut.Reset()
	if code := run(t.Context(), []string{"run", "--check-config", "--config", bad}, &out, &errOut); code != exitConfig || !strings.Contains(errOut.String(), "berth run: ") {
		t.Fatalf("bad config: exit %d, %q", code, errOut.String())
	}
}

func writeConfig(t *testing.T, s string) string {
	p := filepath.Join(t.TempDir(), "agent.yaml")
	os.WriteFile(p, []byte(s), 0o600)
	return p
}
