package porthold

import (
	"errors"
	"net"
	"strconv"
	"syscall"
	"testing"
)

// A held port can't be bound by a listener (Go's set SO_REUSEADDR), and a
// connection to it is refused; once released, the service binds it.
func TestHoldPort_KeepsThePortAndRefusesConnections(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	addr := "127.0.0.1:" + strconv.Itoa(port)
	h, err := Bind(port)
	if err != nil {
		t.Fatal(err)
	}
	if l, err := net.Listen("tcp", addr); err == nil {
		l.Close()
		t.Fatal("a listener bound a held port")
	} else if !errors.Is(err, syscall.EADDRINUSE) {
		t.Fatalf("listen on a held port: %v, want address in use", err)
	}
	if c, err := net.Dial("tcp", addr); err == nil {
		c.Close()
		t.Fatal("a connection to a held port was accepted")
	} else if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("dial a held port: %v, want refused", err)
	}
	h.Release()
	h.Release() // twice is harmless
	l, err = net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("listen after the release: %v", err)
	}
	l.Close()
}
