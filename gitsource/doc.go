// Package gitsource watches the config repository: a cheap check of the
// branch head on every poll, a shallow fetch of that branch only when the head
// moved, into a working copy under the state dir that is built aside and
// swapped in whole. It owns repository auth, poll timing and backoff, history
// rewrite detection and commit signature checks. It knows nothing of Compose.
package gitsource
