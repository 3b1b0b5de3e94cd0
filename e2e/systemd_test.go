package e2e

import (
	"net"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"berth.dev/berth/internal/testenv"
)

// TestE2E_SystemdNotify runs the agent as systemd's Type=notify would: with
// NOTIFY_SOCKET set, it reports READY=1 once started and a STATUS= line
// naming the live revision, and STOPPING=1 on SIGTERM.
func TestE2E_SystemdNotify(t *testing.T) {
	testenv.Parallel(t)
	w := newWorld(t)
	img := testenv.PushApp(t, w.reg, testenv.ImageSpec{Version: "v1"})
	w.d.CleanupImage(img.Ref())
	commit := w.commit("v1", img, "serve")
	sock := filepath.Join(t.TempDir(), "notify")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	msgs := make(chan string, 100)
	go func() {
		buf := make([]byte, 4096)
		for {
			n, _, err := conn.ReadFromUnix(buf)
			if err != nil {
				return
			}
			msgs <- string(buf[:n])
		}
	}()
	cmd := exec.Command(w.bin, "run", "--config", w.config)
	cmd.Env = append(cmd.Environ(), "NOTIFY_SOCKET="+sock)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	want := []string{"READY=1", "STATUS=env " + w.env + ": live " + commit[:12]}
	deadline := time.After(patience)
	var got []string
	for len(want) > 0 {
		select {
		case m := <-msgs:
			got = append(got, m)
			if strings.Contains(m, want[0]) {
				want = want[1:]
			}
		case <-deadline:
			t.Fatalf("still waiting for %q; got %q", want, got)
		}
	}
	cmd.Process.Signal(syscall.SIGTERM)
	for {
		select {
		case m := <-msgs:
			if strings.Contains(m, "STOPPING=1") {
				cmd.Wait()
				return
			}
		case <-time.After(30 * time.Second):
			t.Fatal("no STOPPING=1 after SIGTERM")
		}
	}
}
