// Package engine is the only code that talks to Docker: it turns a loaded
// Compose service into container create requests, pulls images by digest only
// when missing, reads the actual state of the host from container labels, and
// starts, waits for and stops containers.
package engine
