package jobs

import (
	"context"
	"fmt"
	"slices"
	"time"
)

// Ask leaves a request to run job now (`berth jobs run`) for the agent,
// which takes requests when it is signalled; the job must be in the live
// revision. timeout is the job's own, 0 without one.
func (s *Store) Ask(job string) (req Request, timeout time.Duration, err error) {
	l, err := s.Listing()
	if err != nil {
		return req, 0, err
	}
	i := slices.IndexFunc(l.Jobs, func(e Entry) bool { return e.Name == job })
	if i < 0 {
		return req, 0, fmt.Errorf("no job %q in the live revision (berth jobs list)", job)
	}
	if l.Jobs[i].Timeout != "" {
		timeout, _ = time.ParseDuration(l.Jobs[i].Timeout)
	}
	req = Request{ID: NewID(time.Now()), Job: job, At: time.Now().UTC()}
	return req, timeout, s.SubmitRequest(req)
}

// Await waits until the agent has made the run requested as id (a
// `berth jobs run` request) and it ended, or only started with detach,
// and returns it. The store is read every 100 ms: the CLI and the agent
// are two processes sharing only the state dir. ctx bounds the wait.
func (s *Store) Await(ctx context.Context, job, id string, detach bool) (*Run, error) {
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		run := s.requested(job, id)
		if run != nil && (run.Done() || detach && run.Container != "") {
			return run, nil
		}
		select {
		case <-ctx.Done():
			if run == nil {
				return nil, fmt.Errorf("the agent has not started %s yet (request %s)", job, id)
			}
			return nil, fmt.Errorf("run %s is still %s", run.ID, run.Status)
		case <-tick.C:
		}
	}
}

// requested is the run the agent made for request id, if any yet.
func (s *Store) requested(job, id string) *Run {
	runs, _ := s.Runs(job)
	for i := range runs {
		if runs[i].Request == id {
			return &runs[i]
		}
	}
	return nil
}
