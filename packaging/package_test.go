// Package packaging holds berth's systemd unit, nfpm config and maintainer
// scripts, and the test that builds the .deb and installs it on this host.
package packaging

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// need skips, or with BERTH_INTEGRATION=1 (scripts/test) fails.
func need(t *testing.T, ok bool, why string) {
	t.Helper()
	if ok {
		return
	}
	if os.Getenv("BERTH_INTEGRATION") == "1" {
		t.Fatalf("%s (BERTH_INTEGRATION=1 turns this skip into a failure)", why)
	}
	t.Skip(why)
}

func run(t *testing.T, dir, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

func TestDeb_BuildsInstallsAndRemoves(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: building and installing the .deb takes minutes")
	}
	_, dpkgErr := exec.LookPath("dpkg")
	need(t, os.Geteuid() == 0 && dpkgErr == nil, "installing the .deb needs root and dpkg")
	if out, err := exec.Command("dpkg-query", "-W", "-f=${Status}", "berth").Output(); err == nil && strings.Contains(string(out), "installed") {
		t.Fatalf("a berth package is installed on this host already; not touching it")
	}
	root, _ := filepath.Abs("..")
	out := run(t, root, "scripts/package")
	var deb string
	for _, f := range strings.Fields(out) {
		if strings.HasSuffix(f, ".deb") {
			deb = filepath.Join(root, f)
		}
	}
	if deb == "" {
		t.Fatalf("scripts/package made no .deb:\n%s", out)
	}
	t.Cleanup(func() { exec.Command("dpkg", "--purge", "berth").Run() })
	run(t, root, "dpkg", "-i", deb)

	for path, mode := range map[string]os.FileMode{
		"/usr/bin/berth":                        0o755,
		"/lib/systemd/system/berth.service":     0o644,
		"/etc/berth/agent.yaml.example":         0o640,
		"/etc/berth":                            0o750 | os.ModeDir,
		"/var/lib/berth":                        0o700 | os.ModeDir,
		"/usr/share/doc/berth/configuration.md": 0o644,
		"/usr/share/doc/berth/security.md":      0o644,
		"/usr/share/doc/berth/fleet.md":         0o644,
	} {
		fi, err := os.Stat(path)
		if err != nil {
			t.Errorf("%s: %v", path, err)
			continue
		}
		if fi.Mode()&(os.ModeDir|os.ModePerm) != mode {
			t.Errorf("%s: mode %v, want %v", path, fi.Mode(), mode)
		}
	}
	if _, err := os.Stat("/etc/berth/agent.yaml"); err == nil {
		t.Error("the package installed an agent.yaml: a fresh install must not be startable half-configured")
	}
	if v := run(t, "/", "/usr/bin/berth", "version"); !strings.HasPrefix(v, "berth ") || !strings.Contains(v, "commit ") {
		t.Errorf("berth version: %q", v)
	}
	// The example config is what the docs say to start from: with env and
	// repo.url set it passes the agent's own check.
	if out, err := exec.Command("/usr/bin/berth", "run", "--check-config", "--config", "/etc/berth/agent.yaml.example").CombinedOutput(); err != nil {
		t.Errorf("the example config does not check: %v\n%s", err, out)
	}
	_, err := exec.LookPath("systemd-analyze")
	need(t, err == nil, "systemd-analyze (Debian's systemd package) is needed to verify the unit")
	if out, err := exec.Command("systemd-analyze", "verify", "/lib/systemd/system/berth.service").CombinedOutput(); err != nil {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
	run(t, "/", "dpkg", "--purge", "berth")
	for _, gone := range []string{"/usr/bin/berth", "/etc/berth", "/var/lib/berth"} {
		if _, err := os.Stat(gone); err == nil {
			t.Errorf("%s left after purge", gone)
		}
	}
}

func TestUnit_HasTheDesignedSettings(t *testing.T) {
	b, err := os.ReadFile("berth.service")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"Type=notify", "Restart=on-failure", "StateDirectory=berth", "TimeoutStopSec=10min", "ConditionPathExists=/etc/berth/agent.yaml", "ProtectSystem=strict", "WatchdogSec=2min", "MemoryMax=1536M"} {
		if !strings.Contains(string(b), want+"\n") {
			t.Errorf("berth.service lacks %q", want)
		}
	}
}
