package fleet

import (
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

func TestConfig_DefaultsAndEveryProblemAtOnce(t *testing.T) {
	c := Config{Etcd: EtcdConfig{Endpoints: []string{"http://127.0.0.1:2379"}}, Host: "web-1"}.Defaults()
	if c.Prefix != "/berth" || c.LeaseTTL != 15*time.Second || c.Timeout != 5*time.Second {
		t.Fatalf("defaults: %+v", c)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	bad := Config{Etcd: EtcdConfig{Endpoints: []string{"etcd-1:2379"}, Cert: "c.pem", Username: "berth"},
		Host: "a/b", Prefix: "berth", LeaseTTL: time.Second}.Defaults()
	bad.Prefix = "berth"
	err := bad.Validate()
	for _, want := range []string{"endpoints", "fleet.etcd.cert", "password_file", "fleet.host", "fleet.prefix", "lease_ttl"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Validate() = %v, want a problem naming %s", err, want)
		}
	}
}

func TestParseMaxParallel(t *testing.T) {
	for _, tc := range []struct {
		spec  string
		known int
		want  int
		err   bool
	}{
		{"", 20, 0, false},
		{"3", 20, 3, false},
		{"25%", 20, 5, false},
		{"10%", 1000, 100, false},
		{"10%", 3, 1, false}, // never below one host
		{"0", 20, 0, true},
		{"150%", 20, 0, true},
		{"many", 20, 0, true},
	} {
		t.Run(tc.spec, func(t *testing.T) {
			got, err := ParseMaxParallel(tc.spec, tc.known)
			if (err != nil) != tc.err || got != tc.want {
				t.Fatalf("ParseMaxParallel(%q, %d) = %d, %v; want %d, err %t", tc.spec, tc.known, got, err, tc.want, tc.err)
			}
		})
	}
}

func TestHosts_PublishedOnChangeOnlyAndGoneAfterTTL(t *testing.T) {
	etcd := startEmbedded(t)
	eps := []string{etcd.Endpoint}
	a := newAgent(t, eps, "web-1")
	b := newAgent(t, eps, "web-2", withClock(90*time.Second))
	st := HostState{Live: &Commit{Revision: "c1", Author: "Ada <ada@example.org>", Subject: "journal 1.2"}, Version: "test"}
	a.Publish("prod", st)
	b.Publish("prod", st)
	ctx := ctxT(t, 30*time.Second)
	waitFor(t, 10*time.Second, "both hosts listed", func() bool {
		hs, err := a.List(ctx, "prod")
		return err == nil && len(hs) == 2 && hs[0].Alive && hs[1].Alive
	})
	hs, _ := a.List(ctx, "prod")
	if hs[0].Host != "web-1" || hs[0].Live.Author != "Ada <ada@example.org>" || hs[0].Live.Subject != "journal 1.2" {
		t.Fatalf("web-1 = %+v", hs[0])
	}
	// The skewed host's clock shows: it publishes its clock and its
	// measured offset from etcd's.
	if d := hs[1].Clock.Sub(hs[0].Clock); d < 80*time.Second {
		t.Errorf("web-2's published clock is %s ahead of web-1's, want ~90 s", d)
	}
	if hs[1].ClockSkew < 85*time.Second || hs[1].ClockSkew > 95*time.Second {
		t.Errorf("web-2's measured skew = %s, want ~90 s", hs[1].ClockSkew)
	}

	// Publishing the same state again writes nothing: no history growth.
	r := raw(t, etcd.Endpoint)
	key := a.keys("prod").host("web-1")
	before, err := r.Get(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	for range 5 {
		a.Publish("prod", st)
	}
	st2 := st
	st2.Live = &Commit{Revision: "c2", Author: "Ada <ada@example.org>", Subject: "journal 1.3"}
	st2.Deploy = &Deploy{Revision: "c3", Phase: "prepare"}
	b.Publish("prod", st2) // a change elsewhere, to know the loop ran
	waitFor(t, 5*time.Second, "web-2's change", func() bool {
		hs, err := a.List(ctx, "prod")
		return err == nil && len(hs) == 2 && hs[1].Deploy != nil
	})
	after, _ := r.Get(ctx, key)
	if after.Kvs[0].ModRevision != before.Kvs[0].ModRevision {
		t.Fatalf("an unchanged state was written again (mod revision %d → %d)", before.Kvs[0].ModRevision, after.Kvs[0].ModRevision)
	}

	// A host that dies (no revoke) shows as gone after its lease lapses,
	// with when it was last seen.
	b.crash()
	waitFor(t, 10*time.Second, "web-2 gone", func() bool {
		hs, err := a.List(ctx, "prod")
		return err == nil && len(hs) == 2 && !hs[1].Alive
	})
	hs, _ = a.List(ctx, "prod")
	if hs[1].LastSeen.IsZero() || hs[1].Live == nil || hs[1].Live.Revision != "c2" {
		t.Fatalf("gone host = %+v, want last seen and its last live revision", hs[1])
	}
}

func TestSession_ReplacedWhenDoneAndHostRepublished(t *testing.T) {
	etcd := startEmbedded(t)
	a := newAgent(t, []string{etcd.Endpoint}, "web-1")
	a.Publish("prod", HostState{Version: "test"})
	ctx := ctxT(t, 30*time.Second)
	s1, err := a.Session(ctx)
	if err != nil {
		t.Fatal(err)
	}
	r := raw(t, etcd.Endpoint)
	key := a.keys("prod").host("web-1")
	waitFor(t, 5*time.Second, "host key under the first lease", func() bool {
		g, err := r.Get(ctx, key)
		return err == nil && len(g.Kvs) == 1 && clientv3.LeaseID(g.Kvs[0].Lease) == s1.Lease()
	})
	// The lease ends on etcd (as when a paused process's TTL runs out):
	// Done fires, and the session is never used again. (A session whose
	// keepalives only went unanswered while its lease lives on is resumed,
	// not replaced: TestOutage_MigrationFinishedDuringAnOutageLongerThanTheTTL.)
	if _, err := r.Revoke(ctx, s1.Lease()); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "a new session, and the host key under it", func() bool {
		g, err := r.Get(ctx, key)
		return err == nil && len(g.Kvs) == 1 && clientv3.LeaseID(g.Kvs[0].Lease) != s1.Lease() && g.Kvs[0].Lease != 0
	})
	s2, err := a.Session(ctx)
	if err != nil || s2 == s1 {
		t.Fatalf("Session after Done = %v, %v; want a new one", s2, err)
	}
}
