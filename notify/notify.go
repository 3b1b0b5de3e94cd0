// Package notify tells people what the agent did: a generic JSON webhook
// or a Slack-compatible incoming webhook, on deploys that succeeded, failed
// or were rolled back and on job runs that failed. Delivery is
// asynchronous, retried a little, and never blocks a deploy; failures are
// logged. A repeat of the same event (same job failing again, say) is
// suppressed for a while.
package notify

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
)

// Events.
const (
	DeploySucceeded  = "deploy_succeeded"
	DeployFailed     = "deploy_failed"      // failed before anything changed
	DeployRolledBack = "deploy_rolled_back" // failed after changes, rolled back
	// DeployOutage: a revision waits for an outage (Git, registry, Vault,
	// Docker, the state dir) that lasted several passes; sent once per
	// outage.
	DeployOutage = "deploy_outage"
	JobFailed    = "job_failed"
	JobSucceeded = "job_succeeded" // only for jobs with notify: always
)

// AllEvents lists every event, for config validation.
var AllEvents = []string{DeploySucceeded, DeployFailed, DeployRolledBack, DeployOutage, JobFailed, JobSucceeded}

// Event is what is sent. It never holds a secret value: reasons come from
// errors that name variables and paths only.
type Event struct {
	Event    string    `json:"event"`
	Env      string    `json:"env"`
	Host     string    `json:"host"`
	Time     time.Time `json:"time"`
	Commit   string    `json:"commit,omitempty"`
	Subject  string    `json:"subject,omitempty"`
	DeployID string    `json:"deploy_id,omitempty"`
	Job      string    `json:"job,omitempty"`
	Run      string    `json:"run,omitempty"`
	Status   string    `json:"status,omitempty"`
	ExitCode *int      `json:"exit_code,omitempty"`
	Reason   string    `json:"reason,omitempty"`
	Text     string    `json:"text"` // one human line
	// Key identifies "the same event again" for repeat suppression.
	Key string `json:"-"`
}

// Target is one place events go.
type Target struct {
	Type string // "webhook" (the Event as JSON) or "slack" ({"text": …})
	// URL returns the address (read from a file on each send when it
	// holds a token, as Slack's do).
	URL    func() (string, error)
	Events map[string]bool // nil: every event
}

// Notifier delivers events to targets in the background.
type Notifier struct {
	Targets []Target
	Log     hclog.Logger
	// RepeatAfter is how long a repeat of the same event key is
	// suppressed (default 1 h). A different event for the key (a job that
	// succeeds again) ends the suppression.
	RepeatAfter time.Duration
	Client      *http.Client
	Now         func() time.Time
	// RetryWait is the pause before the first retry (default 2 s; the
	// second waits twice as long). Three attempts in all.
	RetryWait time.Duration

	once  sync.Once
	queue chan Event
	mu    sync.Mutex
	last  map[string]sent // by key
	wg    sync.WaitGroup
}

type sent struct {
	event string
	at    time.Time
}

func (n *Notifier) init() {
	n.once.Do(func() {
		if n.Log == nil {
			n.Log = hclog.NewNullLogger()
		}
		if n.RepeatAfter <= 0 {
			n.RepeatAfter = time.Hour
		}
		if n.Client == nil {
			n.Client = &http.Client{Timeout: 10 * time.Second}
		}
		if n.Now == nil {
			n.Now = time.Now
		}
		if n.RetryWait <= 0 {
			n.RetryWait = 2 * time.Second
		}
		n.queue = make(chan Event, 100)
		n.last = map[string]sent{}
	})
}

// Send queues e. It never blocks: with the queue full, e is dropped and
// logged.
func (n *Notifier) Send(e Event) {
	if n == nil || len(n.Targets) == 0 {
		return
	}
	n.init()
	if e.Time.IsZero() {
		e.Time = n.Now().UTC()
	}
	if e.Host == "" {
		e.Host, _ = os.Hostname()
	}
	if e.Key != "" {
		n.mu.Lock()
		prev, ok := n.last[e.Key]
		n.last[e.Key] = sent{event: e.Event, at: e.Time}
		if ok && prev.event == e.Event && e.Time.Sub(prev.at) < n.RepeatAfter {
			n.last[e.Key] = prev // keep the window from the first one
			n.mu.Unlock()
			n.Log.Debug("notification suppressed as a repeat", "event", e.Event, "key", e.Key)
			return
		}
		n.mu.Unlock()
	}
	select {
	case n.queue <- e:
	default:
		n.Log.Warn("notification dropped: queue full", "event", e.Event)
	}
}

// Forget ends suppression for key (e.g. a job that succeeded again).
func (n *Notifier) Forget(key string) {
	if n == nil || len(n.Targets) == 0 {
		return
	}
	n.init()
	n.mu.Lock()
	delete(n.last, key)
	n.mu.Unlock()
}

// Run delivers queued events until ctx ends, then what is queued (briefly).
func (n *Notifier) Run(ctx context.Context) {
	if n == nil || len(n.Targets) == 0 {
		return
	}
	n.init()
	for {
		select {
		case e := <-n.queue:
			// Not cut short by shutdown: the client's timeout bounds it.
			dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
			n.deliver(dctx, e)
			cancel()
		case <-ctx.Done():
			dctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			for {
				select {
				case e := <-n.queue:
					n.deliver(dctx, e)
				default:
					return
				}
			}
		}
	}
}

func (n *Notifier) deliver(ctx context.Context, e Event) {
	for _, t := range n.Targets {
		if t.Events != nil && !t.Events[e.Event] {
			continue
		}
		if err := n.post(ctx, t, e); err != nil {
			n.Log.Warn("notification not delivered", "event", e.Event, "type", t.Type, "error", err)
		}
	}
}

func (n *Notifier) post(ctx context.Context, t Target, e Event) error {
	url, err := t.URL()
	if err != nil {
		return err
	}
	var body []byte
	if t.Type == "slack" {
		body, _ = json.Marshal(map[string]string{"text": e.Text})
	} else {
		body, _ = json.Marshal(e)
	}
	var last error
	for attempt := range 3 {
		if attempt > 0 {
			select {
			case <-time.After(time.Duration(attempt) * n.RetryWait):
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
		if err != nil {
			return fmt.Errorf("bad URL: %s", redactURL(err.Error(), url))
		}
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("User-Agent", "berth")
		resp, err := n.Client.Do(req)
		if err != nil {
			last = fmt.Errorf("%s", redactURL(err.Error(), url))
			continue
		}
		resp.Body.Close()
		if resp.StatusCode < 300 {
			return nil
		}
		last = fmt.Errorf("HTTP %d", resp.StatusCode)
		if resp.StatusCode < 500 && resp.StatusCode != 429 {
			return last // the request is wrong; retrying will not help
		}
	}
	return last
}

// redactURL keeps a webhook URL (which often is its own credential) out of
// logged errors.
func redactURL(msg, url string) string {
	return strings.ReplaceAll(msg, url, "<notify url>")
}

// URLFromFile reads a URL from a file on each call (trailing newline
// trimmed).
func URLFromFile(path string) func() (string, error) {
	return func() (string, error) {
		b, err := os.ReadFile(path)
		if err != nil {
			return "", err
		}
		return strings.TrimSpace(string(b)), nil
	}
}
