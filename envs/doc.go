// Package envs loads one environment (envs/<env>/ of a config repo checkout)
// into berth's desired state: the Compose project as docker compose would load
// it, the typed x-berth settings, a config hash per service, and validation
// and policy problems that each name file, service and field. It does no I/O
// beyond reading the checkout, and reads it only through an os.Root with a
// byte limit: compose-go opens no file envs has not contained first
// (files.go is its loader for include and extends). What a revision may
// ask of the host is the Policy (policy.go, mounts.go, secretpath.go,
// lb.go; docs/security.md lists every rule).
package envs
