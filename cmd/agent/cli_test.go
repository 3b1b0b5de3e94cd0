package main

import (
	"bytes"
	"slices"
	"strings"
	"testing"
)

// Every command and subcommand, given no arguments, a flag it does not
// know, a malformed value or arguments it does not take, never panics;
// when it refuses, its first line says why (the usage may follow), and
// it exits with a documented code.
func TestCLI_EveryCommandWithNoWrongAndExtraArguments(t *testing.T) {
	dir := t.TempDir()
	cfg := writeConfig(t, "env: prod\nrepo: {url: 'file:///nonexistent'}\nstate_dir: "+dir+"\napi: {listen: 'off'}\n")
	var cmds [][]string
	for _, c := range commands() {
		cmds = append(cmds, []string{c.name})
	}
	for _, sub := range []string{"list", "history", "logs", "run"} {
		cmds = append(cmds, []string{"jobs", sub})
	}
	cmds = append(cmds, []string{"fleet", "status"}, []string{"fleet", "bogus"}, []string{"jobs", "bogus"})
	variants := []struct {
		name string
		args []string
	}{
		{"no arguments", nil},
		{"an unknown flag", []string{"--bogus"}},
		{"a malformed format", []string{"--format", "yaml"}},
		{"a negative count", []string{"-n", "-5"}},
		{"extra arguments", []string{"extra-1", "extra-2", "extra-3"}},
	}
	for _, c := range cmds {
		for _, v := range variants {
			for _, withCfg := range []bool{false, true} {
				args := append(slices.Clone(c), v.args...)
				if withCfg {
					if c[0] == "run" && v.args == nil {
						continue // that is the daemon, started
					}
					args = append(args, "--config", cfg)
				}
				t.Run(strings.Join(args, " "), func(t *testing.T) {
					code, stdout, stderr := runCLI(t, args)
					if !slices.Contains([]int{exitOK, exitFailure, exitUsage, exitConfig}, code) {
						t.Fatalf("exit %d: not a documented code\n%s", code, stderr)
					}
					if code == exitOK {
						return
					}
					first, _, _ := strings.Cut(strings.TrimSpace(stderr), "\n")
					if first == "" || strings.HasPrefix(strings.ToLower(first), "usage:") {
						t.Fatalf("exit %d without a reason first: stderr %q (stdout %q)", code, stderr, stdout)
					}
				})
			}
		}
	}
}

// runCLI runs berth in-process and fails the test on a panic.
func runCLI(t *testing.T, args []string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	func() {
		defer func() {
			if r := recover(); r != nil {
				t.Fatalf("berth %s panicked: %v", strings.Join(args, " "), r)
			}
		}()
		code = run(t.Context(), args, &out, &errb)
	}()
	return code, out.String(), errb.String()
}

// The problems the review met, each with its reason.
func TestCLI_ReasonsAMistakeGets(t *testing.T) {
	dir := t.TempDir()
	cfg := writeConfig(t, "env: prod\nrepo: {url: 'file:///nonexistent'}\nstate_dir: "+dir+"\n")
	tests := []struct {
		args []string
		code int
		want string
	}{
		{[]string{"history", "-n", "-5", "--config", cfg}, exitUsage, `invalid value "-5" for flag -n: a whole number, at least 1`},
		{[]string{"run", "--log-level", "loud", "--config", cfg}, exitUsage, `invalid value "loud" for flag -log-level`},
		{[]string{"promote", "--from", "a"}, exitUsage, "--to is required"},
		{[]string{"version", "extra"}, exitUsage, `unexpected argument "extra"`},
		{[]string{"fleet", "bogus"}, exitUsage, `unknown subcommand "bogus"`},
		{[]string{"validate", "--format", "yaml"}, exitUsage, `invalid value "yaml" for flag -format: text or json`},
		{[]string{"status", "extra-arg", "--config", cfg}, exitUsage, `unexpected argument "extra-arg"`},
		{[]string{"jobs", "history", "--config", cfg}, exitUsage, "missing NAME"},
		{[]string{"status", "--env", "nope", "--config", cfg}, exitUsage, "--env nope: the agent runs prod"},
		{[]string{"validate", "--env", "nope", "../../examples/config-repo"}, exitFailure, "envs/nope: no such environment"},
	}
	for _, tc := range tests {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			code, _, stderr := runCLI(t, tc.args)
			_, stdout, _ := runCLI(t, tc.args)
			if out := stderr + stdout; code != tc.code || !strings.Contains(out, tc.want) {
				t.Fatalf("exit %d, output %q; want exit %d and %q", code, out, tc.code, tc.want)
			}
			if strings.Contains(stderr+stdout, ":::") {
				t.Errorf("empty slots in %q", stderr+stdout)
			}
		})
	}
}
