package testenv

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"berth.dev/berth/internal/porthold"
)

// Etcd is one real etcd member running as its own process on loopback
// ports, with its data in a temp dir: Debian's etcd-server (3.4), or the
// binary $BERTH_ETCD_BIN names. Tests stop, kill, pause and restart it to
// make outages, crashes and leader changes.
//
// The in-process server (go.etcd.io/etcd/server/v3/embed) is not here on
// purpose: importing it from testenv would compile etcd's server into
// every test binary that uses testenv. Package fleet's own tests embed it.
type Etcd struct {
	Name      string
	Dir       string
	ClientURL string
	PeerURL   string

	t     testing.TB
	bin   string
	args  []string
	pki   *EtcdPKI
	ports []int // client, peer
	mu    sync.Mutex
	proc  *process
	holds []*porthold.Hold // the ports while the member is down (internal/porthold)
}

// EtcdCluster is several members forming one cluster.
type EtcdCluster struct {
	Members []*Etcd
}

// EtcdOption changes how StartEtcdCluster runs the members.
type EtcdOption func(*etcdOptions)

type etcdOptions struct {
	tls *EtcdPKI
}

// WithEtcdTLS makes the members talk TLS to clients and to each other,
// and require client certificates signed by the PKI's CA (as
// docs/fleet.md sets up a production cluster).
func WithEtcdTLS(p *EtcdPKI) EtcdOption { return func(o *etcdOptions) { o.tls = p } }

// etcdBinary finds the etcd server binary.
func etcdBinary() (string, error) {
	if p := os.Getenv("BERTH_ETCD_BIN"); p != "" {
		return p, nil
	}
	p, err := exec.LookPath("etcd")
	if err != nil {
		return "", fmt.Errorf("etcd not installed (apt-get install etcd-server; scripts/test does, or set BERTH_ETCD_BIN)")
	}
	return p, nil
}

// StartEtcd starts a single-member etcd.
func StartEtcd(t testing.TB) *Etcd {
	t.Helper()
	return StartEtcdCluster(t, 1).Members[0]
}

// StartEtcdCluster starts n members on loopback ports and waits until the
// cluster has a leader.
func StartEtcdCluster(t testing.TB, n int, opts ...EtcdOption) *EtcdCluster {
	t.Helper()
	shortSkip(t, "StartEtcdCluster")
	bin, err := etcdBinary()
	if err != nil {
		unavailable(t, "etcd", err)
	}
	var o etcdOptions
	for _, f := range opts {
		f(&o)
	}
	scheme := "http"
	if o.tls != nil {
		scheme = "https"
	}
	c := &EtcdCluster{}
	var initial []string
	for i := range n {
		client, peer := FreePort(t), FreePort(t)
		m := &Etcd{
			Name:      fmt.Sprintf("m%d", i),
			Dir:       filepath.Join(t.TempDir(), "etcd"),
			ClientURL: fmt.Sprintf("%s://127.0.0.1:%d", scheme, client),
			PeerURL:   fmt.Sprintf("%s://127.0.0.1:%d", scheme, peer),
			t:         t,
			bin:       bin,
			pki:       o.tls,
			ports:     []int{client, peer},
		}
		m.hold() // until it starts
		t.Cleanup(m.release)
		c.Members = append(c.Members, m)
		initial = append(initial, m.Name+"="+m.PeerURL)
	}
	token := "berth-test-" + randomID()
	for _, m := range c.Members {
		m.args = []string{
			"--name", m.Name, "--data-dir", m.Dir,
			"--listen-client-urls", m.ClientURL, "--advertise-client-urls", m.ClientURL,
			"--listen-peer-urls", m.PeerURL, "--initial-advertise-peer-urls", m.PeerURL,
			"--initial-cluster", strings.Join(initial, ","), "--initial-cluster-state", "new",
			"--initial-cluster-token", token,
			// Fast elections, as on a LAN; a leader change takes about a
			// second.
			"--heartbeat-interval", "100", "--election-timeout", "1000",
			"--logger", "zap", "--log-outputs", "stderr", "--log-level", "error",
		}
		if p := o.tls; p != nil {
			m.args = append(m.args,
				"--cert-file", p.ServerCert, "--key-file", p.ServerKey, "--trusted-ca-file", p.CA, "--client-cert-auth",
				"--peer-cert-file", p.ServerCert, "--peer-key-file", p.ServerKey, "--peer-trusted-ca-file", p.CA, "--peer-client-cert-auth")
		}
		m.Start()
	}
	for _, m := range c.Members {
		if err := m.waitHealthy(30 * time.Second); err != nil {
			unavailable(t, "etcd", err)
		}
	}
	return c
}

