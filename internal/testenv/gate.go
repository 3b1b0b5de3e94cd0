package testenv

import (
	"errors"
	"io"
	"net"
	"os"
	"strconv"
	"sync"
	"testing"

	"berth.dev/berth/internal/porthold"
)

// Gate is a byte-level proxy in front of a real service that a test can
// take down and bring back, as an outage would: Down closes the listener
// and every connection (clients get "connection refused"), Hang keeps
// accepting but never forwards or answers (a SIGSTOPped daemon, a black
// hole), Up serves again on the same address. The service itself is real
// and untouched.
type Gate struct {
	// Addr is "127.0.0.1:PORT" for a TCP gate, the socket path for a unix
	// one: what clients dial instead of the service.
	Addr string

	network, backend string
	mu               sync.Mutex
	l                net.Listener
	held             *porthold.Hold // a TCP gate's port while it is down
	hang             bool
	conns            map[net.Conn]struct{}
}

// NewGate starts a gate on a free loopback port in front of backend
// ("127.0.0.1:PORT"). It is up.
func NewGate(t testing.TB, backend string) *Gate {
	t.Helper()
	g := &Gate{network: "tcp", backend: backend, conns: map[net.Conn]struct{}{}}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g.Addr = l.Addr().String()
	g.serve(l)
	t.Cleanup(g.close)
	return g
}

// NewUnixGate starts a gate on a unix socket under a temp dir in front of
// the unix socket backend (a Docker engine's, say). It is up.
func NewUnixGate(t testing.TB, backend string) *Gate {
	t.Helper()
	g := &Gate{network: "unix", backend: backend, conns: map[net.Conn]struct{}{}, Addr: t.TempDir() + "/gate.sock"}
	l, err := net.Listen("unix", g.Addr)
	if err != nil {
		t.Fatal(err)
	}
	g.serve(l)
	t.Cleanup(g.close)
	return g
}

// Down refuses connections and cuts the open ones.
func (g *Gate) Down() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.l != nil {
		g.l.Close()
		g.l = nil
		if g.network == "tcp" {
			// Its port is in the ephemeral range: Docker's proxy or an
			// outgoing connection may take it before Up otherwise.
			if _, port, err := net.SplitHostPort(g.Addr); err == nil {
				n, _ := strconv.Atoi(port)
				g.held, _ = porthold.Bind(n)
			}
		}
	}
	g.cut()
}

// Hang accepts connections but never answers; open ones stop moving.
func (g *Gate) Hang(t testing.TB) {
	g.mu.Lock()
	g.hang = true
	g.cut()
	g.mu.Unlock()
	if err := g.listen(); err != nil {
		t.Fatal(err)
	}
}

// Up serves again, on the same address.
func (g *Gate) Up(t testing.TB) {
	t.Helper()
	g.mu.Lock()
	g.hang = false
	g.cut() // held connections of a hang: their clients gave up or retry
	g.mu.Unlock()
	if err := g.listen(); err != nil {
		t.Fatal(err)
	}
}

func (g *Gate) listen() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.l != nil {
		return nil
	}
	if g.network == "unix" {
		os.Remove(g.Addr)
	}
	g.held.Release()
	g.held = nil
	l, err := net.Listen(g.network, g.Addr)
	if err != nil {
		return err
	}
	g.l = l
	go g.accept(l)
	return nil
}

func (g *Gate) serve(l net.Listener) {
	g.l = l
	go g.accept(l)
}

func (g *Gate) accept(l net.Listener) {
	for {
		c, err := l.Accept()
		if err != nil {
			return
		}
		g.mu.Lock()
		hang := g.hang
		g.conns[c] = struct{}{}
		g.mu.Unlock()
		if hang {
			continue // held open, never answered
		}
		go g.forward(c)
	}
}

func (g *Gate) forward(c net.Conn) {
	b, err := net.Dial(g.network, g.backend)
	if err != nil {
		g.drop(c)
		return
	}
	g.mu.Lock()
	g.conns[b] = struct{}{}
	g.mu.Unlock()
	var wg sync.WaitGroup
	wg.Add(2)
	pipe := func(dst, src net.Conn) {
		defer wg.Done()
		if _, err := io.Copy(dst, src); err != nil && !errors.Is(err, net.ErrClosed) {
			dst.Close()
		}
		if cw, ok := dst.(interface{ CloseWrite() error }); ok {
			cw.CloseWrite()
		}
	}
	go pipe(b, c)
	go pipe(c, b)
	wg.Wait()
	g.drop(c)
	g.drop(b)
}

func (g *Gate) drop(c net.Conn) {
	c.Close()
	g.mu.Lock()
	delete(g.conns, c)
	g.mu.Unlock()
}

// cut closes every open connection; g.mu is held.
func (g *Gate) cut() {
	for c := range g.conns {
		c.Close()
		delete(g.conns, c)
	}
}

func (g *Gate) close() {
	g.Down()
	g.mu.Lock()
	g.held.Release()
	g.held = nil
	g.mu.Unlock()
}
