package jobs

import (
	"errors"
	"io/fs"
	"os"
	"slices"
	"strings"
)

// Newest returns job's n newest records, newest first, reading only
// those (ids sort by time): what a page showing the last runs needs,
// whatever the job's history length.
func (s *Store) Newest(job string, n int) ([]Run, error) {
	ents, err := os.ReadDir(s.jobDir(job))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var ids []string
	for _, e := range ents {
		if id, ok := strings.CutSuffix(e.Name(), ".json"); ok && !strings.HasPrefix(id, ".") {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	slices.Reverse(ids)
	out := make([]Run, 0, min(n, len(ids)))
	for _, id := range ids[:min(n, len(ids))] {
		r, err := s.Run(job, id)
		if err != nil {
			return nil, err
		}
		out = append(out, *r)
	}
	return out, nil
}