// Endpoints are the members' client URLs.
func (c *EtcdCluster) Endpoints() []string {
	var out []string
	for _, m := range c.Members {
		out = append(out, m.ClientURL)
	}
	return out
}

// Leader is the member that is the leader now (waiting up to 10 s for one).
func (c *EtcdCluster) Leader(t testing.TB) *Etcd {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		for _, m := range c.Members {
			if st, err := m.Status(); err == nil && st.Leader != "" && st.Leader == st.Header.MemberID {
				return m
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("testenv: etcd cluster has no leader after 10 s")
	return nil
}

// Start starts the member (again), with its data dir as it is.
func (e *Etcd) Start() {
	e.t.Helper()
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.proc != nil {
		select {
		case <-e.proc.exited:
		default:
			return // running
		}
	}
	e.releaseLocked()
	p, err := startProcess(e.t, "etcd "+e.Name, exec.Command(e.bin, e.args...))
	if err != nil {
		unavailable(e.t, "etcd", err)
	}
	e.proc = p
}

// Stop stops the member gracefully and waits for it to exit.
func (e *Etcd) Stop() {
	e.mu.Lock()
	p := e.proc
	e.mu.Unlock()
	if p != nil {
		p.stop()
		e.hold()
	}
}

// Kill kills the member (SIGKILL) and waits for it to exit.
func (e *Etcd) Kill() {
	e.mu.Lock()
	p := e.proc
	e.mu.Unlock()
	if p == nil {
		return
	}
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	<-p.exited
	e.hold()
}

// hold keeps the stopped member's ports from anyone else until it starts
// again (internal/porthold). A port that can't be held is left as it is: the
// restart then fails only if someone takes it meanwhile.
func (e *Etcd) hold() {
	e.mu.Lock()
	defer e.mu.Unlock()
	if len(e.holds) > 0 {
		return
	}
	for _, port := range e.ports {
		if h, err := porthold.Bind(port); err == nil {
			e.holds = append(e.holds, h)
		}
	}
}

func (e *Etcd) release() {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.releaseLocked()
}

func (e *Etcd) releaseLocked() {
	for _, h := range e.holds {
		h.Release()
	}
	e.holds = nil
}

// Restart stops the member and starts it again, waiting until it is
// healthy.
func (e *Etcd) Restart() {
	e.t.Helper()
	e.Stop()
	e.Start()
	if err := e.waitHealthy(30 * time.Second); err != nil {
		e.t.Fatalf("testenv: etcd %s after restart: %v", e.Name, err)
	}
}

// WaitHealthy waits until the member serves with a leader.
func (e *Etcd) WaitHealthy(t testing.TB, timeout time.Duration) {
	t.Helper()
	if err := e.waitHealthy(timeout); err != nil {
		t.Fatalf("testenv: etcd %s: %v", e.Name, err)
	}
}

func (e *Etcd) waitHealthy(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	c := e.httpClient(time.Second)
	var last error
	for time.Now().Before(deadline) {
		e.mu.Lock()
		p := e.proc
		e.mu.Unlock()
		select {
		case <-p.exited:
			return fmt.Errorf("etcd %s exited: %v", e.Name, p.err)
		default:
		}
		resp, err := c.Get(e.ClientURL + "/health")
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if bytes.Contains(b, []byte(`"health":"true"`)) {
				return nil
			}
			err = fmt.Errorf("health: %s", b)
		}
		last = err
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("etcd %s not healthy after %s: %v", e.Name, timeout, last)
}

// EtcdStatus is the member's status from its JSON gateway.
type EtcdStatus struct {
	Header struct {
		MemberID string `json:"member_id"`
	} `json:"header"`
	Leader  string `json:"leader"`
	Version string `json:"version"`
	DBSize  string `json:"dbSize"`
}

// Status asks the member for its status (leader, version, db size).
func (e *Etcd) Status() (*EtcdStatus, error) {
	c := e.httpClient(time.Second)
	resp, err := c.Post(e.ClientURL+"/v3/maintenance/status", "application/json", strings.NewReader("{}"))
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var st EtcdStatus
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		return nil, err
	}
	return &st, nil
}

// Metrics returns the member's Prometheus metrics text.
func (e *Etcd) Metrics() (string, error) {
	c := e.httpClient(5 * time.Second)
	resp, err := c.Get(e.ClientURL + "/metrics")
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}

// Pid is the member's process id (0 when it is not running).
func (e *Etcd) Pid() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.proc == nil {
		return 0
	}
	return e.proc.cmd.Process.Pid
}

