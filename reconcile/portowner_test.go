package reconcile

import (
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"berth.dev/berth/internal/testenv"
)

var ssPid = regexp.MustCompile(`pid=(\d+)`)

// listenerElsewhere says whether the loopback port hostPort is listened on
// by a process that is not a child of the dockerd with pid engine — the
// proxy of another engine on this machine. Tests run several engines on
// one loopback: one restarted with live-restore may lose a published
// port to another while it is down, and then lists it as published
// though another engine's container answers there. Berth cannot tell
// that from its own engine's answers (on a host there is one engine, and
// a port lost to no listener is replaced: lostport.go).
func listenerElsewhere(t testing.TB, engine int, hostPort string) (string, bool) {
	t.Helper()
	out, err := exec.Command("ss", "-ltnpH", "sport = :"+hostPort).Output()
	if err != nil {
		t.Logf("ss: %v", err)
		return "", false
	}
	m := ssPid.FindSubmatch(out)
	if m == nil {
		return "", false
	}
	pid, _ := strconv.Atoi(string(m[1]))
	ppid, ok := testenv.ParentPid(pid)
	if !ok {
		return "", false
	}
	return strings.TrimSpace(string(out)), ppid != engine
}
