package ui

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"golang.org/x/crypto/bcrypt"

	"berth.dev/berth/fleet"
)

func TestListenOptions_BeyondLoopbackNeedsTLSOrALoginOrConsent(t *testing.T) {
	for _, tc := range []struct {
		name string
		o    ListenOptions
		ok   bool
	}{
		{"loopback", ListenOptions{Addr: "127.0.0.1:7480"}, true},
		{"localhost", ListenOptions{Addr: "localhost:7480"}, true},
		{"ipv6 loopback", ListenOptions{Addr: "[::1]:7480"}, true},
		{"every address, open", ListenOptions{Addr: "0.0.0.0:7480"}, false},
		{"a name, open", ListenOptions{Addr: "ops.example.org:7480"}, false},
		{"TLS", ListenOptions{Addr: "0.0.0.0:7480", TLSCert: "c", TLSKey: "k"}, true},
		{"a login", ListenOptions{Addr: "0.0.0.0:7480", BasicAuthFile: "f"}, true},
		{"said so", ListenOptions{Addr: "0.0.0.0:7480", InsecureListen: true}, true},
		{"a cert without its key", ListenOptions{Addr: "127.0.0.1:7480", TLSCert: "c"}, false},
		{"no port", ListenOptions{Addr: "127.0.0.1"}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.o.Check()
			if (err == nil) != tc.ok {
				t.Fatalf("Check() = %v, want ok %t", err, tc.ok)
			}
			if err != nil && !tc.ok && strings.HasPrefix(tc.o.Addr, "0.0.0.0") && !strings.Contains(err.Error(), "--insecure-listen") {
				t.Errorf("the refusal does not say how to go on: %v", err)
			}
		})
	}
}

// berth ui over TLS with a login: 401 without it (with the CSP), the page
// with it, HSTS; a password changed in the file takes effect at once.
func TestServeFleet_TLSAndBasicAuth(t *testing.T) {
	dir := t.TempDir()
	cert, key, pool := selfSigned(t, dir)
	auth := filepath.Join(dir, "users")
	writeUsers(t, auth, "ops", "s3cret")
	s := &Server{Fleet: &Fleet{Reader: &fakeFleet{envs: []fleet.Overview{threeHosts("v1")}}}}
	ctx, cancel := context.WithCancel(context.Background())
	addrc := make(chan string, 1)
	done := make(chan error, 1)
	go func() {
		done <- ServeFleet(ctx, s, ListenOptions{Addr: "127.0.0.1:0", TLSCert: cert, TLSKey: key, BasicAuthFile: auth}, hclog.NewNullLogger(),
			func(a string) { addrc <- a })
	}()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	var addr string
	select {
	case addr = <-addrc:
	case err := <-done:
		t.Fatal(err)
	}
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}, Timeout: time.Minute}
	get := func(user, pass string) *http.Response {
		req, _ := http.NewRequest(http.MethodGet, "https://"+addr+"/", nil)
		if user != "" {
			req.SetBasicAuth(user, pass)
		}
		res, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		return res
	}
	for _, c := range [][2]string{{"", ""}, {"ops", "wrong"}, {"nobody", "s3cret"}} {
		res := get(c[0], c[1])
		if res.StatusCode != http.StatusUnauthorized || !strings.HasPrefix(res.Header.Get("WWW-Authenticate"), "Basic") ||
			!strings.Contains(res.Header.Get("Content-Security-Policy"), "default-src 'none'") {
			t.Errorf("%q: %d %v", c[0], res.StatusCode, res.Header)
		}
	}
	res := get("ops", "s3cret")
	if res.StatusCode != http.StatusOK || !strings.Contains(res.Header.Get("Strict-Transport-Security"), "max-age") {
		t.Errorf("with the login: %d, HSTS %q", res.StatusCode, res.Header.Get("Strict-Transport-Security"))
	}
	writeUsers(t, auth, "ops", "n3w")
	later := time.Now().Add(time.Minute) // a new mtime, however coarse the file system's clock
	if err := os.Chtimes(auth, later, later); err != nil {
		t.Fatal(err)
	}
	if res := get("ops", "s3cret"); res.StatusCode != http.StatusUnauthorized {
		t.Errorf("the old password still works after the file changed: %d", res.StatusCode)
	}
	if res := get("ops", "n3w"); res.StatusCode != http.StatusOK {
		t.Errorf("the new password: %d", res.StatusCode)
	}
}

