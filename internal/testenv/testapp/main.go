// Command testapp is the program inside berth's test images. It is built
// statically and packed FROM scratch by internal/testenv, so one small binary
// plays every part a deploy test needs: a healthy HTTP server, a server that
// never becomes healthy or only after a delay, a container that crashes on
// start, and a one-shot CLI/migration that exits with a chosen code.
//
// Behaviour is chosen by environment variables (all optional):
//
//	APP_MODE           serve (default) | unhealthy | crash | exit | idle
//	                   (idle: runs until SIGTERM, says so, and never listens)
//	APP_PORT           port to serve on (default 8080)
//	APP_VERSION        reported by GET / and GET /version (set in the image)
//	APP_HEALTHY_AFTER  duration; /healthz fails until this long after start
//	APP_UNHEALTHY_AFTER duration; /healthz fails from this long after start
//	                   on (the app still serves /: a release that degrades
//	                   after its cutover)
//	APP_FAIL_AFTER     duration; / answers 500 from this long after start
//	                   on (a release whose answers start failing)
//	APP_UNHEALTHY_WHEN, APP_FAIL_WHEN  a path; as APP_UNHEALTHY_AFTER and
//	                   APP_FAIL_AFTER, from when that file exists on (a test
//	                   puts it there: testenv.TouchInContainers), not after
//	                   a time a busy machine may outlast
//	APP_EXIT_CODE      exit code for mode exit and crash (default 0 / 3)
//	APP_SLEEP          duration to sleep before exiting in mode exit
//	APP_MARKER         a line printed on start, for log assertions
//	APP_PRINT_ENV      comma-separated names; for each one the name, whether
//	                   it is set and a short SHA-256 of its value are printed,
//	                   never the value itself
//	APP_PRINT_FILES    comma-separated paths; for each one its mode and a
//	                   short SHA-256 of its content, never the content
//
// Arguments (after an optional leading "journal", the demo app's name):
// "health" is the image's HEALTHCHECK (below); "migrate", "check" and
// "cleanup" print a line and exit with APP_EXIT_CODE (default 0); anything
// else runs APP_MODE.
//
// "testapp health" is the image's HEALTHCHECK (exec form: scratch images have
// no shell). It asks the running server's /healthz over loopback.
package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"
)

func main() {
	args := os.Args[1:]
	if len(args) > 0 && args[0] == "journal" {
		args = args[1:] // the demo's app name (examples/config-repo/envs/demo)
	}
	if len(args) > 0 {
		switch args[0] {
		case "health":
			os.Exit(health())
		case "migrate", "check", "cleanup":
			// The demo's one-shots and job: say so and exit.
			fmt.Printf("journal %s done version=%s\n", args[0], os.Getenv("APP_VERSION"))
			os.Exit(exitCode(0))
		}
	}
	os.Exit(run())
}

func port() string {
	if p := os.Getenv("APP_PORT"); p != "" {
		return p
	}
	return "8080"
}

func duration(name string) time.Duration {
	v := os.Getenv(name)
	if v == "" {
		return 0
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		fmt.Fprintf(os.Stderr, "testapp: bad %s=%q: %v\n", name, v, err)
		os.Exit(64)
	}
	return d
}

func exitCode(def int) int {
	v := os.Getenv("APP_EXIT_CODE")
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		fmt.Fprintf(os.Stderr, "testapp: bad APP_EXIT_CODE=%q\n", v)
		return 64
	}
	return n
}

// printEnv reports the named variables without revealing their values: tests
// use the hash to prove a secret arrived, and grep logs to prove it leaked
// nowhere.
func printEnv() {
	for _, name := range strings.Split(os.Getenv("APP_PRINT_ENV"), ",") {
		name = strings.TrimSpace(name)
		if name == "" {
			continue
		}
		v, ok := os.LookupEnv(name)
		if !ok {
			fmt.Printf("testapp env %s unset\n", name)
			continue
		}
		sum := sha256.Sum256([]byte(v))
		fmt.Printf("testapp env %s set sha256=%s\n", name, hex.EncodeToString(sum[:8]))
	}
}

