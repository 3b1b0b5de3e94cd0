package ui

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"berth.dev/berth/fleet"
)

// Any request, whatever its path and query, is answered (never a panic),
// with the security headers, and within the page's bounds.
func FuzzPage_AnyRequest(f *testing.F) {
	for _, seed := range []string{"/", "/history?env=prod&q=%00%ff&page=-9999999999999999999999&result=failed",
		"/history?env=prod&page=2&page=3&q=" + strings.Repeat("é", 300), "/deploy/prod/..%2F..%2Fstate", "/deploy/prod/" + strings.Repeat("a", 5000),
		"/jobs/prod/nightly/..", "/jobs/prod/nightly/20261206T100000.000Z-00010000", "/jobs/prod/%2e%2e/x", "/fleet?env=prod&state=skewed&page=0&q=web",
		"/fleet/host/prod/web-1", "/fleet/host/%00/%ff", "/fleet/jobs/prod/nightly", "/fleet?env=prod&page=99999999999", "/%zz", "//x", "/events/../history"} {
		f.Add(seed)
	}
	s, _ := hostileHost(f)
	s.Fleet = &Fleet{Reader: &fakeFleet{envs: []fleet.Overview{threeHosts(hostile)}}, Envs: []string{"prod"}, Only: true}
	h := s.Handler()
	f.Fuzz(func(t *testing.T, target string) {
		if strings.HasPrefix(target, "/events") {
			return // a stream: tested on its own
		}
		req, err := http.NewRequest(http.MethodGet, "http://127.0.0.1"+target, nil)
		if err != nil || req.URL.Path == "" || req.URL.Path[0] != '/' || strings.HasPrefix(req.URL.Path, "/events") {
			return
		}
		rec := httptest.NewRecorder()
		start := time.Now()
		h.ServeHTTP(rec, req)
		if rec.Code >= 500 {
			t.Errorf("%s: %d", target, rec.Code)
		}
		if rec.Code < 300 && rec.Header().Get("Content-Security-Policy") == "" {
			t.Errorf("%s: no CSP", target)
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Errorf("%s: %s", target, d)
		}
	})
}
