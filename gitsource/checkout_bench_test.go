package gitsource

import (
	"testing"

	"github.com/hashicorp/go-hclog"
)

// BenchmarkFetchReuse is what every poll pays for the live revision's
// working copy (2,000 files): the tree validated, the copy on disk
// verified entry by entry, nothing written and nothing fetched.
func BenchmarkFetchReuse(b *testing.B) {
	_, repo := benchRepo(b)
	s, err := New(Config{URL: repo.HTTPURL(), Dir: b.TempDir()}, hclog.NewNullLogger())
	if err != nil {
		b.Fatal(err)
	}
	head, err := s.Head(b.Context())
	if err != nil {
		b.Fatal(err)
	}
	if _, err := s.Fetch(b.Context(), head, ""); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if _, err := s.Fetch(b.Context(), head, ""); err != nil {
			b.Fatal(err)
		}
	}
}
