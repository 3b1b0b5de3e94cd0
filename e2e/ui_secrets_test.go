package e2e

import (
	"fmt"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"

	"berth.dev/berth/engine"
	"berth.dev/berth/internal/testenv"
)

// No page shows a secret value, nor the config hash of a service with
// secrets: a real agent with a Vault secret given to a migration, a
// worker, a server and a job that all print it on start; every page the
// host's page links to, followed to the end, shows the one-shot's and the
// job's output redacted, and neither the value nor any container's config
// hash.
func TestUI_NoVaultSecretOnAnyPage(t *testing.T) {
	testenv.Parallel(t)
	w := newWorld(t)
	w.d.CleanupLabel(t, engine.LabelJobEnv, w.env)
	value := "ui-page-s3cret-" + w.d.RunID
	w.withVault(t, value)
	page := w.listenTCP()

	img := testenv.PushApp(t, w.reg, testenv.ImageSpec{Version: "v1"})
	w.d.CleanupImage(img.Ref())
	secret := `secrets: {APP_MARKER: "secret/journal/db#password"}`
	c1 := w.repo.CommitFiles(t, "v1 with a secret", map[string]string{"envs/" + w.env + "/compose.yaml": fmt.Sprintf(`services:
  migrate:
    image: %[1]s
    environment: {APP_MODE: exit}
    x-berth: {role: migrate, %[2]s}
  worker:
    image: %[1]s
    environment: {APP_PORT: "9000"}
    x-berth: {%[2]s}
  web:
    image: %[1]s
    x-berth: {role: server, port: 8080, %[2]s}
x-berth:
  lb: {type: nginx, upstream: app, file: %[3]s}
  jobs:
    tick:
      schedule: "@every 3s"
      service: worker
      environment: {APP_MODE: exit}
`, img.Ref(), secret, w.lbFile)})
	d := w.start()
	d.waitFor(t, "deployed", c1[:12])
	w.eventually("a finished run of tick", func() bool {
		for _, r := range w.jobRuns("tick") {
			if r.Status == "succeeded" {
				return true
			}
		}
		return false
	})

	// What must not show: the value, and each container's config hash
	// (whole, or the 12 characters a plan's reason would name).
	ms, err := engine.New(w.d.Client, nil).List(t.Context(), w.env)
	if err != nil {
		t.Fatal(err)
	}
	forbidden := []string{value}
	for _, m := range ms {
		if m.ConfigHash != "" {
			forbidden = append(forbidden, m.ConfigHash[:min(12, len(m.ConfigHash))])
		}
	}
	if len(forbidden) < 3 {
		t.Fatalf("only %d containers with a config hash", len(forbidden)-1)
	}

	// Every page reachable from the host's, each once.
	href := regexp.MustCompile(`href="(/[^"#]*)`)
	seen := map[string]bool{"/": true}
	queue := []string{"/"}
	var all strings.Builder
	for len(queue) > 0 && len(seen) < 300 {
		path := queue[0]
		queue = queue[1:]
		res, err := http.Get(page + path)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode != http.StatusOK {
			t.Errorf("%s: %d", path, res.StatusCode)
			continue
		}
		all.Write(b)
		for _, m := range href.FindAllStringSubmatch(string(b), -1) {
			p := strings.ReplaceAll(m[1], "&amp;", "&")
			if u, err := url.Parse(p); err == nil && !seen[p] && u.Path != "/events" {
				seen[p] = true
				queue = append(queue, p)
			}
		}
	}
	body := all.String()
	for _, want := range []string{"/deploy/", "/jobs/" + w.env + "/tick/", "[redacted]"} {
		if !strings.Contains(body, want) {
			t.Errorf("the pages (%d of them) lack %q: the crawl did not reach what it must check", len(seen), want)
		}
	}
	for _, f := range forbidden {
		if strings.Contains(body, f) {
			t.Errorf("a page shows %.8s…, a secret value or the config hash of a service with secrets", f)
		}
	}
}
