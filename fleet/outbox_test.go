package fleet

import (
	"context"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// A result that etcd refuses for good (permission denied: the role lost
// the key) is a verdict, not an outage: it is dropped from the outbox,
// and the results queued behind it are written.
func TestOutbox_PermanentErrorAtItsHeadDoesNotBlockTheRest(t *testing.T) {
	etcd := startEmbedded(t)
	ctx := ctxT(t, time.Minute)
	admin := raw(t, etcd.Endpoint)
	all := func(role string) error {
		_, err := admin.RoleGrantPermission(ctx, role, "/berth/", clientv3.GetPrefixRangeEnd("/berth/"), clientv3.PermissionType(clientv3.PermReadWrite))
		return err
	}
	for i, step := range []func() error{
		func() error { _, err := admin.UserAdd(ctx, "root", "root-secret"); return err },
		func() error { _, err := admin.UserGrantRole(ctx, "root", "root"); return err },
		func() error { _, err := admin.RoleAdd(ctx, "berth"); return err },
		func() error { return all("berth") },
		func() error { _, err := admin.UserAdd(ctx, "berth", "berth-secret"); return err },
		func() error { _, err := admin.UserGrantRole(ctx, "berth", "berth"); return err },
		func() error { _, err := admin.AuthEnable(ctx); return err },
	} {
		if err := step(); err != nil {
			t.Fatalf("setup step %d: %v", i, err)
		}
	}
	root, err := clientv3.New(clientv3.Config{Endpoints: []string{etcd.Endpoint}, Username: "root", Password: "root-secret", DialTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer root.Close()
	pw := filepath.Join(t.TempDir(), "password")
	if err := os.WriteFile(pw, []byte("berth-secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	a := newAgent(t, nil, "web-1", func(c *Config, _ *Options) {
		c.Etcd = EtcdConfig{Endpoints: []string{etcd.Endpoint}, Username: "berth", PasswordFile: pw}
		c.LeaseTTL, c.Timeout = 10*time.Second, 5*time.Second // logging in (bcrypt) is slow on a busy machine
	})
	tm := time.Now().Add(-time.Minute).Truncate(time.Second)
	var claims []*JobClaim
	for _, job := range []string{"old", "new"} {
		c, err := a.ClaimJob(ctx, "prod", job, tm, JobPolicy{})
		if err != nil {
			t.Fatalf("claim %s: %v", job, err)
		}
		claims = append(claims, c)
	}
	// Both results wait for etcd...
	var cut atomic.Bool
	cut.Store(true)
	setFault(a, func(what string, committed bool) error {
		if cut.Load() && !committed && what == "write job result" {
			return context.DeadlineExceeded
		}
		return nil
	})
	for _, c := range claims {
		if err := c.Finish(ctx, JobResult{Status: JobSucceeded}); err != nil {
			t.Fatal(err)
		}
	}
	if n := a.Pending(); n != 2 {
		t.Fatalf("%d results kept, want 2", n)
	}
	// ...and meanwhile the role loses job "old"'s keys.
	if _, err := root.RoleRevokePermission(ctx, "berth", "/berth/", clientv3.GetPrefixRangeEnd("/berth/")); err != nil {
		t.Fatal(err)
	}
	old := a.keys("prod").job("old") + "/"
	for _, r := range [][2]string{{"/berth/", old}, {clientv3.GetPrefixRangeEnd(old), clientv3.GetPrefixRangeEnd("/berth/")}} {
		if _, err := root.RoleGrantPermission(ctx, "berth", r[0], r[1], clientv3.PermissionType(clientv3.PermReadWrite)); err != nil {
			t.Fatal(err)
		}
	}
	cut.Store(false)
	if err := a.Flush(ctx); err != nil || a.Pending() != 0 {
		t.Fatalf("flush: %v, %d kept; want the refused result dropped and the next written", err, a.Pending())
	}
	recs, err := a.JobRuns(ctx, "prod", "new", 0)
	if err != nil || len(recs) != 1 || recs[0].Status != JobSucceeded {
		t.Fatalf("new's record: %+v, %v", recs, err)
	}
}