// httpClient reaches the member's HTTP endpoints, with the PKI's client
// certificate when it serves TLS.
func (e *Etcd) httpClient(timeout time.Duration) *http.Client {
	c := &http.Client{Timeout: timeout}
	if e.pki != nil {
		c.Transport = &http.Transport{TLSClientConfig: e.pki.ClientTLS()}
	}
	return c
}

// EtcdPKI is a throwaway certificate authority with one server
// certificate (for 127.0.0.1 and localhost, usable by the members both as
// servers and as peers' clients) and one client certificate (CN berth),
// as PEM files in a temp dir.
type EtcdPKI struct {
	CA, ServerCert, ServerKey, ClientCert, ClientKey string
	pool                                             *x509.CertPool
	client                                           tls.Certificate
}

// NewEtcdPKI makes the CA and certificates.
func NewEtcdPKI(t testing.TB) *EtcdPKI {
	t.Helper()
	dir := t.TempDir()
	must := func(err error) {
		if err != nil {
			t.Fatalf("testenv: etcd pki: %v", err)
		}
	}
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	must(err)
	now := time.Now()
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "berth test etcd CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	must(err)
	ca, err := x509.ParseCertificate(caDER)
	must(err)
	p := &EtcdPKI{CA: filepath.Join(dir, "ca.pem"), pool: x509.NewCertPool()}
	p.pool.AddCert(ca)
	must(os.WriteFile(p.CA, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}), 0o600))
	issue := func(serial int64, cn string, server bool) (certFile, keyFile string) {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		must(err)
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: cn},
			NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
			KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
		if server {
			tmpl.ExtKeyUsage = append(tmpl.ExtKeyUsage, x509.ExtKeyUsageServerAuth)
			tmpl.IPAddresses = []net.IP{net.ParseIP("127.0.0.1")}
			tmpl.DNSNames = []string{"localhost"}
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
		must(err)
		kder, err := x509.MarshalECPrivateKey(key)
		must(err)
		certFile, keyFile = filepath.Join(dir, cn+".pem"), filepath.Join(dir, cn+"-key.pem")
		must(os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600))
		must(os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600))
		return certFile, keyFile
	}
	p.ServerCert, p.ServerKey = issue(2, "etcd", true)
	p.ClientCert, p.ClientKey = issue(3, "berth", false)
	p.client, err = tls.LoadX509KeyPair(p.ClientCert, p.ClientKey)
	must(err)
	return p
}

// ClientTLS is a client configuration trusting the CA and presenting the
// client certificate.
func (p *EtcdPKI) ClientTLS() *tls.Config {
	return &tls.Config{RootCAs: p.pool, Certificates: []tls.Certificate{p.client}, MinVersion: tls.VersionTLS12}
}
