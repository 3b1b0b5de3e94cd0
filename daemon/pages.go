package daemon

import (
	"bufio"
	"os"
	"strconv"
	"strings"
	"sync"

	"berth.dev/berth/reconcile"
	"golang.org/x/sys/unix"
)

// startupPages gives back, once every env has finished its first pass, the
// pages of berth's own binary that starting it faulted in. Package inits
// (gRPC's and protobuf's for the fleet client among them, linked whether or
// not a fleet is configured) and the first pass touch most of the code
// once; an idle agent runs a small part of it. MADV_PAGEOUT drops the
// binary's clean, file-backed pages from the process (and from the page
// cache unless something else maps them); the ones a later pass needs
// fault back in from the file once, then stay. Nothing the process wrote
// is touched (only read-only mappings of the executable), and a kernel
// without MADV_PAGEOUT (before 5.4) just keeps the pages.
//
// The read-only data (.rodata, and .gopclntab: the tables the runtime
// reads for every stack frame a collection scans) is marked MADV_RANDOM
// first: a later fault there reads the one page it needs instead of the
// kernel's read-around (128 KiB about it), nearly none of which an idle
// agent reads. Resident at idle, .rodata 3.9 → 1.8 MiB and .gopclntab
// 4.1–4.8 → 1.0–1.2 MiB (docs/benchmarks.md, idle daemon). The code is
// left as it is: marked too, its resident part did not change (5.5 MiB;
// the kernel reads around faults in executable mappings anyway).
type startupPages struct {
	mu      sync.Mutex
	waiting map[string]bool
	done    bool
}

func newStartupPages(envs []string) *startupPages {
	p := &startupPages{waiting: map[string]bool{}}
	for _, e := range envs {
		p.waiting[e] = true
	}
	return p
}

// passEnded counts env's first pass; the last one releases the pages.
func (p *startupPages) passEnded(env string, _ reconcile.Pass) {
	if p == nil {
		return
	}
	p.mu.Lock()
	delete(p.waiting, env)
	release := !p.done && len(p.waiting) == 0
	if release {
		p.done = true
	}
	p.mu.Unlock()
	if release {
		releaseBinaryPages()
	}
}

// releaseBinaryPages advises MADV_PAGEOUT on every read-only mapping of the
// executable, as /proc/self/maps lists them. Errors are ignored: it only
// ever saves memory.
func releaseBinaryPages() {
	exe, err := os.Readlink("/proc/self/exe")
	if err != nil {
		return
	}
	f, err := os.Open("/proc/self/maps")
	if err != nil {
		return
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// 00400000-00c52000 r-xp 00000000 fd:01 1234   /usr/bin/berth
		fields := strings.Fields(sc.Text())
		if len(fields) < 6 || strings.Join(fields[5:], " ") != exe || strings.Contains(fields[1], "w") {
			continue
		}
		from, to, ok := strings.Cut(fields[0], "-")
		if !ok {
			continue
		}
		start, err1 := strconv.ParseUint(from, 16, 64)
		end, err2 := strconv.ParseUint(to, 16, 64)
		if err1 != nil || err2 != nil || end <= start {
			continue
		}
		if !strings.Contains(fields[1], "x") {
			unix.Syscall(unix.SYS_MADVISE, uintptr(start), uintptr(end-start), unix.MADV_RANDOM)
		}
		unix.Syscall(unix.SYS_MADVISE, uintptr(start), uintptr(end-start), unix.MADV_PAGEOUT)
	}
}
