package lb

import (
	"context"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"berth.dev/berth/internal/failure"
)

// runtimeAPI talks to HAProxy's runtime API (a "stats socket … level admin"):
// one command per connection, the answer read to EOF, as the management
// guide describes the non-interactive mode. Names reaching a command are
// validated first: the CLI splits commands on ';' and newlines.
type runtimeAPI struct {
	network, addr string
	// timeout bounds one command, dial to EOF.
	timeout time.Duration
}

// CheckRuntimeAPI says whether spec is a runtime API address berth uses:
// "unix:/absolute/path" or a loopback "host:port".
func CheckRuntimeAPI(spec string) error {
	_, err := parseRuntimeAPI(spec)
	return err
}

// parseRuntimeAPI reads "unix:/run/haproxy/admin.sock" or a loopback
// "host:port". A remote runtime API would hand the LB to the network, so
// only loopback is accepted.
func parseRuntimeAPI(spec string) (*runtimeAPI, error) {
	if p, ok := strings.CutPrefix(spec, "unix:"); ok {
		if !strings.HasPrefix(p, "/") {
			return nil, fmt.Errorf("runtime_api %q: the socket path must be absolute", spec)
		}
		return &runtimeAPI{network: "unix", addr: p, timeout: 10 * time.Second}, nil
	}
	host, port, err := net.SplitHostPort(spec)
	if err != nil {
		return nil, fmt.Errorf("runtime_api %q: want unix:/path or a loopback host:port: %v", spec, err)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return nil, fmt.Errorf("runtime_api %q: bad port", spec)
	}
	if host != "localhost" {
		ip, err := netip.ParseAddr(host)
		if err != nil || !ip.IsLoopback() {
			return nil, fmt.Errorf("runtime_api %q: only a loopback address is allowed", spec)
		}
	}
	return &runtimeAPI{network: "tcp", addr: spec, timeout: 10 * time.Second}, nil
}

// do sends one command and returns HAProxy's answer. Not reaching HAProxy,
// or losing it mid-answer, is an outage.
func (r *runtimeAPI) do(ctx context.Context, cmd string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	var d net.Dialer
	conn, err := d.DialContext(ctx, r.network, r.addr)
	if err != nil {
		return "", failure.AsOutage(fmt.Errorf("haproxy runtime API %s: %w", r.addr, err))
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Now()) })
	defer stop()
	if _, err := io.WriteString(conn, cmd+"\n"); err != nil {
		return "", failure.AsOutage(fmt.Errorf("haproxy runtime API %s: send %q: %w", r.addr, verb(cmd), err))
	}
	b, err := io.ReadAll(io.LimitReader(conn, 16<<20))
	if err != nil {
		return "", failure.AsOutage(fmt.Errorf("haproxy runtime API %s: read the answer to %q: %w", r.addr, verb(cmd), err))
	}
	if len(b) == 0 {
		// Every answer holds at least a newline; none at all is a
		// process going away (a stop, or a reload's old worker).
		return "", failure.AsOutage(fmt.Errorf("haproxy runtime API %s: connection closed without an answer to %q", r.addr, verb(cmd)))
	}
	return string(b), nil
}

// exec runs an action command whose success answer is want ("" for the
// commands that answer with an empty line). Any other answer is HAProxy
// refusing it: a verdict carrying HAProxy's words.
func (r *runtimeAPI) exec(ctx context.Context, cmd, want string) error {
	out, err := r.do(ctx, cmd)
	if err != nil {
		return err
	}
	if got := strings.TrimSpace(out); got != want {
		return failure.AsVerdict(&refusedError{cmd: cmd, answer: firstLine(got)})
	}
	return nil
}

// refusedError is HAProxy's answer to a command it did not carry out.
type refusedError struct{ cmd, answer string }

func (e *refusedError) Error() string {
	if e.answer == "" {
		return fmt.Sprintf("haproxy refused %q (no answer)", e.cmd)
	}
	return fmt.Sprintf("haproxy refused %q: %s", e.cmd, e.answer)
}

func refusedWith(err error, answer string) bool {
	var r *refusedError
	return errors.As(err, &r) && strings.Contains(r.answer, answer)
}

// serverState is one server of a backend as the runtime API reports it
// (`show servers state`, format version 1, joined with `show stat`).
type serverState struct {
	Name string
	Addr string // "IP:PORT"
	// Op is srv_op_state: 0 stopped, 1 starting, 2 running, 3 stopping.
	Op int
	// Admin is srv_admin_state, a mask: maint bits 0x01|0x02|0x04|0x20,
	// drain bits 0x08|0x10.
	Admin int
	// From show stat.
	Backup   bool
	Sessions int // scur
	Queued   int // qcur
	Status   string
	Check    string // check_status, e.g. L7OK, L4CON
}

