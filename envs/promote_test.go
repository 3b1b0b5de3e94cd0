package envs

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestPromote_RewritesDigestsWhereTheyLive(t *testing.T) {
	const (
		d3 = "sha256:3333333333333333333333333333333333333333333333333333333333333333"
		d4 = "sha256:4444444444444444444444444444444444444444444444444444444444444444"
	)
	dir := writeTree(t, map[string]string{
		"envs/e2e/compose.yaml": "services:\n  web: {image: 'r/app@" + d2 + "'}\n  worker: {image: 'r/app@" + d3 + "'}\n  only-e2e: {image: 'r/x@" + d2 + "'}\n",
		"envs/prod/compose.yaml": "# prod, pinned\nservices:\n  web:\n    image: r/app@${WEB}   # from .env\n" +
			"  cron:\n    image: r/cron@" + d1 + "\n",
		"envs/prod/.env": "# release\nWEB=" + d1 + "\n",
	})
	_, err := Promote(t.Context(), dir, "e2e", "prod")
	if err == nil || !strings.Contains(err.Error(), "would also change cron in prod (r/cron@"+d1+")") {
		t.Fatalf("promote with a digest shared by an unpromoted service: %v, want a refusal naming cron", err)
	}

	os.WriteFile(filepath.Join(dir, "envs/prod/compose.yaml"), []byte("# prod, pinned\nservices:\n  web:\n    image: r/app@${WEB}   # from .env\n"+
		"  smoke:\n    image: r/app@${WEB}\n  worker:\n    image: r/app@"+d4+"\n"), 0o644)
	p, err := Promote(t.Context(), dir, "e2e", "prod")
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Changes) != 2 {
		t.Fatalf("changes %+v, want the compose file and .env", p.Changes)
	}
	for _, c := range p.Changes {
		switch c.Path {
		case "envs/prod/.env":
			if string(c.New) != "# release\nWEB="+d2+"\n" {
				t.Errorf(".env after: %q", c.New)
			}
		case "envs/prod/compose.yaml":
			want := "# prod, pinned\nservices:\n  web:\n    image: r/app@${WEB}   # from .env\n  smoke:\n    image: r/app@${WEB}\n  worker:\n    image: r/app@" + d3 + "\n"
			if string(c.New) != want {
				t.Errorf("compose.yaml after:\n%s\nwant:\n%s", c.New, want)
			}
		}
	}
	if got := strings.Join(p.Promoted, "\n"); !strings.Contains(got, "smoke: sha256:111111111111 → sha256:222222222222 (shares the digest") {
		t.Errorf("promoted:\n%s\nwant smoke listed as following web", got)
	}
	if d := p.Diff(); !strings.Contains(d, "-WEB="+d1+"\n+WEB="+d2) {
		t.Errorf("diff:\n%s", d)
	}
}

func TestPromote_RefusesDigestsInSharedFiles(t *testing.T) {
	dir := writeTree(t, map[string]string{
		"envs/e2e/compose.yaml":  "services:\n  web: {image: 'r/app@" + d2 + "'}\n",
		"envs/prod/compose.yaml": "services:\n  web: {extends: {file: ../../shared/base.yaml, service: web}}\n",
		"shared/base.yaml":       "services:\n  web: {image: 'r/app@" + d1 + "'}\n",
	})
	_, err := Promote(t.Context(), dir, "e2e", "prod")
	if err == nil || !strings.Contains(err.Error(), "comes from a file other environments share") {
		t.Fatalf("err %v", err)
	}
}
