package notify

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/hashicorp/go-hclog"
)

type sink struct {
	mu     sync.Mutex
	bodies []map[string]any
	status int
}

func (s *sink) server(t *testing.T) *httptest.Server {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var m map[string]any
		json.NewDecoder(r.Body).Decode(&m)
		s.mu.Lock()
		s.bodies = append(s.bodies, m)
		code := s.status
		s.mu.Unlock()
		if code != 0 {
			w.WriteHeader(code)
		}
	}))
	t.Cleanup(srv.Close)
	return srv
}

func (s *sink) got() []map[string]any {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]map[string]any(nil), s.bodies...)
}

func fixed(u string) func() (string, error) { return func() (string, error) { return u, nil } }

func TestNotifier_WebhookAndSlackWithRepeatSuppression(t *testing.T) {
	var hook, slack sink
	h, s := hook.server(t), slack.server(t)
	now := time.Date(2026, 11, 24, 3, 0, 0, 0, time.UTC)
	n := &Notifier{Targets: []Target{
		{Type: "webhook", URL: fixed(h.URL)},
		{Type: "slack", URL: fixed(s.URL), Events: map[string]bool{JobFailed: true}},
	}, Now: func() time.Time { return now }}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); n.Run(ctx) }()

	n.Send(Event{Event: DeploySucceeded, Env: "prod", Commit: "abc", Text: "deployed abc", Key: "deploy:abc"})
	n.Send(Event{Event: JobFailed, Env: "prod", Job: "nightly", Text: "job nightly failed", Key: "job:nightly"})
	now = now.Add(10 * time.Minute)
	n.Send(Event{Event: JobFailed, Env: "prod", Job: "nightly", Text: "again", Key: "job:nightly"}) // repeat: suppressed
	n.Forget("job:nightly")                                                                         // it succeeded
	n.Send(Event{Event: JobFailed, Env: "prod", Job: "nightly", Text: "news again", Key: "job:nightly"})
	now = now.Add(2 * time.Hour)
	n.Send(Event{Event: JobFailed, Env: "prod", Job: "nightly", Text: "still failing", Key: "job:nightly"}) // window over
	cancel()
	<-done

	var texts []string
	for _, b := range hook.got() {
		texts = append(texts, b["text"].(string))
		if b["env"] != "prod" || b["host"] == "" || b["event"] == "" {
			t.Errorf("webhook body %v", b)
		}
	}
	if strings.Join(texts, "|") != "deployed abc|job nightly failed|news again|still failing" {
		t.Errorf("webhook got %q", texts)
	}
	sl := slack.got()
	if len(sl) != 3 || sl[0]["text"] != "job nightly failed" || len(sl[0]) != 1 {
		t.Errorf("slack got %v", sl)
	}
}

func TestNotifier_FailuresAreLoggedNeverBlockAndHideTheURL(t *testing.T) {
	var down sink
	down.status = http.StatusBadRequest
	srv := down.server(t)
	// Under synctest the retries' waits take no time. The client keeps no
	// idle connection: a bubble's clock stands still while one of its
	// goroutines waits on the network.
	synctest.Test(t, func(t *testing.T) {
		var logs strings.Builder
		n := &Notifier{Targets: []Target{
			{Type: "webhook", URL: fixed(srv.URL)},
			{Type: "slack", URL: fixed("http://127.0.0.1:1/services/T000/B000/XXXXSECRET")},
		}, Log: hclog.New(&hclog.LoggerOptions{Output: &logs}), RetryWait: time.Second,
			Client: &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}}
		// Nobody runs the queue: Send must still return at once, even when
		// full (the bubble's clock does not move while nothing blocks).
		start := time.Now()
		for range 120 {
			n.Send(Event{Event: DeployFailed, Text: "x"})
		}
		if d := time.Since(start); d != 0 {
			t.Fatalf("Send blocked for %s", d)
		}
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		n.Run(ctx) // drains what is queued, with a deadline
		if len(down.got()) == 0 {
			t.Error("nothing delivered")
		}
		if strings.Contains(logs.String(), "XXXXSECRET") {
			t.Error("the webhook URL was logged")
		}
		if !strings.Contains(logs.String(), "notification not delivered") || !strings.Contains(logs.String(), "queue full") {
			t.Errorf("logs: %s", logs.String()[:min(len(logs.String()), 500)])
		}
	})
}
