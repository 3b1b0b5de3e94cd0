// Package migrate runs the one-shot containers of a deploy (x-berth roles
// migrate and cli) from the new images, captures their output, enforces their
// timeout, and remembers which migrations already succeeded.
package migrate
