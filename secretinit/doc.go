// Package secretinit owns berth's init inside a container with
// x-berth.secret_files (`berth secret-init -- COMMAND`): it writes the
// values the agent passes on stdin to the container's tmpfs and execs the
// container's own command. engine mounts berth's binary for it; no
// operator runs it.
package secretinit
