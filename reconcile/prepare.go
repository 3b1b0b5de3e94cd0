package reconcile

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"

	"berth.dev/berth/envs"
	"berth.dev/berth/internal/failure"
	"berth.dev/berth/migrate"
	"berth.dev/berth/secrets"
)

// resolveSecrets resolves every service's secrets before the plan (their
// digests are part of the config hashes) and before anything is touched: a
// Vault outage fails the deploy here, with nothing changed.
func (p *deploy) resolveSecrets(ctx context.Context) error {
	var (
		mu   sync.Mutex
		errs []error
		wg   sync.WaitGroup
	)
	fail := func(err error) {
		mu.Lock()
		errs = append(errs, err)
		mu.Unlock()
	}
	for _, s := range p.in.Env.Services { // every service at once
		if len(s.Berth.Secrets) == 0 && len(s.Berth.SecretFiles) == 0 {
			continue
		}
		if p.Secrets == nil {
			fail(failure.AsVerdict(fmt.Errorf("service %s declares secrets but no secrets backend is configured", s.Name)))
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := safely(p.log, "prepare", func() error { return p.resolveService(ctx, s) }); err != nil {
				fail(err)
			}
		}()
	}
	wg.Wait()
	slices.SortFunc(errs, func(a, b error) int { return strings.Compare(a.Error(), b.Error()) })
	return errors.Join(errs...)
}

// resolveService resolves one service's secrets and mixes their digests
// into its hash. Vault's answers are about Vault's state, not the commit:
// an unmarked error is an outage (secrets marks a missing secret a
// verdict).
func (p *deploy) resolveService(ctx context.Context, s envs.Service) error {
	// The hash mixes in digests of the values (never the values); for env
	// secrets alone it is what berth has always computed, so an upgrade of
	// berth does not redeploy.
	mixed := ""
	var env, files []string
	for _, kind := range []struct {
		refs map[string]envs.SecretRef
		into *[]string
		tag  string
	}{{s.Berth.Secrets, &env, ""}, {s.Berth.SecretFiles, &files, "\x00files:"}} {
		if len(kind.refs) == 0 {
			continue
		}
		vals, digest, err := p.Secrets.Resolve(ctx, s.Name, kind.refs)
		if err != nil {
			return asOutage(fmt.Errorf("service %s: %w", s.Name, err))
		}
		*kind.into = vals
		mixed += kind.tag + digest
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	sum := sha256.Sum256([]byte(p.in.Hashes[s.Name] + "\x00" + mixed))
	p.in.Hashes[s.Name] = hex.EncodeToString(sum[:])
	for _, kind := range []struct {
		vals []string
		into *map[string][]string
	}{{env, &p.in.SecretEnv}, {files, &p.in.SecretFiles}} {
		if kind.vals == nil {
			continue
		}
		if *kind.into == nil {
			*kind.into = map[string][]string{}
		}
		(*kind.into)[s.Name] = kind.vals
	}
	return nil
}

// prepare pulls every image the deploy needs before anything is touched: a
// registry outage fails here, with nothing changed.
func (p *deploy) prepare(ctx context.Context) error {
	images := map[string]string{} // image → a service using it
	for _, a := range p.res.Actions {
		if a.Kind == Create || a.Kind == Replace || a.Kind == Run {
			images[p.in.Env.Service(a.Service).Config.Image] = a.Service
		}
	}
	limit := p.Pulls
	if limit <= 0 {
		limit = 3
	}
	sem := make(chan struct{}, limit)
	var mu sync.Mutex
	var errs []error
	var wg sync.WaitGroup
	for img, svc := range images {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			_, err := func() (pulled bool, err error) {
				defer recoverTo(&err, p.log, "prepare")
				if p.Signatures != nil {
					// Signed by whom the host requires, before a byte of it is pulled.
					if err := p.Signatures.Check(ctx, img, p.in.Env.Images); err != nil {
						return false, err
					}
				}
				return p.Images.EnsureImage(ctx, img)
			}()
			if err != nil {
				mu.Lock()
				errs = append(errs, asOutage(fmt.Errorf("service %s: %w", svc, err))) // engine marks an unknown digest a verdict
				mu.Unlock()
				return
			}
			p.progressed()
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return err
	}
	return asOutage(p.Images.EnsureProject(ctx, p.in.Env.Project))
}

// cli runs migrate then cli services from the new images; a failure
// aborts the deploy with nothing else changed.
func (p *deploy) cli(ctx context.Context) error {
	// The workers' containers are created meanwhile.
	p.createAhead(ctx, p.actions(envs.RoleWorker), false)
	var jobs []migrate.Job
	for _, a := range p.res.Actions {
		if a.Kind != Run {
			continue
		}
		req, err := p.request(a, 1, true, false)
		if err != nil {
			return err
		}
		req.Name = fmt.Sprintf("%s-%s-run-%s", p.in.Env.Project.Name, a.Service, short(p.in.Revision))
		jobs = append(jobs, migrate.Job{Service: *p.in.Env.Service(a.Service), Request: req, Secrets: secrets.Values(append(slices.Clone(p.in.SecretEnv[a.Service]), p.in.SecretFiles[a.Service]...))})
	}
	if len(jobs) == 0 {
		return nil
	}
	recs, err := p.OneShots.Run(ctx, jobs)
	p.res.OneShots = recs
	for _, r := range recs {
		if r.Skipped == "" {
			// A one-shot that ran changed what it changed (a migration:
			// the database); nothing undoes it.
			p.done(fmt.Sprintf("run %s (exit %d)", r.Service, r.ExitCode))
		}
	}
	if err == nil {
		return nil
	}
	// A one-shot that exited non-zero or ran out of time is the revision's
	// fault; Docker failing to run it is not.
	if n := len(recs); n > 0 && (recs[n-1].ExitCode != 0 || recs[n-1].TimedOut) {
		return mark(err, failure.Verdict)
	}
	return asOutage(err)
}
