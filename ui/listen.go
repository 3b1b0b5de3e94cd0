package ui

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"golang.org/x/net/netutil"
)

// `berth ui`'s own listener. The agent's page rides the local API's
// (loopback or a unix socket); berth ui may listen anywhere, but not in
// the clear for anyone: a listen beyond loopback needs TLS, a basic-auth
// file, or an explicit InsecureListen.

// ListenOptions is where and how berth ui listens.
type ListenOptions struct {
	Addr string
	// TLSCert and TLSKey serve HTTPS (both or neither); the files are
	// read again when they change, so a renewed certificate needs no
	// restart.
	TLSCert, TLSKey string
	// BasicAuthFile holds "user:bcrypt-hash" lines.
	BasicAuthFile string
	// InsecureListen allows a plain, open listener beyond loopback.
	InsecureListen bool
}

// Check refuses what berth ui must not start with.
// maxConns bounds the connections served at once, as api.MaxConns does
// for the agent's local API: more wait in the kernel's queue.
const maxConns = 128

func (o ListenOptions) Check() error {
	if _, _, err := net.SplitHostPort(o.Addr); err != nil {
		return fmt.Errorf("--listen %s: %w", o.Addr, err)
	}
	if (o.TLSCert == "") != (o.TLSKey == "") {
		return errors.New("--tls-cert and --tls-key go together")
	}
	if !o.loopback() && o.TLSCert == "" && o.BasicAuthFile == "" && !o.InsecureListen {
		return fmt.Errorf("--listen %s is not a loopback address: the fleet's page would be open to anyone who reaches it; "+
			"serve it over TLS (--tls-cert, --tls-key), behind a login (--basic-auth-file), or say --insecure-listen", o.Addr)
	}
	return nil
}

// loopback says whether o listens on loopback only.
func (o ListenOptions) loopback() bool {
	host, _, err := net.SplitHostPort(o.Addr)
	if err != nil {
		return false
	}
	ip := net.ParseIP(host)
	return host == "localhost" || (ip != nil && ip.IsLoopback())
}

// ServeFleet serves s (berth ui) on o until ctx ends. ready, when set, is
// called with the address once it listens.
func ServeFleet(ctx context.Context, s *Server, o ListenOptions, log hclog.Logger, ready func(addr string)) error {
	if err := o.Check(); err != nil {
		return err
	}
	// Beyond loopback, names are how the page is reached (DNS rebinding
	// finds TLS or a login there, rebind.go).
	s.AnyHost = !o.loopback()
	var h http.Handler = s
	if o.BasicAuthFile != "" {
		a, err := newBasicAuth(o.BasicAuthFile, log)
		if err != nil {
			return err
		}
		h = a.wrap(s, s.pageSet().csp)
		if o.TLSCert == "" {
			log.Warn("basic auth without TLS: passwords cross the network in the clear")
		}
	}
	var tlsCfg *tls.Config
	if o.TLSCert != "" {
		kp := &keyPair{cert: o.TLSCert, key: o.TLSKey}
		if _, err := kp.get(nil); err != nil {
			return err
		}
		tlsCfg = &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: kp.get}
		inner := h
		h = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Strict-Transport-Security", "max-age=31536000")
			inner.ServeHTTP(w, r)
		})
	}
	l, err := net.Listen("tcp", o.Addr)
	if err != nil {
		return err
	}
	l = netutil.LimitListener(l, maxConns)
	if tlsCfg != nil {
		l = tls.NewListener(l, tlsCfg)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 30 * time.Second, WriteTimeout: 30 * time.Second,
		IdleTimeout: 2 * time.Minute, ErrorLog: log.StandardLogger(&hclog.StandardLoggerOptions{ForceLevel: hclog.Debug})}
	srv.RegisterOnShutdown(s.Stop)
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if srv.Shutdown(sctx) != nil {
			srv.Close()
		}
	}()
	if ready != nil {
		ready(l.Addr().String())
	}
	if err := srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// keyPair is a certificate and key read again when either file changes.
type keyPair struct {
	cert, key string

	mu   sync.Mutex
	mods [2]time.Time
	kp   *tls.Certificate
}

func (k *keyPair) get(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	var mods [2]time.Time
	for i, p := range []string{k.cert, k.key} {
		fi, err := os.Stat(p)
		if err != nil {
			return nil, fmt.Errorf("tls: %w", err)
		}
		mods[i] = fi.ModTime()
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.kp != nil && mods == k.mods {
		return k.kp, nil
	}
	kp, err := tls.LoadX509KeyPair(k.cert, k.key)
	if err != nil {
		if k.kp != nil {
			return k.kp, nil // a renewal half-written: the old pair serves on
		}
		return nil, fmt.Errorf("tls: %w", err)
	}
	k.kp, k.mods = &kp, mods
	return k.kp, nil
}