// printFiles reports the files named in APP_PRINT_FILES like printEnv does
// variables: mode and a short SHA-256 of the content, never the content.
func printFiles() {
	for _, p := range strings.Split(os.Getenv("APP_PRINT_FILES"), ",") {
		p = strings.TrimSpace(p)
		if p == "" {
			continue
		}
		fi, err := os.Stat(p)
		if err != nil {
			fmt.Printf("testapp file %s missing\n", p)
			continue
		}
		b, err := os.ReadFile(p)
		if err != nil {
			fmt.Printf("testapp file %s unreadable: %v\n", p, err)
			continue
		}
		sum := sha256.Sum256(b)
		fmt.Printf("testapp file %s mode=%o sha256=%s\n", p, fi.Mode().Perm(), hex.EncodeToString(sum[:8]))
	}
}

func run() int {
	version := os.Getenv("APP_VERSION")
	fmt.Printf("testapp start version=%s mode=%s\n", version, os.Getenv("APP_MODE"))
	if m := os.Getenv("APP_MARKER"); m != "" {
		fmt.Println(m)
	}
	printEnv()
	printFiles()

	switch mode := os.Getenv("APP_MODE"); mode {
	case "", "serve", "unhealthy":
		return serve(version, mode == "unhealthy")
	case "crash":
		fmt.Fprintln(os.Stderr, "testapp: crashing on start as asked")
		return exitCode(3)
	case "idle":
		ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
		defer stop()
		<-ctx.Done()
		fmt.Println("testapp idle stopped by signal")
		return 0
	case "exit":
		time.Sleep(duration("APP_SLEEP"))
		code := exitCode(0)
		fmt.Printf("testapp exit code=%d\n", code)
		return code
	default:
		fmt.Fprintf(os.Stderr, "testapp: unknown APP_MODE %q\n", mode)
		return 64
	}
}

func serve(version string, neverHealthy bool) int {
	start := time.Now()
	healthyAfter := duration("APP_HEALTHY_AFTER")
	unhealthyAfter, failAfter := duration("APP_UNHEALTHY_AFTER"), duration("APP_FAIL_AFTER")
	exists := func(name string) bool {
		p := os.Getenv(name)
		if p == "" {
			return false
		}
		_, err := os.Stat(p)
		return err == nil
	}
	host, _ := os.Hostname()

	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {
		if neverHealthy || time.Since(start) < healthyAfter || unhealthyAfter > 0 && time.Since(start) >= unhealthyAfter || exists("APP_UNHEALTHY_WHEN") {
			http.Error(w, "not healthy", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("/version", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, version)
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		if failAfter > 0 && time.Since(start) >= failAfter || exists("APP_FAIL_WHEN") {
			http.Error(w, "version="+version+" failing", http.StatusInternalServerError)
			return
		}
		fmt.Fprintf(w, "version=%s host=%s\n", version, host)
	})
	srv := &http.Server{Addr: ":" + port(), Handler: mux, ReadHeaderTimeout: 5 * time.Second}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	errc := make(chan error, 1)
	go func() { errc <- srv.ListenAndServe() }()
	fmt.Printf("testapp listening port=%s\n", port())

	select {
	case err := <-errc:
		fmt.Fprintf(os.Stderr, "testapp: serve: %v\n", err)
		return 1
	case <-ctx.Done():
	}
	// Graceful stop: finish in-flight requests, as a production server
	// should, so that a cutover test measures berth and not the app.
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil && !errors.Is(err, http.ErrServerClosed) {
		fmt.Fprintf(os.Stderr, "testapp: shutdown: %v\n", err)
		return 1
	}
	fmt.Println("testapp stopped")
	return 0
}

func health() int {
	c := http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get("http://127.0.0.1:" + port() + "/healthz")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		fmt.Fprintln(os.Stderr, resp.Status)
		return 1
	}
	return 0
}
