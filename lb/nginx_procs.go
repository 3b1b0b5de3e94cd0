package lb

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// What berth reads of nginx's processes in /proc: the master's children,
// their titles (nginx sets "nginx: worker process", and "… is shutting
// down" once a reload retired it) and their start times. Titles, not pids
// remembered across a reload, say which workers are old: with pid_max at
// 32768 and a healthcheck process a second per container, a remembered pid
// can be reused by an unrelated process.

// worker is one child process of an nginx master.
type worker struct {
	pid      int
	ticks    int64 // start, in clock ticks after boot: with pid, its identity
	started  time.Time
	retiring bool // "worker process is shutting down"
}

// workers lists master's worker processes (not its cache manager or
// loader).
func workers(master int) []worker {
	stats, _ := filepath.Glob("/proc/[0-9]*/stat")
	boot := bootTime()
	var out []worker
	for _, s := range stats {
		b, err := os.ReadFile(s)
		if err != nil {
			continue
		}
		// pid (comm) state ppid … starttime is field 22; comm may hold
		// spaces, so count fields after ')'.
		i := bytes.LastIndexByte(b, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(string(b[i+1:]))
		if len(f) < 20 || f[1] != strconv.Itoa(master) || f[0] == "Z" {
			continue
		}
		pid, err := strconv.Atoi(filepath.Base(filepath.Dir(s)))
		if err != nil {
			continue
		}
		title, err := os.ReadFile(filepath.Join(filepath.Dir(s), "cmdline"))
		if err != nil || !bytes.Contains(title, []byte("worker process")) {
			continue
		}
		ticks, _ := strconv.ParseInt(f[19], 10, 64)
		out = append(out, worker{
			pid:      pid,
			ticks:    ticks,
			started:  boot.Add(time.Duration(ticks) * time.Second / clockTicks),
			retiring: bytes.Contains(title, []byte("shutting down")),
		})
	}
	return out
}

// clockTicks is USER_HZ, the unit of /proc/PID/stat's times: 100 on every
// Linux architecture Go supports.
const clockTicks = 100

// bootTime is when the machine booted, on the wall clock, to the precision
// of /proc/uptime (10 ms).
func bootTime() time.Time {
	now := time.Now()
	b, err := os.ReadFile("/proc/uptime")
	if err != nil {
		return time.Time{}
	}
	up, _, _ := strings.Cut(string(b), " ")
	secs, err := strconv.ParseFloat(up, 64)
	if err != nil {
		return time.Time{}
	}
	return now.Add(-time.Duration(secs * float64(time.Second)))
}

// shuttingDown returns the pids of master's workers of older
// configurations.
func shuttingDown(master int) []int {
	var out []int
	for _, w := range workers(master) {
		if w.retiring {
			out = append(out, w.pid)
		}
	}
	return out
}

// startSlack covers the imprecision of a process's start time as /proc
// gives it (10 ms ticks, uptime read 10 ms apart from now).
const startSlack = 30 * time.Millisecond

// current returns master's workers of the current configuration.
func current(master int) map[worker]bool {
	out := map[worker]bool{}
	for _, w := range workers(master) {
		if !w.retiring {
			w.started, w.retiring = time.Time{}, false
			out[w] = true
		}
	}
	return out
}

// replaced reports whether none of before is a current worker of master
// any more: the master has read a new configuration and retired them.
func replaced(master int, before map[worker]bool) bool {
	now := current(master)
	if len(now) == 0 {
		return false // between retiring the old and starting the new
	}
	for w := range now {
		if before[w] {
			return false
		}
	}
	return true
}

// currentSince reports whether master has a worker of the current
// configuration that started at or after t: it read its config then.
func currentSince(master int, t time.Time) bool {
	for _, w := range workers(master) {
		if !w.retiring && !w.started.Before(t.Add(-startSlack)) {
			return true
		}
	}
	return false
}

// loadedSince reports whether nginx has read file since it was last
// written: a worker of the current configuration started after the file's
// modification. A file written by an agent killed before it reloaded nginx
// is newer than every worker. (Writing, testing and reloading take tens of
// milliseconds at least; a switch follows the last one by seconds.)
func loadedSince(master int, file string) (bool, error) {
	fi, err := os.Stat(file)
	if err != nil {
		return false, err
	}
	if len(workers(master)) == 0 {
		return false, fmt.Errorf("nginx master %d has no worker processes", master)
	}
	return currentSince(master, fi.ModTime()), nil
}

func alive(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	i := bytes.LastIndexByte(b, ')')
	return i < 0 || !strings.HasPrefix(strings.TrimSpace(string(b[i+1:])), "Z")
}
