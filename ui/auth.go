package ui

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"fmt"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"golang.org/x/crypto/bcrypt"
)

// basicAuth guards `berth ui` with HTTP basic authentication against a
// file of "user:bcrypt-hash" lines (what `htpasswd -nbB user password`
// prints; '#' starts a comment). The file is read again when it changes,
// so rotating a password needs no restart; while it is missing, empty or
// malformed, every login is refused. A password that matched is
// remembered (as a digest, for verifiedFor) so that a page's live
// updates do not pay bcrypt each time.
type basicAuth struct {
	path string
	log  hclog.Logger

	mu      sync.Mutex
	mod     time.Time
	size    int64
	users   map[string][]byte // user → bcrypt hash
	dummy   []byte            // a hash of nothing anyone types, at the users' cost
	ok      map[[32]byte]time.Time
	lastErr string
	// slots bounds the bcrypt comparisons running at once: each costs
	// tens of milliseconds of CPU, so a stream of wrong passwords would
	// otherwise take every core of the box `berth ui` runs on.
	slots chan struct{}
}

const (
	verifiedFor   = 10 * time.Minute
	maxVerified   = 1000
	maxAuthFile   = 1 << 20
	authRealmHead = `Basic realm="berth", charset="UTF-8"`
)

func newBasicAuth(path string, log hclog.Logger) (*basicAuth, error) {
	a := &basicAuth{path: path, log: log, slots: make(chan struct{}, 1)}
	if err := a.reload(); err != nil {
		return nil, err
	}
	return a, nil
}

// reload reads the file when it changed since the last read.
func (a *basicAuth) reload() error {
	fi, err := os.Stat(a.path)
	if err != nil {
		return fmt.Errorf("basic auth file: %w", err)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.users != nil && fi.ModTime().Equal(a.mod) && fi.Size() == a.size {
		return nil
	}
	if fi.Size() > maxAuthFile {
		return fmt.Errorf("basic auth file %s: larger than %d bytes", a.path, maxAuthFile)
	}
	b, err := os.ReadFile(a.path)
	if err != nil {
		return fmt.Errorf("basic auth file: %w", err)
	}
	users := map[string][]byte{}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		user, hash, ok := strings.Cut(line, ":")
		if !ok || user == "" {
			return fmt.Errorf("basic auth file %s:%d: want user:bcrypt-hash", a.path, n)
		}
		if _, err := bcrypt.Cost([]byte(hash)); err != nil {
			return fmt.Errorf("basic auth file %s:%d: user %s: not a bcrypt hash (htpasswd -nbB user password makes one)", a.path, n, user)
		}
		users[user] = []byte(hash)
	}
	if len(users) == 0 {
		return fmt.Errorf("basic auth file %s: no user", a.path)
	}
	cost := bcrypt.DefaultCost
	for _, h := range users {
		cost, _ = bcrypt.Cost(h)
		break
	}
	if c, err := bcrypt.Cost(a.dummy); err != nil || c != cost {
		a.dummy, _ = bcrypt.GenerateFromPassword([]byte("berth: no such user"), cost)
	}
	a.users, a.mod, a.size, a.lastErr = users, fi.ModTime(), fi.Size(), ""
	a.ok = map[[32]byte]time.Time{} // a changed file forgets every login
	return nil
}

// check says whether the request carries a user and password of the file.
func (a *basicAuth) check(r *http.Request) bool {
	user, pass, ok := r.BasicAuth()
	if !ok {
		return false
	}
	if err := a.reload(); err != nil {
		// Nobody is let in until the file is good again: removing or
		// emptying it is how a person revokes every login, and the last
		// good file staying in force kept them valid.
		a.mu.Lock()
		a.users, a.ok = nil, nil
		if err.Error() != a.lastErr {
			a.lastErr = err.Error()
			a.log.Warn("basic auth file unreadable: every login is refused until it is good again", "error", err)
		}
		a.mu.Unlock()
		return false
	}
	key := sha256.Sum256([]byte(user + "\x00" + pass))
	now := time.Now()
	a.mu.Lock()
	hash, known := a.users[user]
	dummy := a.dummy
	if at, seen := a.ok[key]; seen && known && now.Sub(at) < verifiedFor {
		a.mu.Unlock()
		return true
	}
	a.mu.Unlock()
	if !known {
		// As slow as a known user's check: the answer's time does not
		// tell which users exist.
		a.compare(r, dummy, pass)
		return false
	}
	if !a.compare(r, hash, pass) {
		return false
	}
	a.mu.Lock()
	if a.ok == nil || len(a.ok) >= maxVerified {
		a.ok = map[[32]byte]time.Time{}
	}
	a.ok[key] = now
	a.mu.Unlock()
	return true
}

// compare checks pass against hash when a slot is free, waiting for one
// while the request lasts (a request given up on is refused).
func (a *basicAuth) compare(r *http.Request, hash []byte, pass string) bool {
	select {
	case a.slots <- struct{}{}:
	case <-r.Context().Done():
		return false
	}
	defer func() { <-a.slots }()
	return bcrypt.CompareHashAndPassword(hash, []byte(pass)) == nil
}

// wrap answers 401 unless the request is authenticated.
func (a *basicAuth) wrap(next http.Handler, csp string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !a.check(r) {
			secure(w.Header(), csp)
			w.Header().Set("WWW-Authenticate", authRealmHead)
			http.Error(w, "authentication required", http.StatusUnauthorized)
			return
		}
		next.ServeHTTP(w, r)
	})
}
