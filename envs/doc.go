// Package envs loads one environment (envs/<env>/ of a config repo checkout)
// into berth's desired state: the Compose project as docker compose would load
// it, the typed x-berth settings, a config hash per service, and validation
// and policy problems that each name file, service and field. It does no I/O
// beyond reading the checkout.
package envs
