package chaos

import (
	"bufio"
	"net"
	"testing"
	"time"
)

// The proxy passes bytes both ways, delays replies while holding them,
// and refuses everything while partitioned.
func TestProxy_PassesHoldsAndPartitions(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				r := bufio.NewReader(c)
				for {
					line, err := r.ReadString('\n')
					if err != nil {
						return
					}
					_, _ = c.Write([]byte(line))
				}
			}()
		}
	}()
	p, err := newProxy([]string{l.Addr().String()})
	if err != nil {
		t.Fatal(err)
	}
	defer p.close()
	addr := p.lns[0].Addr().String()
	echo := func() (time.Duration, error) {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			return 0, err
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(3 * time.Second))
		start := time.Now()
		if _, err := c.Write([]byte("ping\n")); err != nil {
			return 0, err
		}
		line, err := bufio.NewReader(c).ReadString('\n')
		if err != nil || line != "ping\n" {
			return 0, err
		}
		return time.Since(start), nil
	}
	if d, err := echo(); err != nil || d > 500*time.Millisecond {
		t.Fatalf("plain: %s, %v", d, err)
	}
	p.setHold(700*time.Millisecond, 1)
	if d, err := echo(); err != nil || d < 700*time.Millisecond {
		t.Fatalf("held: %s, %v; want the reply held 700 ms", d, err)
	}
	p.setHold(0, 0)
	p.setPartitioned(true)
	if _, err := echo(); err == nil {
		t.Fatal("partitioned: the echo went through")
	}
	p.setPartitioned(false)
	if _, err := echo(); err != nil {
		t.Fatalf("healed: %v", err)
	}
}
