package reconcile

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"

	"berth.dev/berth/envs"
	"berth.dev/berth/imagesig"
	"berth.dev/berth/internal/failure"
)

// fakeSignatures refuses chosen images (a verdict), cannot reach the
// registry of others (an outage), and records what it was asked.
type fakeSignatures struct {
	mu      sync.Mutex
	refuse  map[string]bool
	outage  map[string]bool
	checked []string
	env     []*imagesig.Policy
}

func (s *fakeSignatures) Check(_ context.Context, ref string, env *imagesig.Policy) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.checked, s.env = append(s.checked, ref), append(s.env, env)
	switch {
	case s.refuse[ref]:
		return failure.AsVerdict(errors.New("image " + ref + " is refused by images.verify[0]"))
	case s.outage[ref]:
		return failure.AsOutage(errors.New("list the referrers of " + ref + ": connection refused"))
	}
	return nil
}

// Prepare checks each image it is about to pull, with the environment's
// own rules, and pulls none that the rules refuse or could not check: a
// refusal is a verdict on the revision, an unreachable registry an outage.
func TestPrepare_ChecksSignaturesBeforeAnyPull(t *testing.T) {
	host := newFakeHost()
	src := &fakeSource{head: "c1"}
	a, _ := newAgent(t, src, host)
	own, err := imagesig.Compile([]imagesig.Rule{{Prefix: "*", Keyless: &imagesig.Keyless{Issuer: "https://i", Subject: ".*", TrustedRoot: "root.json"}}},
		"x-berth.images.verify", func(string) ([]byte, error) {
			return []byte(`{"mediaType":"application/vnd.dev.sigstore.trustedroot+json;version=0.1"}`), nil
		})
	if err != nil {
		t.Fatal(err)
	}
	a.Load = func(_ context.Context, rev *Revision) (*envs.Env, error) {
		env := fakeEnv(rev.Commit)
		env.Images = own
		return env, nil
	}
	sigs := &fakeSignatures{refuse: map[string]bool{"r/app@c2": true}, outage: map[string]bool{"r/app@c3": true}}
	a.Deployer.Signatures = sigs
	ctx := t.Context()
	if err := a.Check(ctx); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(sigs.checked, []string{"r/app@c1"}) || sigs.env[0] != own || !slices.Equal(host.pulls, []string{"r/app@c1"}) {
		t.Fatalf("checked %v (env rules %v), pulled %v", sigs.checked, sigs.env, host.pulls)
	}

	src.head = "c2"
	if err := a.Check(ctx); err != nil {
		t.Fatalf("a refusal is recorded, not returned: %v", err)
	}
	st, _ := LoadState(a.StateDir)
	if st.Failed == nil || st.Failed.Commit != "c2" || !strings.Contains(st.Failed.Reason, "images.verify[0]") || st.Live.Commit != "c1" {
		t.Fatalf("after a refused image: live %+v failed %+v", st.Live, st.Failed)
	}

	src.head = "c3"
	if err := a.Check(ctx); err == nil {
		t.Fatal("a registry that cannot be reached must be returned for the poller's backoff")
	}
	st, _ = LoadState(a.StateDir)
	if st.Failed == nil || st.Failed.Commit != "c2" {
		t.Fatalf("an outage marked a commit failed: %+v", st.Failed)
	}
	if !slices.Equal(host.pulls, []string{"r/app@c1"}) || strings.Join(host.running(), ",") != "web@c1" {
		t.Fatalf("pulled %v, running %v", host.pulls, host.running())
	}
}
