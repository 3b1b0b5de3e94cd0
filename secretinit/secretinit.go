package secretinit

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"berth.dev/berth/envs"
)

// Run is berth's init inside a container with x-berth.secret_files
// (engine mounts this binary at /.berth/init): it reads the files' values
// from stdin — the agent writes them there when it starts the container and
// then closes it — writes each to the tmpfs at /run/secrets (0400, owned by
// the container's user), and execs the container's own command. Values
// never touch a disk, on the host or in the image's layers.
func Run(args []string, stdin io.Reader, stderr io.Writer) int {
	if len(args) < 2 || args[0] != "--" {
		fmt.Fprintln(stderr, "berth secret-init: usage: secret-init -- COMMAND [ARGS]")
		return 2
	}
	argv := args[1:]
	b, err := io.ReadAll(io.LimitReader(stdin, 8<<20))
	if err != nil || len(b) == 0 {
		fmt.Fprintln(stderr, "berth secret-init: no secret files on stdin: this container was started outside berth "+
			"(a restart by Docker itself: the values are never stored); berth replaces it at its next check")
		return 70
	}
	var files map[string]string
	if err := json.Unmarshal(b, &files); err != nil {
		fmt.Fprintln(stderr, "berth secret-init: unreadable secret files payload")
		return 70
	}
	for name, value := range files {
		p := filepath.Join(envs.SecretFilesDir, filepath.Base(name))
		f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o400)
		if err == nil {
			_, err = io.WriteString(f, value)
			if cerr := f.Close(); err == nil {
				err = cerr
			}
		}
		if err != nil {
			fmt.Fprintf(stderr, "berth secret-init: write %s: %v\n", p, err)
			return 70
		}
	}
	path, err := lookPath(argv[0])
	if err != nil {
		fmt.Fprintf(stderr, "berth secret-init: %v\n", err)
		return 127
	}
	err = syscall.Exec(path, argv, os.Environ())
	fmt.Fprintf(stderr, "berth secret-init: exec %s: %v\n", path, err)
	return 126
}

// lookPath finds a command as Docker would: a path as given, else in $PATH
// (Docker's default when unset).
func lookPath(cmd string) (string, error) {
	if strings.Contains(cmd, "/") {
		return cmd, nil
	}
	path := os.Getenv("PATH")
	if path == "" {
		path = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
	}
	for _, dir := range filepath.SplitList(path) {
		p := filepath.Join(dir, cmd)
		if fi, err := os.Stat(p); err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s: not found in PATH", cmd)
}
