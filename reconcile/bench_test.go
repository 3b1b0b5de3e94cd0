package reconcile

import (
	"net/http"
	"testing"
	"time"

	"berth.dev/berth/internal/testenv"
)

func report(b *testing.B, sent, failed int64, cutover time.Duration) {
	b.ReportMetric(float64(sent)/float64(b.N), "requests/op")
	b.ReportMetric(float64(failed)/float64(b.N), "failed/op")
	b.ReportMetric(100*float64(failed)/float64(max(sent, 1)), "failed-%")
	b.ReportMetric(cutover.Seconds()/float64(b.N), "s-cutover/op")
}

func waitServing(b *testing.B, url string) {
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if resp, err := http.Get(url); err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	b.Fatalf("%s not serving", url)
}

func reportWrk(b *testing.B, s testenv.WrkStats) {
	n := float64(b.N)
	b.ReportMetric(float64(s.Requests)/n, "wrk-requests/op")
	b.ReportMetric(float64(s.Non2xx)/n, "wrk-non2xx/op")
	b.ReportMetric(float64(s.Connect+s.Write+s.Timeout)/n, "wrk-connect+write+timeout-errs/op")
	b.ReportMetric(float64(s.Read)/n, "wrk-read-errs/op")
}
