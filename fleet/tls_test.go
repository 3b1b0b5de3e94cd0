package fleet

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"berth.dev/berth/internal/failure"
	"berth.dev/berth/internal/testenv"
)

// The production setup of docs/fleet.md: three members talking TLS to
// clients and peers, client certificates required, etcd's authentication
// on, and berth's user limited to its prefix.
func TestTLSAndAuth_ThreeMembers_BerthUserLimitedToItsPrefix(t *testing.T) {
	pki := testenv.NewEtcdPKI(t)
	cluster := testenv.StartEtcdCluster(t, 3, testenv.WithEtcdTLS(pki))
	eps := cluster.Endpoints()
	ctx := ctxT(t, 2*time.Minute)

	// What the operator does once with etcdctl (docs/fleet.md).
	admin, err := clientv3.New(clientv3.Config{Endpoints: eps, TLS: pki.ClientTLS(), DialTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	steps := []func() error{
		func() error { _, err := admin.UserAdd(ctx, "root", "root-secret"); return err },
		func() error { _, err := admin.UserGrantRole(ctx, "root", "root"); return err },
		func() error { _, err := admin.RoleAdd(ctx, "berth"); return err },
		func() error {
			_, err := admin.RoleGrantPermission(ctx, "berth", "/berth/", clientv3.GetPrefixRangeEnd("/berth/"),
				clientv3.PermissionType(clientv3.PermReadWrite))
			return err
		},
		func() error { _, err := admin.UserAdd(ctx, "berth", "berth-secret"); return err },
		func() error { _, err := admin.UserGrantRole(ctx, "berth", "berth"); return err },
		func() error { _, err := admin.AuthEnable(ctx); return err },
	}
	for i, step := range steps {
		if err := step(); err != nil {
			t.Fatalf("setup step %d: %v", i, err)
		}
	}

	pw := filepath.Join(t.TempDir(), "etcd-password")
	if err := os.WriteFile(pw, []byte("berth-secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := Config{
		Etcd: EtcdConfig{Endpoints: eps, CACert: pki.CA, Cert: pki.ClientCert, Key: pki.ClientKey,
			Username: "berth", PasswordFile: pw},
		Host: "web-1", LeaseTTL: 3 * time.Second, Timeout: 2 * time.Second,
	}
	c, err := New(cfg, Options{Log: testLog(t, "web-1"), Now: func() time.Time { return time.Now().Add(30 * time.Second) }})
	if err != nil {
		t.Fatal(err)
	}
	rctx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); c.Run(rctx) }()
	defer func() { stop(); <-done; c.Close() }()

	c.Publish("prod", HostState{Live: &Commit{Revision: "c1", Author: "Ada", Subject: "first"}})
	waitFor(t, 20*time.Second, "the host listed over TLS, with its skew measured over TLS", func() bool {
		hs, err := c.List(ctx, "prod")
		return err == nil && len(hs) == 1 && hs[0].ClockSkew > 25*time.Second && hs[0].ClockSkew < 35*time.Second
	})
	if out, err := c.Migrate(ctx, "prod", testMig, func(context.Context, int64) error { return nil }); err != nil || !out.Ran {
		t.Fatalf("migrate: %+v, %v", out, err)
	}
	adm, err := c.Admit(ctx, "prod", RolloutRequest{Revision: "c2", Policy: Policy{MaxParallel: "1"}, Live: "c1"})
	if err != nil {
		t.Fatalf("admit: %v", err)
	}
	if err := adm.Finish(ctx, Succeeded, ""); err != nil {
		t.Fatal(err)
	}

	// berth's user may not write outside its prefix.
	user, err := clientv3.New(clientv3.Config{Endpoints: eps, TLS: pki.ClientTLS(), DialTimeout: 5 * time.Second,
		Username: "berth", Password: "berth-secret"})
	if err != nil {
		t.Fatal(err)
	}
	defer user.Close()
	if _, err := user.Put(ctx, "/other/x", "1"); err == nil || !strings.Contains(err.Error(), "permission denied") {
		t.Fatalf("put outside /berth/: %v, want permission denied", err)
	}

	// A wrong password is refused, and says so.
	if err := os.WriteFile(pw, []byte("wrong\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	bad, err := New(cfg, Options{Log: testLog(t, "bad")})
	if err != nil {
		t.Fatal(err)
	}
	defer bad.Close()
	_, err = bad.List(ctx, "prod")
	if !failure.IsOutage(err) || !strings.Contains(err.Error(), "authentication failed") {
		t.Fatalf("wrong password: %v", err)
	}
}
