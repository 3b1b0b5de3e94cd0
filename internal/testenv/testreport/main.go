// Command testreport reads `go test -json` on stdin and prints what a person
// running scripts/test needs: one line per package as it ends, the whole
// output of every failed test (and of a package that failed outside any
// test: a panic, a timeout, a build error), then the time each package and
// the slowest tests took. It exits 1 when anything failed.
//
//	go test -json ./... | go run ./internal/testenv/testreport [-raw FILE]
//
// With -order PREVIOUS.json it reads no test output: it prints the packages
// named as arguments, the slowest of the previous run first (packages it
// does not know first of all), so that `go test` starts the long poles
// first and the short ones fill in beside them.
package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"time"
)

type event struct {
	Time       time.Time
	Action     string
	Package    string
	ImportPath string // build-output / build-fail
	Test       string
	Elapsed    float64
	Output     string
}

type pkgState struct {
	output  []string            // lines printed outside any test
	tests   map[string][]string // test → its lines (subtests folded into the top test)
	failed  []string            // failed tests, in order
	elapsed float64
	done    bool
}

type testTime struct {
	name    string
	elapsed float64
}

func main() {
	raw := flag.String("raw", "", "also write the JSON stream to this file")
	order := flag.String("order", "", "print the argument packages, slowest in this previous run's JSON first")
	flag.Parse()
	if *order != "" {
		for _, p := range slowestFirst(*order, flag.Args()) {
			fmt.Println(p)
		}
		return
	}
	var in io.Reader = os.Stdin
	var f *os.File
	if *raw != "" {
		// Written beside and renamed at the end: the last whole run stays
		// readable meanwhile (-order, and e2e's longest-first start read
		// it while this one runs).
		var err error
		if f, err = os.Create(*raw + ".tmp"); err != nil {
			fmt.Fprintln(os.Stderr, "testreport:", err)
			os.Exit(2)
		}
		in = io.TeeReader(os.Stdin, f)
	}
	code := report(in, os.Stdout)
	if f != nil {
		if err := f.Close(); err == nil {
			err = os.Rename(f.Name(), *raw)
			if err != nil {
				fmt.Fprintln(os.Stderr, "testreport:", err)
			}
		}
	}
	os.Exit(code)
}

func report(in io.Reader, out io.Writer) int {
	pkgs := map[string]*pkgState{}
	var order []string
	var slow []testTime
	build := map[string][]string{}
	get := func(name string) *pkgState {
		p := pkgs[name]
		if p == nil {
			p = &pkgState{tests: map[string][]string{}}
			pkgs[name] = p
			order = append(order, name)
		}
		return p
	}
	failures := 0
	sc := bufio.NewScanner(in)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		line := sc.Bytes()
		var e event
		if json.Unmarshal(line, &e) != nil {
			fmt.Fprintln(out, string(line)) // go's own messages (a vet or build error)
			continue
		}
		switch e.Action {
		case "build-output":
			build[e.ImportPath] = append(build[e.ImportPath], e.Output)
			continue
		case "build-fail":
			failures++
			fmt.Fprintf(out, "BUILD FAIL %s\n%s", e.ImportPath, strings.Join(build[e.ImportPath], ""))
			continue
		}
		if e.Package == "" {
			continue
		}
		p := get(e.Package)
		top, _, _ := strings.Cut(e.Test, "/")
		switch e.Action {
		case "output":
			if e.Test == "" {
				p.output = append(p.output, e.Output)
			} else {
				p.tests[top] = append(p.tests[top], e.Output)
			}
		case "fail":
			if e.Test == "" {
				p.elapsed, p.done = e.Elapsed, true
				failures++
				printFailedPackage(out, e.Package, p)
			} else if e.Test == top {
				p.failed = append(p.failed, top)
			}
		case "pass", "skip":
			if e.Test == "" {
				p.elapsed, p.done = e.Elapsed, true
				fmt.Fprintf(out, "ok   %-45s %7.1fs\n", e.Package, e.Elapsed)
				p.tests, p.output = nil, nil
			} else if e.Test == top {
				slow = append(slow, testTime{e.Package + " " + top, e.Elapsed})
				delete(p.tests, top)
			}
		}
	}
	if err := sc.Err(); err != nil {
		fmt.Fprintln(out, "testreport: reading go test's output:", err)
		failures++
	}
	for _, name := range order {
		if p := pkgs[name]; !p.done {
			failures++
			fmt.Fprintf(out, "FAIL %s: no result (go test stopped before the package ended)\n", name)
		}
	}
	summary(out, pkgs, order, slow)
	if failures > 0 {
		fmt.Fprintf(out, "\n%d package(s) or build(s) FAILED\n", failures)
		return 1
	}
	return 0
}

func printFailedPackage(out io.Writer, name string, p *pkgState) {
	fmt.Fprintf(out, "FAIL %-45s %7.1fs\n", name, p.elapsed)
	for _, t := range p.failed {
		fmt.Fprintf(out, "--- %s %s:\n%s", name, t, strings.Join(p.tests[t], ""))
		delete(p.tests, t)
	}
	// Tests still running when the package failed (a timeout or a panic
	// elsewhere) and the package's own lines name the culprit.
	for t, lines := range p.tests {
		fmt.Fprintf(out, "--- %s %s (did not end):\n%s", name, t, tail(lines, 100))
	}
	fmt.Fprintf(out, "--- %s (outside any test):\n%s", name, tail(p.output, 200))
	p.tests, p.output = nil, nil
}

func tail(lines []string, n int) string {
	if len(lines) > n {
		lines = append([]string{fmt.Sprintf("… %d lines before\n", len(lines)-n)}, lines[len(lines)-n:]...)
	}
	return strings.Join(lines, "")
}

func summary(out io.Writer, pkgs map[string]*pkgState, order []string, slow []testTime) {
	sort.SliceStable(order, func(i, j int) bool { return pkgs[order[i]].elapsed > pkgs[order[j]].elapsed })
	fmt.Fprintln(out, "\ntime per package (slowest first):")
	for _, name := range order {
		if p := pkgs[name]; p.elapsed >= 1 {
			fmt.Fprintf(out, "  %7.1fs  %s\n", p.elapsed, name)
		}
	}
	sort.Slice(slow, func(i, j int) bool { return slow[i].elapsed > slow[j].elapsed })
	if len(slow) > 15 {
		slow = slow[:15]
	}
	fmt.Fprintln(out, "slowest tests:")
	for _, s := range slow {
		fmt.Fprintf(out, "  %7.1fs  %s\n", s.elapsed, s.name)
	}
}

// slowestFirst orders pkgs (import paths or ./dirs) by how long each took
// in the go test -json stream in file, slowest first; those not in it come
// first. A missing or unreadable file leaves the order as it is.
func slowestFirst(file string, pkgs []string) []string {
	took := map[string]float64{}
	if f, err := os.Open(file); err == nil {
		defer f.Close()
		sc := bufio.NewScanner(f)
		sc.Buffer(make([]byte, 1<<20), 16<<20)
		for sc.Scan() {
			var e event
			if json.Unmarshal(sc.Bytes(), &e) == nil && e.Test == "" && (e.Action == "pass" || e.Action == "fail") {
				took[e.Package] = e.Elapsed
			}
		}
	}
	key := func(p string) float64 {
		for name, t := range took {
			if name == p || strings.HasSuffix(name, strings.TrimPrefix(p, ".")) {
				return t
			}
		}
		return 1e9
	}
	out := append([]string(nil), pkgs...)
	sort.SliceStable(out, func(i, j int) bool { return key(out[i]) > key(out[j]) })
	return out
}
