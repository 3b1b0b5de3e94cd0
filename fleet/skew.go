package fleet

import (
	"context"
	"net/http"
	"strings"
	"time"
)

// measureSkew estimates how far this host's clock is from etcd's, from
// the Date header of etcd's /version endpoint (served on the client URL,
// without authentication). Date has a resolution of one second, so the
// estimate is to the second: enough to show a host whose clock is 90 s
// off, which is what matters for scheduled times. etcd itself does not
// depend on clocks agreeing; berth's job claims do not either (a job's
// time is claimed once whatever the clocks say), but an operator wants
// to see it.
func (c *Client) measureSkew(ctx context.Context) {
	tr := &http.Transport{TLSClientConfig: c.ecfg.TLS, Proxy: nil}
	defer tr.CloseIdleConnections()
	hc := &http.Client{Transport: tr, Timeout: c.cfg.Timeout}
	for _, ep := range c.cfg.Etcd.Endpoints {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimRight(ep, "/")+"/version", nil)
		if err != nil {
			continue
		}
		t0 := c.now()
		resp, err := hc.Do(req)
		t1 := c.now()
		if err != nil {
			continue
		}
		resp.Body.Close()
		date, err := http.ParseTime(resp.Header.Get("Date"))
		if err != nil {
			continue
		}
		// The server's clock read somewhere in [date, date+1s) while we
		// waited between t0 and t1.
		mid := t0.Add(t1.Sub(t0) / 2)
		skew := mid.Sub(date.Add(500 * time.Millisecond)).Round(time.Second)
		// A change under 2 s is the estimate's own jitter: not worth a
		// write.
		if old := time.Duration(c.skew.Load()); (skew - old).Abs() >= 2*time.Second {
			c.skew.Store(int64(skew))
			if skew.Abs() >= 5*time.Second {
				c.log.Warn("this host's clock is off from etcd's", "skew", skew)
			}
			c.kick()
		}
		return
	}
}
