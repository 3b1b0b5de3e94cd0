package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"

	"berth.dev/berth/internal/testenv"
)

// browser is Debian's headless chromium driven through chromedp (the
// generic API of v0.23): one tab, its console collected, and a screenshot
// of each view written to the test's artifact directory.
type browser struct {
	t   *testing.T
	ctx context.Context
	dir string // where screenshots go

	mu      sync.Mutex
	console []string
}

func newBrowser(t *testing.T) *browser {
	t.Helper()
	path, err := exec.LookPath("chromium")
	if err != nil {
		if testenv.Integration() {
			t.Fatalf("chromium unavailable: %v (apt-get install -y chromium; BERTH_INTEGRATION=1 turns this skip into a failure)", err)
		}
		t.Skipf("chromium unavailable: %v", err)
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1440, 1000),
		chromedp.DisableGPU,
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-quic", true),
	)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(func() { cancel(); cancelAlloc() })
	// The first action starts the browser; it lives as long as ctx.
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	b := &browser{t: t, ctx: ctx, dir: t.ArtifactDir()}
	go func() {
		for m, err := range chromedp.Console(ctx) {
			if err != nil {
				return
			}
			b.mu.Lock()
			b.console = append(b.console, m.String())
			b.mu.Unlock()
		}
	}()
	return b
}

// within runs f with a deadline (the browser's own context has none).
func (b *browser) within(d time.Duration, f func(ctx context.Context) error) error {
	ctx, cancel := context.WithTimeout(b.ctx, d)
	defer cancel()
	return f(ctx)
}

// open loads url and returns the document's response headers.
func (b *browser) open(url string) network.Headers {
	b.t.Helper()
	var res *network.Response
	var err error
	// Chromium aborts a load with ERR_NETWORK_CHANGED when an interface
	// comes or goes, and the tests' Docker engines add and remove bridges
	// and veths all the time: the load is tried again.
	for try := 0; try < 5; try++ {
		err = b.within(30*time.Second, func(ctx context.Context) (err error) {
			res, err = chromedp.Run(ctx, chromedp.NavigateResponse(url))
			return err
		})
		if err == nil || !strings.Contains(err.Error(), "ERR_NETWORK_CHANGED") {
			break
		}
	}
	if err != nil {
		b.t.Fatalf("open %s: %v", url, err)
	}
	if res.Status != 200 {
		b.t.Fatalf("open %s: HTTP %d", url, res.Status)
	}
	return res.Headers
}

// text is the visible text of the first element sel matches, read in one
// evaluation: the page swaps its content whenever the live updates say it
// changed (a job's run every few seconds), so a node found by one call may
// be gone by the next.
func (b *browser) text(sel string) string {
	b.t.Helper()
	q, _ := json.Marshal(sel)
	expr := fmt.Sprintf(`(function(){var n=document.querySelector(%s);return n===null?"\u0000none":n.innerText})()`, q)
	deadline := time.Now().Add(10 * time.Second)
	for {
		s := eval[string](b, expr)
		if s != "\u0000none" {
			return s
		}
		if time.Now().After(deadline) {
			b.t.Fatalf("no element %s on the page within 10s", sel)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// eval evaluates a JavaScript expression in the page.
func eval[T any](b *browser, expr string) T {
	b.t.Helper()
	var v T
	err := b.within(10*time.Second, func(ctx context.Context) (err error) {
		v, err = chromedp.Run(ctx, chromedp.Evaluate[T](expr))
		return err
	})
	if err != nil {
		b.t.Fatalf("evaluate %s: %v", expr, err)
	}
	return v
}

// waitText waits until the page's text (as it changes in place, without
// a navigation) contains want.
func (b *browser) waitText(want string, timeout time.Duration) {
	b.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		if strings.Contains(eval[string](b, "document.body.innerText"), want) {
			return
		}
		if time.Now().After(deadline) {
			b.t.Fatalf("the page did not show %q within %s; it shows:\n%s", want, timeout, eval[string](b, "document.body.innerText"))
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// waitJS waits until a JavaScript expression is true in the page.
func (b *browser) waitJS(expr string, timeout time.Duration) {
	b.t.Helper()
	deadline := time.Now().Add(timeout)
	for !eval[bool](b, expr) {
		if time.Now().After(deadline) {
			b.t.Fatalf("%s did not hold within %s", expr, timeout)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// shot writes a full-page screenshot as name.png.
func (b *browser) shot(name string) string {
	b.t.Helper()
	var png []byte
	err := b.within(30*time.Second, func(ctx context.Context) (err error) {
		png, err = chromedp.Run(ctx, chromedp.FullScreenshot(100))
		return err
	})
	if err != nil {
		b.t.Fatalf("screenshot %s: %v", name, err)
	}
	p := filepath.Join(b.dir, name+".png")
	if err := os.WriteFile(p, png, 0o644); err != nil {
		b.t.Fatal(err)
	}
	b.t.Logf("screenshot %s", p)
	return p
}

// cspViolations are the console's reports of the page's CSP refusing
// something: none, when the hashes are right and nothing hostile ran.
func (b *browser) cspViolations() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []string
	for _, m := range b.console {
		if strings.Contains(m, "Content Security Policy") {
			out = append(out, m)
		}
	}
	return out
}

// freeAddr is a free loopback address for a listener.
func freeAddr(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func header(h network.Headers, name string) string {
	for k, v := range h {
		if strings.EqualFold(k, name) {
			return fmt.Sprint(v)
		}
	}
	return ""
}
