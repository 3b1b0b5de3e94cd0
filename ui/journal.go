package ui

import (
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"berth.dev/berth/reconcile"
)

// journalCache reads an env's journal (one JSON file per record, the
// format reconcile.Journal writes) and keeps each decoded record until its
// file changes: a page that shows the newest deploys and filters the
// whole history reads the directory and decodes only what changed since
// the last request (the newest record, counting passes). It exists only
// once a page was requested, until the page is freed (idle.go).
type journalCache struct {
	mu   sync.Mutex
	dirs map[string]map[string]cachedRecord
}

type cachedRecord struct {
	mod  time.Time
	size int64
	rec  *reconcile.Record
}

// maxRecordFile bounds a record file read: the agent writes a few KiB.
const maxRecordFile = 4 << 20

// list returns dir's records, newest first. A file that cannot be read or
// decoded is left out (and counted in bad): the page shows the rest.
func (c *journalCache) list(dir string) (recs []*reconcile.Record, bad int, err error) {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, 0, nil
	}
	if err != nil {
		return nil, 0, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.dirs == nil {
		c.dirs = map[string]map[string]cachedRecord{}
	}
	old := c.dirs[dir]
	now := make(map[string]cachedRecord, len(entries))
	for _, e := range entries {
		name := e.Name()
		if !strings.HasSuffix(name, ".json") || strings.HasPrefix(name, ".") || !e.Type().IsRegular() {
			continue
		}
		info, err := e.Info()
		if err != nil {
			continue // removed meanwhile (pruned)
		}
		if cr, ok := old[name]; ok && cr.mod.Equal(info.ModTime()) && cr.size == info.Size() {
			now[name] = cr
			continue
		}
		rec, err := readRecord(filepath.Join(dir, name), info.Size())
		if err != nil {
			bad++
			continue
		}
		now[name] = cachedRecord{mod: info.ModTime(), size: info.Size(), rec: rec}
	}
	c.dirs[dir] = now
	recs = make([]*reconcile.Record, 0, len(now))
	for _, cr := range now {
		recs = append(recs, cr.rec)
	}
	// IDs sort by time, as the journal names its files.
	slices.SortFunc(recs, func(a, b *reconcile.Record) int { return strings.Compare(b.ID, a.ID) })
	return recs, bad, nil
}

// forget drops every decoded record (the page was not requested for a
// while).
func (c *journalCache) forget() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.dirs = nil
}

// held is how many records are kept.
func (c *journalCache) held() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, d := range c.dirs {
		n += len(d)
	}
	return n
}

func readRecord(path string, size int64) (*reconcile.Record, error) {
	if size > maxRecordFile {
		return nil, errors.New("record too large")
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var r reconcile.Record
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, err
	}
	return &r, nil
}
