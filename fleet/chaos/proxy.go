package chaos

import (
	"math/rand/v2"
	"net"
	"strings"
	"sync"
	"time"
)

// proxy is one agent's way to etcd: a TCP proxy per member, which the
// nemesis can make slow (delay), make hold some of etcd's replies back
// (each reply chunk, with probability holdP, is held for hold, and what
// follows it on the connection waits behind it: a commit applied whose
// client timed out, an ambiguous commit), cut (close every connection
// once) or partition (refuse everything).
type proxy struct {
	lns []net.Listener

	mu          sync.Mutex
	partitioned bool
	delay       time.Duration // both ways
	hold        time.Duration // replies only
	holdP       float64
	conns       map[net.Conn]struct{}
}

func newProxy(targets []string) (*proxy, error) {
	p := &proxy{conns: map[net.Conn]struct{}{}}
	for _, t := range targets {
		t = strings.TrimPrefix(t, "http://")
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			p.close()
			return nil, err
		}
		p.lns = append(p.lns, l)
		go p.serve(l, t)
	}
	return p, nil
}

// endpoints are the proxy's addresses as etcd endpoints.
func (p *proxy) endpoints() []string {
	var out []string
	for _, l := range p.lns {
		out = append(out, "http://"+l.Addr().String())
	}
	return out
}

func (p *proxy) serve(l net.Listener, target string) {
	for {
		c, err := l.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		cut := p.partitioned
		p.mu.Unlock()
		if cut {
			c.Close()
			continue
		}
		go p.connect(c, target)
	}
}

func (p *proxy) connect(c net.Conn, target string) {
	u, err := net.DialTimeout("tcp", target, time.Second)
	if err != nil {
		c.Close()
		return
	}
	p.mu.Lock()
	if p.partitioned {
		p.mu.Unlock()
		c.Close()
		u.Close()
		return
	}
	p.conns[c], p.conns[u] = struct{}{}, struct{}{}
	p.mu.Unlock()
	done := make(chan struct{}, 2)
	go func() { p.pipe(c, u, false); done <- struct{}{} }()
	go func() { p.pipe(u, c, true); done <- struct{}{} }()
	<-done
	c.Close()
	u.Close()
	<-done
	p.mu.Lock()
	delete(p.conns, c)
	delete(p.conns, u)
	p.mu.Unlock()
}

type chunk struct {
	b   []byte
	due time.Time
}

// pipe copies src to dst, each chunk held back by the latency in force
// when it was read, in order.
func (p *proxy) pipe(src, dst net.Conn, reply bool) {
	q := make(chan chunk, 4096)
	wdone := make(chan struct{})
	go func() {
		defer close(wdone)
		for ch := range q {
			if d := time.Until(ch.due); d > 0 {
				time.Sleep(d)
			}
			if _, err := dst.Write(ch.b); err != nil {
				src.Close()
				for range q {
				}
				return
			}
		}
	}()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			p.mu.Lock()
			lat := p.delay
			if reply && p.hold > 0 && rand.Float64() < p.holdP {
				lat += p.hold
			}
			p.mu.Unlock()
			q <- chunk{b: append([]byte(nil), buf[:n]...), due: time.Now().Add(lat)}
		}
		if err != nil {
			break
		}
	}
	close(q)
	<-wdone
	dst.Close()
}

// cutAll closes every connection (the client reconnects).
func (p *proxy) cutAll() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for c := range p.conns {
		c.Close()
	}
}

func (p *proxy) setPartitioned(on bool) {
	p.mu.Lock()
	p.partitioned = on
	p.mu.Unlock()
	if on {
		p.cutAll()
	}
}

func (p *proxy) setDelay(d time.Duration) {
	p.mu.Lock()
	p.delay = d
	p.mu.Unlock()
}

// setHold holds each reply chunk back by d with probability prob.
func (p *proxy) setHold(d time.Duration, prob float64) {
	p.mu.Lock()
	p.hold, p.holdP = d, prob
	p.mu.Unlock()
}

func (p *proxy) close() {
	for _, l := range p.lns {
		l.Close()
	}
	p.cutAll()
}
