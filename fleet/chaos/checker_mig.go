package chaos

import (
	"encoding/json"
	"net/url"
	"strings"

	"berth.dev/berth/fleet"
)

// migrations: no migration ran twice, unless idempotent and taken over
// after its holder's lease was gone, with no result written under the
// holder's token, and not while that result could have been written (its
// run had ended and nothing cut its host off: it waited in an outbox).
// A halt that an interrupted mark caused is lifted when the run's late
// result supersedes the mark.
func (c *checker) migrations() {
	starts := map[string][]Event{}
	ends := map[int64]Event{}
	for _, e := range c.in.Events {
		switch e.Kind {
		case "migrate_start":
			starts[e.Mig] = append(starts[e.Mig], e)
		case "migrate_end":
			ends[e.Token] = e
		}
	}
	const prop = "migration ran twice"
	for id, ss := range starts {
		for i := 1; i < len(ss); i++ {
			s2 := ss[i]
			for _, s1 := range ss[:i] {
				if c.retried(id, s1.Token, s2.Token) {
					continue // `berth retry` cleared the record in between: a rerun is what it asks for
				}
				if !s2.Idem {
					c.violate(prop, s2.Time(), "migration %.12s (not idempotent) ran with token %d on %s at %s, and again with token %d on %s",
						id, s1.Token, s1.Host, s1.Time().Format("15:04:05.000"), s2.Token, s2.Host)
					continue
				}
				gone := c.lockGone(id, s1.Token)
				took := c.stateRev(id, s2.Token, fleet.MigrationRunning)
				if gone == 0 || (took != 0 && took < gone) {
					c.violate(prop, s2.Time(), "idempotent migration %.12s taken over by %s (token %d) while the lease of its holder %s (token %d) was alive",
						id, s2.Host, s2.Token, s1.Host, s1.Token)
				}
				if r := c.resultRev(id, s1.Token); r != 0 && (took == 0 || r < took) {
					c.violate(prop, s2.Time(), "idempotent migration %.12s taken over by %s (token %d) after %s wrote a result under its token %d",
						id, s2.Host, s2.Token, s1.Host, s1.Token)
				}
				if e1, ok := ends[s1.Token]; ok && e1.Time().Add(2*c.in.Timeout).Before(s2.Time()) && !c.hostFaulted(s1.Host, e1.Time(), s2.Time()) {
					c.violate(prop, s2.Time(), "idempotent migration %.12s ran again on %s (token %d) though its run on %s (token %d) had ended at %s "+
						"and nothing cut %s off: the result waited instead of being written", id, s2.Host, s2.Token, s1.Host, s1.Token,
						e1.Time().Format("15:04:05.000"), s1.Host)
				}
			}
		}
	}
	c.liftedHalts()
}

func (c *checker) migKey(id string) string { return c.in.Root + "migrate/" + id }

// lockGone is the revision at which the lock key with create revision
// token was deleted (0: never).
func (c *checker) lockGone(id string, token int64) int64 {
	pfx := c.migKey(id) + "/lock/"
	key := ""
	for _, ch := range c.in.History {
		if !strings.HasPrefix(ch.Key, pfx) {
			continue
		}
		if ch.Put && ch.Create == token {
			key = ch.Key
		}
		if key != "" && ch.Key == key && !ch.Put {
			return ch.Rev
		}
	}
	return 0
}

// stateRev is the first revision at which the migration's state was put
// with token and status.
func (c *checker) stateRev(id string, token int64, status string) int64 {
	key := c.migKey(id) + "/state"
	for _, ch := range c.in.History {
		if ch.Key == key && ch.Put {
			var st fleet.MigrationState
			if json.Unmarshal(ch.Value, &st) == nil && st.Token == token && st.Status == status {
				return ch.Rev
			}
		}
	}
	return 0
}

// retried reports whether the migration's state was deleted (`berth
// retry` clears failed and interrupted records) after the run with token
// first wrote it and before the run with token second did.
func (c *checker) retried(id string, first, second int64) bool {
	key := c.migKey(id) + "/state"
	from := c.stateRev(id, first, fleet.MigrationRunning)
	to := c.stateRev(id, second, fleet.MigrationRunning)
	for _, ch := range c.in.History {
		if ch.Key == key && !ch.Put && ch.Rev > from && (to == 0 || ch.Rev < to) {
			return true
		}
	}
	return false
}

// resultRev is the first revision at which a result (done or failed) was
// written under token.
func (c *checker) resultRev(id string, token int64) int64 {
	d, f := c.stateRev(id, token, fleet.MigrationDone), c.stateRev(id, token, fleet.MigrationFailed)
	if d == 0 || (f != 0 && f < d) {
		return f
	}
	return d
}

// liftedHalts: a deploy refused because a migration was interrupted
// (its runner's token in the ledger) halted its revision; if that runner's
// result later replaced the interrupted mark, the halt must go with the
// same write.
func (c *checker) liftedHalts() {
	seen := map[string]bool{}
	for _, e := range c.in.Events {
		if e.Kind != "deploy_end" || e.Outcome != "failed" || e.Mig == "" || seen[e.Mig+e.Rev] {
			continue
		}
		seen[e.Mig+e.Rev] = true
		late := c.stateRev(e.Mig, e.Token, fleet.MigrationDone)
		if intr := c.stateRev(e.Mig, e.Token, fleet.MigrationInterrupted); late == 0 || intr == 0 || intr > late {
			continue
		}
		haltKey := c.in.Root + "halt/" + url.PathEscape(e.Rev)
		before, cause := c.haltAt(haltKey, late-1)
		after, _ := c.haltAt(haltKey, late)
		if before && after && strings.Contains(cause, "interrupted") {
			c.violate("halt not lifted by a late result", e.Time(), "revision %s stayed halted (%q) after the late result of migration %.12s "+
				"(token %d) superseded the interrupted mark that caused the halt", e.Rev, cause, e.Mig, e.Token)
		}
	}
}

// haltAt says whether key existed at revision rev, and its reason.
func (c *checker) haltAt(key string, rev int64) (bool, string) {
	present, reason := false, ""
	for _, ch := range c.in.History {
		if ch.Rev > rev {
			break
		}
		if ch.Key != key {
			continue
		}
		present = ch.Put
		if ch.Put {
			var h fleet.Halt
			_ = json.Unmarshal(ch.Value, &h)
			reason = h.Reason
		}
	}
	return present, reason
}
