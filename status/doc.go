// Package status owns what berth shows of a host: each env's status (the
// state dir's marks, its journal's newest records, its containers read
// within a deadline, and the running agent's live view of the pass in
// flight), its history, its jobs, and its fleet. The CLI renders these
// values, the local API serves them as JSON and the unit's STATUS= line
// is made from them (Line); none of them waits on a hung dockerd or on
// the pass.
package status
