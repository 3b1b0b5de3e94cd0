// Package jobs replaces the host crontab: it schedules the x-berth jobs of the
// live revision (robfig/cron), runs each as a container, and keeps each run's
// logs, exit code and timing under the state dir with a per-job history limit.
package jobs
