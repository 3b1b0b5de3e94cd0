package testenv

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// Registry is a real CNCF distribution registry on a loopback port, with
// filesystem storage in a temp dir. Clients (dockerd included) reach it
// through a small counting proxy, so a test can assert how many requests a
// deploy made: a redeploy of present images must make none.
type Registry struct {
	// Host is "127.0.0.1:PORT", the registry part of image references.
	// dockerd treats 127.0.0.0/8 as an insecure registry: plain HTTP.
	Host string

	mu       sync.Mutex
	requests []string // "METHOD PATH" of every request, in order
	user     string   // basic auth required when set
	pass     string
	stall    chan struct{} // blob GETs block until it is closed
}

// RequireAuth makes the registry answer 401 unless a request carries these
// basic-auth credentials, as a private registry would.
func (r *Registry) RequireAuth(user, pass string) {
	r.mu.Lock()
	r.user, r.pass = user, pass
	r.mu.Unlock()
}

// Stall makes blob downloads hang (a registry that stops sending mid-pull)
// until the returned function is called or the test ends.
func (r *Registry) Stall(t testing.TB) (release func()) {
	ch := make(chan struct{})
	r.mu.Lock()
	r.stall = ch
	r.mu.Unlock()
	var once sync.Once
	release = func() {
		once.Do(func() {
			r.mu.Lock()
			r.stall = nil
			r.mu.Unlock()
			close(ch)
		})
	}
	t.Cleanup(release)
	return release
}

// Requests returns "METHOD PATH" for every request the registry served.
func (r *Registry) Requests() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.requests...)
}

// ResetRequests forgets the requests seen so far.
func (r *Registry) ResetRequests() {
	r.mu.Lock()
	r.requests = nil
	r.mu.Unlock()
}

// StartRegistry starts a registry for the test. The binary is built by
// scripts/test from internal/testenv/registrybin into CacheDir (or named by
// BERTH_REGISTRY_BIN).
func StartRegistry(t testing.TB) *Registry {
	t.Helper()
	shortSkip(t, "StartRegistry")
	bin, err := builtBinary("BERTH_REGISTRY_BIN", "registry")
	if err != nil {
		unavailable(t, "registry", err)
	}
	dir := t.TempDir()
	var backend string
	for attempt := 0; ; attempt++ {
		backend, err = startRegistryProcess(t, bin, dir)
		if err == nil {
			break
		}
		if attempt == 2 {
			unavailable(t, "registry", err)
		}
	}
	target, _ := url.Parse("http://" + backend)
	reg := &Registry{}
	proxy := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(target)
			pr.Out.Host = pr.In.Host
		},
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		reg.mu.Lock()
		reg.requests = append(reg.requests, req.Method+" "+req.URL.Path)
		user, pass, stall := reg.user, reg.pass, reg.stall
		reg.mu.Unlock()
		if user != "" {
			u, p, ok := req.BasicAuth()
			if !ok || u != user || p != pass {
				w.Header().Set("WWW-Authenticate", `Basic realm="berth-test"`)
				http.Error(w, `{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}`, http.StatusUnauthorized)
				return
			}
		}
		if stall != nil && req.Method == http.MethodGet && strings.Contains(req.URL.Path, "/blobs/") {
			select {
			case <-stall:
			case <-req.Context().Done():
				return
			}
		}
		proxy.ServeHTTP(w, req)
	}))
	t.Cleanup(srv.Close)
	reg.Host = strings.TrimPrefix(srv.URL, "http://")
	return reg
}

// startRegistryProcess starts the registry on a fresh port and waits until
// it serves /v2/. A port taken between FreePort and bind fails here and is
// retried by the caller.
func startRegistryProcess(t testing.TB, bin, dir string) (string, error) {
	addr := fmt.Sprintf("127.0.0.1:%d", FreePort(t))
	cfg := fmt.Sprintf(`version: 0.1
log:
  level: error
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: %s
  delete:
    enabled: true
http:
  addr: %s
  relativeurls: true
`, filepath.Join(dir, "data"), addr)
	cfgPath := filepath.Join(dir, "config.yml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		return "", err
	}
	cmd := exec.Command(bin, "serve", cfgPath)
	// The registry reads OTEL_* and REGISTRY_* from the environment; keep
	// the test's environment out of it.
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "OTEL_TRACES_EXPORTER=none"}
	// At error level the registry still logs every 404 that a push's
	// existence checks cause; those would drown the test log.
	p, err := startProcess(t, "registry", cmd, func(line string) bool {
		return strings.Contains(line, "http.response.status=404")
	})
	if err != nil {
		return "", err
	}
	if err := p.waitHTTP("http://"+addr+"/v2/", 15*time.Second); err != nil {
		p.stop()
		return "", fmt.Errorf("registry on %s: %w", addr, err)
	}
	return addr, nil
}
