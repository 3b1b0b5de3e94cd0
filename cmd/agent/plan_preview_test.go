package main

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"berth.dev/berth/internal/testenv"
)

func TestPlanPreview_ExitCodesForCI(t *testing.T) {
	repo := testenv.NewLocalRepo(t)
	dir := repo.Dir
	write := func(content string) { repo.Commit(t, "change", map[string]string{"envs/prod/compose.yaml": content}) }
	write("services:\n  app:\n    image: r.example.org/a@sha256:" + strings.Repeat("a", 64) + "\n    x-berth: {role: worker}\n")
	write("services:\n  app:\n    image: r.example.org/a@sha256:" + strings.Repeat("b", 64) + "\n    x-berth: {role: worker}\n")
	var out, errb bytes.Buffer
	if code := run(context.Background(), []string{"plan", "--repo", dir, "--from", "HEAD~1", "--format", "markdown"}, &out, &errb); code != exitOK {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	if !strings.Contains(out.String(), "**replace** `app`") {
		t.Errorf("markdown:\n%s", out.String())
	}
	write("services:\n  app:\n    image: r.example.org/a@sha256:" + strings.Repeat("b", 64) + "\n    privileged: true\n    x-berth: {role: worker}\n")
	out.Reset()
	if code := run(context.Background(), []string{"plan", "--repo", dir, "--from", "HEAD~1"}, &out, &errb); code != exitFailure || !strings.Contains(out.String(), "refused") {
		t.Errorf("a policy verdict: exit %d\n%s", code, out.String())
	}
	for _, args := range [][]string{
		{"plan", "--repo", dir},
		{"plan", "--repo", dir, "--from", "HEAD~1", "--format", "yaml"},
		{"plan", "--repo", dir, "--from", "HEAD~1", "extra"},
	} {
		errb.Reset()
		if code := run(context.Background(), args, &out, &errb); code != exitUsage || !strings.Contains(errb.String(), "berth plan: ") {
			t.Errorf("%v: exit %d, stderr %q", args, code, errb.String())
		}
	}
}

func TestPlanPreview_PathOfAMonorepo(t *testing.T) {
	repo := testenv.NewLocalRepo(t)
	write := func(d string) {
		repo.Commit(t, "change", map[string]string{"deploy/envs/prod/compose.yaml": "services:\n  app:\n    image: r.example.org/a@sha256:" + strings.Repeat(d, 64) + "\n    x-berth: {role: worker}\n"})
	}
	write("a")
	write("b")
	var out, errb bytes.Buffer
	if code := run(context.Background(), []string{"plan", "--repo", repo.Dir, "--path", "deploy", "--from", "HEAD~1"}, &out, &errb); code != exitOK || !strings.Contains(out.String(), "replace app") {
		t.Errorf("exit %d: %s%s", code, out.String(), errb.String())
	}
}
