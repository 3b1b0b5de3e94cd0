package imagesig

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"slices"
	"sync"
	"time"

	"berth.dev/berth/internal/atomicfile"
)

// CacheFile is the cache's name in the state dir.
const CacheFile = "images-verified.json"

// maxCached bounds the cache: the oldest entries go first.
const maxCached = 4096

// outcome is what a check of one digest against one rule found.
type outcome string

const (
	verified outcome = "verified"
	// warned: a warn rule's failure, logged once; not looked up again
	// while the digest and the signer stay the same.
	warned outcome = "warned"
)

// Cache remembers the digests verified against each signer, so a digest
// once verified is never fetched again: a redeploy of present images,
// and every run of a job, makes no registry request. It lives in the
// state dir (0600), written atomically; a lost or unreadable file only
// costs one verification per image.
type Cache struct {
	path string
	now  func() time.Time

	mu      sync.Mutex
	entries map[string]cacheEntry
}

type cacheEntry struct {
	Outcome outcome   `json:"outcome"`
	At      time.Time `json:"at"`
}

// OpenCache reads the cache at path; a missing file is an empty cache. An
// empty path keeps it in memory only.
func OpenCache(path string) (*Cache, error) {
	c := &Cache{path: path, now: time.Now, entries: map[string]cacheEntry{}}
	if path == "" {
		return c, nil
	}
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return c, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	var f struct {
		Entries map[string]cacheEntry `json:"entries"`
	}
	if err := json.Unmarshal(b, &f); err != nil {
		// A torn or foreign file: start over, it only costs lookups.
		return c, nil
	}
	for k, e := range f.Entries {
		if e.Outcome == verified || e.Outcome == warned {
			c.entries[k] = e
		}
	}
	return c, nil
}

// key names one digest of one repository checked against one signer.
func key(repo, digest string, r *rule) string {
	return repo + "@" + digest + " " + r.fingerprint
}

func (c *Cache) get(k string) (outcome, bool) {
	if c == nil {
		return "", false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.entries[k]
	return e.Outcome, ok
}

// put records outcomes and writes the file.
func (c *Cache) put(found map[string]outcome) error {
	if c == nil || len(found) == 0 {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.now().UTC()
	for k, o := range found {
		c.entries[k] = cacheEntry{Outcome: o, At: now}
	}
	if n := len(c.entries) - maxCached; n > 0 {
		keys := make([]string, 0, len(c.entries))
		for k := range c.entries {
			keys = append(keys, k)
		}
		slices.SortFunc(keys, func(a, b string) int { return c.entries[a].At.Compare(c.entries[b].At) })
		for _, k := range keys[:n] {
			delete(c.entries, k)
		}
	}
	if c.path == "" {
		return nil
	}
	b, err := json.Marshal(struct {
		Entries map[string]cacheEntry `json:"entries"`
	}{c.entries})
	if err != nil {
		return err
	}
	if err := atomicfile.WriteFile(c.path, b, 0o600); err != nil {
		return fmt.Errorf("write %s: %w", c.path, err)
	}
	return nil
}
