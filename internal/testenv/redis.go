package testenv

import (
	"fmt"
	"os/exec"
	"testing"
	"time"
)

// Redis is a real redis-server (Debian's redis-server package) on a
// loopback port, with a password for its default user: the database
// Vault's redis-database-plugin issues dynamic (leased) credentials for.
type Redis struct {
	Host     string
	Port     int
	Password string
}

// StartRedis starts redis-server for the test, without persistence.
func StartRedis(t testing.TB) *Redis {
	t.Helper()
	shortSkip(t, "StartRedis")
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		unavailable(t, "redis", fmt.Errorf("redis-server not installed (apt-get install redis-server; scripts/test does)"))
	}
	var lastErr error
	for range 3 {
		r := &Redis{Host: "127.0.0.1", Port: FreePort(t), Password: "redis-admin-" + fmt.Sprint(time.Now().UnixNano())}
		cmd := exec.Command(bin, "--bind", r.Host, "--port", fmt.Sprint(r.Port), "--requirepass", r.Password,
			"--save", "", "--appendonly", "no", "--dir", t.TempDir(), "--protected-mode", "yes")
		p, err := startProcess(t, "redis", cmd)
		if err != nil {
			unavailable(t, "redis", err)
		}
		if lastErr = p.waitTCP(fmt.Sprintf("%s:%d", r.Host, r.Port), 10*time.Second); lastErr == nil {
			return r
		}
		p.stop()
	}
	unavailable(t, "redis", lastErr)
	return nil
}
