// Package porthold keeps a loopback TCP port bound, without listening,
// while the test service that owns it is down. A stopped service's port is
// otherwise free for anyone: another test's free-port pick, or Docker's
// proxy and an outgoing connection for a port in the ephemeral range, took
// one between a stop and the restart, and the service could not come back
// ("bind: address already in use"). The socket is bound without
// SO_REUSEADDR, so no other socket may bind the port, and a connection to
// it is refused as to a closed port, which is the outage a test makes.
//
// It is best effort: the same rule refuses the hold itself while
// connections the service closed sit in TIME_WAIT on the port (up to a
// minute), and callers then go on without it.
package porthold

import (
	"fmt"
	"syscall"
)

// Hold is a held port.
type Hold struct{ fd int }

// Bind holds 127.0.0.1:port.
func Bind(port int) (*Hold, error) {
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("hold port %d: %w", port, err)
	}
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Port: port, Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		syscall.Close(fd)
		return nil, fmt.Errorf("hold port %d: %w", port, err)
	}
	return &Hold{fd: fd}, nil
}

// Release frees the port for its service; nil is released already.
func (h *Hold) Release() {
	if h != nil && h.fd >= 0 {
		syscall.Close(h.fd)
		h.fd = -1
	}
}