const (
	opStarting = 1 // UP, in slowstart
	opRunning  = 2
	adminMaint = 0x01 | 0x02 | 0x04 | 0x20
	adminDrain = 0x08 | 0x10
)

func (s serverState) maint() bool { return s.Admin&adminMaint != 0 }
func (s serverState) drain() bool { return s.Admin&adminDrain != 0 }
func (s serverState) ready() bool { return s.Admin == 0 }

// errNoBackend: the running HAProxy has no such backend.
var errNoBackend = errors.New("no such backend")

// servers lists backend's servers with their states and session counts.
func (r *runtimeAPI) servers(ctx context.Context, backend string) ([]serverState, error) {
	out, err := r.do(ctx, "show servers state "+backend)
	if err != nil {
		return nil, err
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) < 2 || strings.TrimSpace(lines[0]) != "1" || !strings.HasPrefix(lines[1], "# ") {
		if strings.Contains(out, "Can't find backend") {
			return nil, errNoBackend
		}
		return nil, failure.AsVerdict(fmt.Errorf("haproxy: unexpected answer to %q: %s", "show servers state "+backend, firstLine(out)))
	}
	cols := index(strings.Fields(strings.TrimPrefix(lines[1], "# ")))
	var list []serverState
	byName := map[string]int{}
	for _, l := range lines[2:] {
		f := strings.Fields(l)
		get := func(k string) string {
			if i, ok := cols[k]; ok && i < len(f) {
				return f[i]
			}
			return ""
		}
		if get("be_name") != backend {
			continue
		}
		op, err1 := strconv.Atoi(get("srv_op_state"))
		admin, err2 := strconv.Atoi(get("srv_admin_state"))
		if err1 != nil || err2 != nil {
			return nil, failure.AsVerdict(fmt.Errorf("haproxy: cannot read server states of %s: %q", backend, l))
		}
		byName[get("srv_name")] = len(list)
		list = append(list, serverState{
			Name:  get("srv_name"),
			Addr:  net.JoinHostPort(get("srv_addr"), get("srv_port")),
			Op:    op,
			Admin: admin,
		})
	}
	stats, err := r.stat(ctx, backend)
	if err != nil {
		return nil, err
	}
	for _, st := range stats {
		if i, ok := byName[st["svname"]]; ok {
			s := &list[i]
			s.Backup = st["bck"] == "1"
			s.Sessions, _ = strconv.Atoi(st["scur"])
			s.Queued, _ = strconv.Atoi(st["qcur"])
			s.Status = st["status"]
			s.Check = st["check_status"]
		}
	}
	return list, nil
}

// stat returns `show stat BACKEND 4 -1` (the backend's servers), one map of
// column name to value per server. Columns are found by name, as their
// number and order change between versions.
func (r *runtimeAPI) stat(ctx context.Context, backend string) ([]map[string]string, error) {
	cmd := "show stat " + backend + " 4 -1"
	out, err := r.do(ctx, cmd)
	if err != nil {
		return nil, err
	}
	if !strings.HasPrefix(out, "# ") {
		if strings.Contains(out, "No such proxy") {
			return nil, errNoBackend
		}
		return nil, failure.AsVerdict(fmt.Errorf("haproxy: unexpected answer to %q: %s", cmd, firstLine(out)))
	}
	cr := csv.NewReader(strings.NewReader(strings.TrimPrefix(out, "# ")))
	cr.FieldsPerRecord = -1
	recs, err := cr.ReadAll()
	if err != nil || len(recs) == 0 {
		return nil, failure.AsVerdict(fmt.Errorf("haproxy: cannot read %q: %v", cmd, err))
	}
	head := recs[0]
	var rows []map[string]string
	for _, rec := range recs[1:] {
		if len(rec) < 2 || rec[0] != backend || rec[1] == "BACKEND" {
			continue
		}
		m := make(map[string]string, len(head))
		for i, k := range head {
			if i < len(rec) {
				m[k] = rec[i]
			}
		}
		rows = append(rows, m)
	}
	return rows, nil
}

func index(names []string) map[string]int {
	m := make(map[string]int, len(names))
	for i, n := range names {
		m[n] = i
	}
	return m
}

func firstLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}

// verb names a command in errors without its arguments' bulk.
func verb(cmd string) string {
	f := strings.Fields(cmd)
	if len(f) > 3 {
		f = f[:3]
	}
	return strings.Join(f, " ")
}
