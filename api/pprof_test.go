package api

import (
	"context"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
)

func TestPprof_HeapAndGoroutineProfilesOnTheUnixSocket(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "api.sock")
	l, err := Listen("unix:" + sock)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	go (&Server{}).Serve(ctx, l)
	c := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", sock)
	}}}
	for path, want := range map[string]string{
		"/debug/pprof/":                     "goroutine",
		"/debug/pprof/goroutine?debug=1":    "goroutine profile:",
		"/debug/pprof/heap?debug=1":         "heap profile:",
		"/debug/pprof/heap?gc=1":            "", // binary protobuf
		"/debug/pprof/cmdline":              "",
		"/debug/pprof/profile?seconds=1":    "",
		"/debug/pprof/allocs?debug=1":       "heap profile:",
		"/debug/pprof/threadcreate?debug=1": "threadcreate profile:",
	} {
		resp, err := c.Get("http://berth" + path)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || len(b) == 0 || !strings.Contains(string(b), want) {
			t.Errorf("GET %s: %d, %d bytes, want %q in it", path, resp.StatusCode, len(b), want)
		}
	}
}
