package jobs

import (
	"fmt"
	"testing"
	"time"
)

func TestStore_NewestReadsOnlyTheNewestRuns(t *testing.T) {
	s := &Store{Dir: t.TempDir()}
	t0 := time.Date(2026, 12, 6, 10, 0, 0, 0, time.UTC)
	for i := range 5 {
		if err := s.Save(&Run{ID: NewID(t0.Add(time.Duration(i) * time.Minute)), Job: "nightly", Status: StatusSucceeded, Reason: fmt.Sprint(i)}); err != nil {
			t.Fatal(err)
		}
	}
	runs, err := s.Newest("nightly", 3)
	if err != nil || len(runs) != 3 || runs[0].Reason != "4" || runs[2].Reason != "2" {
		t.Fatalf("Newest = %+v, %v; want runs 4, 3, 2", runs, err)
	}
	if runs, err := s.Newest("none", 3); err != nil || len(runs) != 0 {
		t.Fatalf("a job without runs: %v, %v", runs, err)
	}
}
