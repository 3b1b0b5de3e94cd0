package testenv

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Nginx is Debian's nginx run from a private prefix in a temp dir, listening
// on a loopback port. Its nginx.conf includes every *.conf in ConfD inside
// the http block: a test writes the operator's server block there, and berth
// writes its upstream file beside it, as on a real host.
type Nginx struct {
	Dir   string // prefix: nginx.conf, pid, logs, temp paths
	ConfD string // included inside http {}
	Port  int    // reserved for the test's server block to listen on

	conf string
	proc *process
}

// NewNginx prepares an nginx prefix and reserves a port. Write the site's
// config into ConfD, then call Start.
func NewNginx(t testing.TB) *Nginx {
	t.Helper()
	shortSkip(t, "NewNginx")
	if _, err := exec.LookPath("nginx"); err != nil {
		unavailable(t, "nginx", err)
	}
	dir := t.TempDir()
	n := &Nginx{Dir: dir, ConfD: filepath.Join(dir, "conf.d"), Port: FreePort(t), conf: filepath.Join(dir, "nginx.conf")}
	if err := os.MkdirAll(n.ConfD, 0o755); err != nil {
		t.Fatal(err)
	}
	user := ""
	if os.Geteuid() == 0 {
		// Workers would otherwise run as nobody and could not reach the
		// temp paths inside the test's private (0700) temp dir.
		user = "user root root;"
	}
	conf := fmt.Sprintf(`%s
worker_processes 1;
daemon off;
pid %[2]s/nginx.pid;
error_log stderr warn;
error_log %[2]s/notice.log notice;
events { worker_connections 1024; }
http {
  access_log off;
  client_body_temp_path %[2]s/tmp/body;
  proxy_temp_path %[2]s/tmp/proxy;
  fastcgi_temp_path %[2]s/tmp/fastcgi;
  uwsgi_temp_path %[2]s/tmp/uwsgi;
  scgi_temp_path %[2]s/tmp/scgi;
  include %[3]s/*.conf;
}
`, user, dir, n.ConfD)
	if err := os.WriteFile(n.conf, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(dir, "tmp"), 0o755); err != nil {
		t.Fatal(err)
	}
	return n
}

// Args are the flags that point an nginx command at this instance, e.g.
// append "-t" to test its config or "-s", "reload" to reload it.
func (n *Nginx) Args() []string { return []string{"-p", n.Dir, "-c", n.conf} }

// AddMain appends directives to nginx.conf's main context (e.g.
// "worker_shutdown_timeout 10s;"); call it before Start.
func (n *Nginx) AddMain(t testing.TB, directives string) {
	t.Helper()
	f, err := os.OpenFile(n.conf, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := fmt.Fprintln(f, directives); err != nil {
		t.Fatal(err)
	}
}

// Reloads counts the reloads nginx has carried out (from its notice log:
// "signal 1 (SIGHUP) received from PID, reconfiguring").
func (n *Nginx) Reloads(t testing.TB) int {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(n.Dir, "notice.log"))
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	return strings.Count(string(b), "(SIGHUP) received")
}

// URL is the base URL of the reserved port.
func (n *Nginx) URL() string { return fmt.Sprintf("http://127.0.0.1:%d", n.Port) }

// Start runs nginx and waits until it answers on Port.
func (n *Nginx) Start(t testing.TB) {
	t.Helper()
	if out, err := exec.Command("nginx", append(n.Args(), "-t", "-q")...).CombinedOutput(); err != nil {
		t.Fatalf("testenv: nginx -t: %v\n%s", err, out)
	}
	p, err := startProcess(t, "nginx", exec.Command("nginx", n.Args()...))
	if err != nil {
		unavailable(t, "nginx", err)
	}
	n.proc = p
	if err := p.waitTCP(fmt.Sprintf("127.0.0.1:%d", n.Port), 10*time.Second); err != nil {
		t.Fatalf("testenv: nginx not answering on %d: %v", n.Port, err)
	}
}

// Reload asks the running nginx to re-read its config.
func (n *Nginx) Reload(t testing.TB) {
	t.Helper()
	if out, err := exec.Command("nginx", append(n.Args(), "-s", "reload")...).CombinedOutput(); err != nil {
		t.Fatalf("testenv: nginx reload: %v\n%s", err, out)
	}
}

// StartProxy starts nginx with a site on Port proxying everything to
// upstream, the way an operator's server block does on a berth host. The
// upstream's definition lives in a file of its own in ConfD — the file berth
// owns — first pointing at first ("127.0.0.1:PORT"); its path is returned.
func StartProxy(t testing.TB, upstream, first string) (*Nginx, string) {
	t.Helper()
	n := NewNginx(t)
	site := fmt.Sprintf("server { listen 127.0.0.1:%d; location / { proxy_pass http://%s; } }\n", n.Port, upstream)
	file := filepath.Join(n.ConfD, "berth-"+upstream+".conf")
	if err := os.WriteFile(filepath.Join(n.ConfD, "site.conf"), []byte(site), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(file, []byte(fmt.Sprintf("upstream %s { server %s; }\n", upstream, first)), 0o644); err != nil {
		t.Fatal(err)
	}
	n.Start(t)
	return n, file
}

// HTTPBackend serves body on a loopback port until the test ends and
// returns its "127.0.0.1:PORT".
func HTTPBackend(t testing.TB, body string) string {
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, body) }))
	t.Cleanup(s.Close)
	return strings.TrimPrefix(s.URL, "http://")
}

// Answer is what url answers on a fresh connection, trimmed, or the
// error. Which answer is checked, not how fast (load generators count
// failed requests): a machine kept busy by a build beside the suite took
// over 5 s to answer one.
func Answer(url string) string {
	c := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 30 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return strings.TrimSpace(string(b))
}

// Get fetches url and returns the body, failing the test on a transport
// error.
func Get(t testing.TB, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}