func writeUsers(t *testing.T, path, user, pass string) {
	t.Helper()
	h, err := bcrypt.GenerateFromPassword([]byte(pass), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte("# berth ui logins\n"+user+":"+string(h)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
}

// selfSigned writes a certificate for 127.0.0.1 and its key.
func selfSigned(t *testing.T, dir string) (cert, key string, pool *x509.CertPool) {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "berth ui test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	kb, _ := x509.MarshalECPrivateKey(k)
	cert, key = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	os.WriteFile(cert, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	os.WriteFile(key, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600)
	c, _ := x509.ParseCertificate(der)
	pool = x509.NewCertPool()
	pool.AddCert(c)
	return cert, key, pool
}

// A page on loopback answers requests addressed to an IP, localhost or a
// unix socket, and refuses any other name: a web page that rebinds its
// own name to 127.0.0.1 cannot read it. Beyond loopback, names are
// answered (TLS or a login guards them).
func TestPage_OnLoopbackRefusesOtherNames(t *testing.T) {
	s, _ := hostileHost(t)
	for host, want := range map[string]int{"127.0.0.1:9465": 200, "[::1]:9465": 200, "localhost:9465": 200, "LOCALHOST.": 200,
		"ui.localhost": 200, "10.1.2.3": 200, "[fe80::1%25eth0]:80": 200, "": 200,
		"evil.example:9465": http.StatusMisdirectedRequest, "localhost.evil.example": http.StatusMisdirectedRequest, "127.0.0.1.nip.io": http.StatusMisdirectedRequest} {
		for _, path := range []string{"/", "/events", "/history?env=prod", "/nothing"} {
			req := httptest.NewRequest(http.MethodGet, path, nil)
			req.Host = host
			if path == "/events" {
				ctx, cancel := context.WithCancel(req.Context())
				cancel() // the stream ends at once
				req = req.WithContext(ctx)
			}
			rec := httptest.NewRecorder()
			s.Handler().ServeHTTP(rec, req)
			got := rec.Code
			if got != http.StatusMisdirectedRequest {
				got = 200
			}
			if got != want || rec.Header().Get("Content-Security-Policy") == "" {
				t.Errorf("Host %q, %s: %d, want %d", host, path, rec.Code, want)
			}
		}
	}
	// Over a unix socket, any name.
	req := httptest.NewRequest(http.MethodGet, "/", nil)
	req.Host = "unix"
	req = req.WithContext(context.WithValue(req.Context(), http.LocalAddrContextKey, &net.UnixAddr{Name: "/run/berth/api.sock", Net: "unix"}))
	rec := httptest.NewRecorder()
	s.Handler().ServeHTTP(rec, req)
	if rec.Code != http.StatusOK {
		t.Errorf("over a unix socket: %d", rec.Code)
	}
	s.AnyHost = true
	req = httptest.NewRequest(http.MethodGet, "/", nil)
	req.Host = "berth.example.org"
	rec = httptest.NewRecorder()
	s.Handler().ServeHTTP(rec, req)
	if rec.Code != http.StatusOK {
		t.Errorf("AnyHost: %d", rec.Code)
	}
}

// Removing, emptying or garbling the login file refuses every login until
// it is good again: it is how a person revokes them all.
func TestBasicAuth_ABrokenFileRefusesEveryLogin(t *testing.T) {
	path := filepath.Join(t.TempDir(), "users")
	writeUsers(t, path, "ops", "s3cret")
	a, err := newBasicAuth(path, hclog.NewNullLogger())
	if err != nil {
		t.Fatal(err)
	}
	login := func() bool {
		req := httptest.NewRequest(http.MethodGet, "http://127.0.0.1/", nil)
		req.SetBasicAuth("ops", "s3cret")
		return a.check(req)
	}
	if !login() {
		t.Fatal("the login is refused")
	}
	for name, broken := range map[string]func(){
		"removed": func() { os.Remove(path) },
		"emptied": func() { os.WriteFile(path, nil, 0o600) },
		"garbled": func() { os.WriteFile(path, []byte("ops:not-a-hash\n"), 0o600) },
	} {
		broken()
		if login() {
			t.Errorf("%s: the last good file's login still works", name)
		}
		writeUsers(t, path, "ops", "s3cret")
		later := time.Now().Add(time.Minute)
		os.Chtimes(path, later, later)
		if !login() {
			t.Errorf("%s, then made good again: the login is refused", name)
		}
	}
}

// Bcrypt runs one comparison at a time: a request waiting for the slot
// while a stream of wrong passwords holds it gives up with its client,
// refused, instead of queueing CPU work nobody waits for.
func TestBasicAuth_ComparisonsTakeTurnsAndAGoneClientIsRefused(t *testing.T) {
	path := filepath.Join(t.TempDir(), "users")
	writeUsers(t, path, "ops", "s3cret")
	a, err := newBasicAuth(path, hclog.NewNullLogger())
	if err != nil {
		t.Fatal(err)
	}
	login := func(ctx context.Context) bool {
		req := httptest.NewRequestWithContext(ctx, http.MethodGet, "http://127.0.0.1/", nil)
		req.SetBasicAuth("ops", "s3cret")
		return a.check(req)
	}
	a.slots <- struct{}{} // another comparison runs
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan bool)
	go func() { done <- login(ctx) }()
	cancel()
	if <-done {
		t.Fatal("a request given up on while it waited is let in")
	}
	<-a.slots
	if !login(context.Background()) {
		t.Fatal("with the slot free again, the login is refused")
	}
}
