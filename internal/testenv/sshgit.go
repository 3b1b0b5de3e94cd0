package testenv

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/binary"
	"encoding/pem"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// SSHGit serves a GitServer's repositories over SSH (git-upload-pack and
// git-receive-pack run for each session, as sshd would run them), with a
// host key and one authorized client key generated for the test.
type SSHGit struct {
	Addr string // "127.0.0.1:PORT"
	// HostKey is the server's public host key.
	HostKey ssh.PublicKey
	// ClientKeyFile is an OpenSSH private key the server accepts.
	ClientKeyFile string

	root string
}

// URL is the ssh:// clone URL of a repository on the server.
func (s *SSHGit) URL(r *GitRepo) string {
	return fmt.Sprintf("ssh://git@%s/%s.git", s.Addr, r.Name)
}

// KnownHosts writes a known_hosts file that lists key for the server's
// address (pass s.HostKey for the right one) and returns its path.
func (s *SSHGit) KnownHosts(t testing.TB, key ssh.PublicKey) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "known_hosts")
	line := ""
	if key != nil {
		line = knownhosts.Line([]string{s.Addr}, key) + "\n"
	}
	if err := os.WriteFile(p, []byte(line), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// NewHostKey returns a fresh public key, e.g. to write a known_hosts entry
// that does not match the server.
func NewHostKey(t testing.TB) ssh.PublicKey {
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	k, _ := ssh.NewPublicKey(pub)
	return k
}

// StartSSH serves g's repositories over SSH until the test ends.
func (g *GitServer) StartSSH(t testing.TB) *SSHGit {
	t.Helper()
	_, hostPriv, _ := ed25519.GenerateKey(rand.Reader)
	hostSigner, err := ssh.NewSignerFromKey(hostPriv)
	if err != nil {
		t.Fatal(err)
	}
	clientPub, clientPriv, _ := ed25519.GenerateKey(rand.Reader)
	authorized, _ := ssh.NewPublicKey(clientPub)
	block, err := ssh.MarshalPrivateKey(clientPriv, "berth test")
	if err != nil {
		t.Fatal(err)
	}
	keyFile := filepath.Join(t.TempDir(), "id_ed25519")
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(block), 0o600); err != nil {
		t.Fatal(err)
	}

	cfg := &ssh.ServerConfig{
		PublicKeyCallback: func(_ ssh.ConnMetadata, k ssh.PublicKey) (*ssh.Permissions, error) {
			if string(k.Marshal()) == string(authorized.Marshal()) {
				return nil, nil
			}
			return nil, fmt.Errorf("unknown client key")
		},
	}
	cfg.AddHostKey(hostSigner)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		unavailable(t, "ssh git server", err)
	}
	t.Cleanup(func() { l.Close() })
	s := &SSHGit{Addr: l.Addr().String(), HostKey: hostSigner.PublicKey(), ClientKeyFile: keyFile, root: g.Root}
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go s.serve(c, cfg)
		}
	}()
	return s
}

func (s *SSHGit) serve(c net.Conn, cfg *ssh.ServerConfig) {
	defer c.Close()
	_, chans, reqs, err := ssh.NewServerConn(c, cfg)
	if err != nil {
		return // a client that refused our host key ends here
	}
	go ssh.DiscardRequests(reqs)
	for nc := range chans {
		if nc.ChannelType() != "session" {
			nc.Reject(ssh.UnknownChannelType, "session only")
			continue
		}
		ch, reqs, err := nc.Accept()
		if err != nil {
			continue
		}
		go s.session(ch, reqs)
	}
}

// session runs the one exec request a Git client makes.
func (s *SSHGit) session(ch ssh.Channel, reqs <-chan *ssh.Request) {
	defer ch.Close()
	for req := range reqs {
		if req.Type != "exec" || len(req.Payload) < 4 {
			req.Reply(false, nil)
			continue
		}
		n := binary.BigEndian.Uint32(req.Payload)
		command := string(req.Payload[4 : 4+n])
		name, arg, _ := strings.Cut(command, " ")
		if name != "git-upload-pack" && name != "git-receive-pack" {
			req.Reply(false, nil)
			return
		}
		path := filepath.Join(s.root, filepath.Clean("/"+strings.Trim(arg, `'"`)))
		req.Reply(true, nil)
		cmd := exec.Command("git", strings.TrimPrefix(name, "git-"), path)
		cmd.Env = GitEnv()
		cmd.Stdin, cmd.Stdout, cmd.Stderr = ch, ch, ch.Stderr()
		code := 0
		if err := cmd.Run(); err != nil {
			code = 1
			if ee, ok := err.(*exec.ExitError); ok {
				code = ee.ExitCode()
			}
		}
		status := make([]byte, 4)
		binary.BigEndian.PutUint32(status, uint32(code))
		ch.SendRequest("exit-status", false, status)
		return
	}
}
