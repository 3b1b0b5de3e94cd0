package jobs

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
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
	var names []string
	for _, e := range ents {
		if name := e.Name(); strings.HasSuffix(name, ".json") && !strings.HasPrefix(name, ".") {
			names = append(names, name)
		}
	}
	slices.Sort(names)
	slices.Reverse(names)
	out := make([]Run, 0, min(n, len(names)))
	for _, name := range names[:min(n, len(names))] {
		b, err := os.ReadFile(filepath.Join(s.jobDir(job), name))
		if err != nil {
			return nil, err
		}
		var r Run
		if err := json.Unmarshal(b, &r); err != nil {
			return nil, fmt.Errorf("job record %s/%s: %w", job, name, err)
		}
		out = append(out, r)
	}
	return out, nil
}
