// Package statedir owns the layout of the agent's state dir
// (docs/operations.md, "State dir"): the lock that makes one agent per
// state dir and holds its pid for the CLI's signal, where each env's own
// state lives, and the move of a single-env agent's files into their
// env's directory when the agent comes to run several.
package statedir
