package reconcile

// journal writes the pass's record, or counts the pass into the newest
// record when it ended the same way (see sameOutcome), and sets out.
func (a *Agent) journal(p *pass, rec *Record, out *Pass) error {
	if u := a.unwritten; u != nil {
		if err := a.Journal.Write(u); err != nil {
			return err
		}
		a.unwritten = nil
	}
	if !p.written {
		prev, err := a.Journal.Newest()
		if err != nil {
			return err
		}
		if sameOutcome(prev, rec) {
			prev.Passes, prev.LastPass, prev.Reason = prev.Count()+1, rec.Finished, rec.Reason
			out.Record, out.New = *prev, false
			return a.Journal.Write(prev)
		}
	}
	out.Record = *rec
	if err := a.Journal.Write(rec); err != nil {
		a.unwritten = rec
		return err
	}
	if err := a.Journal.Prune(); err != nil {
		a.logger().Warn("journal prune", "error", err)
	}
	return nil
}

// sameOutcome says whether a pass ending as rec continues the run of
// passes prev stands for: the same outage or verdict in the same phase of
// the same commit, or nothing to do on the commit prev left live.
func sameOutcome(prev, rec *Record) bool {
	if prev == nil || prev.Commit != rec.Commit {
		return false
	}
	switch rec.Result {
	case ResultUnchanged:
		return prev.Result == ResultUnchanged || prev.Result == ResultSucceeded && prev.Live == rec.Commit
	case ResultOutage, ResultFailed:
		return prev.Result == rec.Result && prev.Phase == rec.Phase
	}
	return false
}
