package imagesig

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/hashicorp/go-hclog"

	"berth.dev/berth/internal/failure"
	"berth.dev/berth/internal/printable"
)

// DefaultTimeout bounds one image's look-up of signatures.
const DefaultTimeout = 2 * time.Minute

// Verifier checks images against the host's rules (and an environment's
// own, which can only add to them) before berth pulls or runs them.
type Verifier struct {
	// Host is the agent config's images.verify (nil: no rules).
	Host  *Policy
	Cache *Cache
	Log   hclog.Logger
	// Remote adds registry options (tests: a transport). Credentials come
	// from the Docker config file, as for pulls.
	Remote  []remote.Option
	Timeout time.Duration // default DefaultTimeout
}

// Check verifies ref ("repo@sha256:…", or "repo:tag@sha256:…") against
// every rule of the host's policy and of env (an environment's own rules;
// nil: none) that matches its repository. An image no rule matches is
// not looked at. A digest already verified against a rule's signer is
// not looked up again.
//
// It returns a verdict naming the image and the rule when an enforce
// rule finds no valid signature, and an outage when the registry did not
// answer; a warn rule's failure is logged once per digest and signer.
func (v *Verifier) Check(ctx context.Context, ref string, env *Policy) error {
	if v == nil {
		return nil
	}
	repo, err := repoOf(ref)
	if err != nil {
		if v.Host.Empty() && env.Empty() {
			return nil
		}
		// dockerd may read it (MYREG/x is the registry MYREG to it): which
		// rules apply is unknown, so it is not pulled.
		return failure.AsVerdict(fmt.Errorf("image %s: not an image name the signature rules can be matched against: %s", shown(ref), shown(err.Error())))
	}
	rules := append(v.Host.matching(repo), env.matching(repo)...)
	if len(rules) == 0 {
		return nil
	}
	pinned, err := name.NewDigest(ref)
	if err != nil {
		return failure.AsVerdict(fmt.Errorf("image %s: %s requires a signature, so the image must be pinned by digest (repo@sha256:…)", shown(ref), rules[0]))
	}
	// Looked up under the canonical name: the registry dockerd reaches.
	d, err := name.NewDigest(repo + "@" + pinned.DigestStr())
	if err != nil {
		return failure.AsVerdict(fmt.Errorf("image %s: %w", shown(ref), err))
	}
	h, err := v1.NewHash(d.DigestStr())
	if err != nil {
		return failure.AsVerdict(fmt.Errorf("image %s: %w", shown(ref), err))
	}
	var open []*rule // rules the cache does not settle
	for _, r := range rules {
		o, ok := v.Cache.get(key(repo, h.String(), r))
		if ok && (o == verified || r.Mode == Warn) {
			continue
		}
		open = append(open, r)
	}
	if len(open) == 0 {
		return nil
	}
	timeout := v.Timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	start := time.Now()
	res := v.lookup(ctx, d, h, open)
	found := map[string]outcome{}
	var errs []error
	for _, r := range open {
		k := key(repo, h.String(), r)
		switch why := res.why[r]; {
		case why == nil:
			found[k] = verified
			v.log().Info("image signature verified", "image", ref, "rule", r.name, "signer", r.signer(), "duration", time.Since(start).Round(time.Millisecond))
		case res.outage != nil:
			// Unknown: the signature may be where the registry did not answer.
		case r.Mode == Warn:
			found[k] = warned
			v.log().Warn("image signature not verified; pulling it anyway (mode: warn)", "image", ref, "rule", r.String(), "error", why)
		default:
			errs = append(errs, failure.AsVerdict(fmt.Errorf("image %s is refused by %s: %w", ref, r, why)))
		}
	}
	if err := v.Cache.put(found); err != nil {
		v.log().Warn("verified images not remembered", "error", err)
	}
	if res.outage != nil && len(errs)+len(found) < len(open) {
		return res.outage
	}
	return errors.Join(errs...)
}

// result of looking up one image's signatures for some rules.
type result struct {
	why    map[*rule]error // nil: verified
	outage error
}

// lookup fetches signatures lazily, referrers first, then cosign's tag,
// stopping as soon as every rule found a valid one.
func (v *Verifier) lookup(ctx context.Context, d name.Digest, h v1.Hash, rules []*rule) result {
	opts := append([]remote.Option{remote.WithContext(ctx), remote.WithAuthFromKeychain(authn.DefaultKeychain),
		remote.WithTransport(bounded{remote.DefaultTransport})}, v.Remote...)
	res := result{why: map[*rule]error{}}
	if p, err := remote.NewPuller(opts...); err == nil {
		opts = append(opts, remote.Reuse(p)) // one ping and token per look-up
	}
	f := &fetcher{digest: d, opts: opts}
	var seen []candidate
	for _, source := range []func(context.Context) ([]candidate, error){f.referrers, f.sigTag} {
		cs, err := source(ctx)
		seen = append(seen, cs...)
		if err != nil {
			res.outage = errors.Join(res.outage, err)
		}
		pending := false
		for _, r := range rules {
			res.why[r] = r.judge(seen, h)
			pending = pending || res.why[r] != nil
		}
		if !pending {
			res.outage = nil
			return res
		}
	}
	return res
}

// judge says why none of cs is a valid signature of h by r's signer.
func (r *rule) judge(cs []candidate, h v1.Hash) error {
	if len(cs) == 0 {
		return errors.New("no signature found (neither a referrer nor a sha256-….sig tag)")
	}
	var whys []string
	for _, c := range cs {
		why := r.verify(c, h)
		if why == nil {
			return nil
		}
		// The reasons quote what the registry served: one printable line each.
		s := c.where + ": " + printable.Cut(why.Error(), maxReason)
		if !slices.Contains(whys, s) {
			whys = append(whys, s)
		}
	}
	return fmt.Errorf("no valid signature among %d (%s)", len(cs), strings.Join(whys, "; "))
}

func (v *Verifier) log() hclog.Logger {
	if v.Log == nil {
		return hclog.NewNullLogger()
	}
	return v.Log
}
