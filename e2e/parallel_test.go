package e2e

import (
	"go/ast"
	"go/parser"
	"go/token"
	"path/filepath"
	"strings"
	"testing"

	"berth.dev/berth/internal/testenv"
)

// Every test of this package calls testenv.Parallel(t) first: a test that
// does not runs alone before all the others (Go runs a package's
// sequential tests first; three of them once held the whole suite up by
// 290 s), and a plain t.Parallel() would run beside any number of others
// (LongestFirst lifts Go's limit: testenv.Parallel keeps it).
func TestE2E_EveryTestRunsInParallel(t *testing.T) {
	testenv.Parallel(t)
	files, err := filepath.Glob("*_test.go")
	if err != nil {
		t.Fatal(err)
	}
	fset := token.NewFileSet()
	for _, f := range files {
		af, err := parser.ParseFile(fset, f, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range af.Decls {
			fn, ok := d.(*ast.FuncDecl)
			if !ok || fn.Recv != nil || !strings.HasPrefix(fn.Name.Name, "Test") || fn.Name.Name == "TestMain" || fn.Body == nil || len(fn.Body.List) == 0 {
				continue
			}
			if !callsParallel(fn.Body.List[0]) {
				t.Errorf("%s: %s does not call testenv.Parallel(t) first", fset.Position(fn.Pos()), fn.Name.Name)
			}
		}
	}
}

// callsParallel: s is testenv.Parallel(…).
func callsParallel(s ast.Stmt) bool {
	es, ok := s.(*ast.ExprStmt)
	if !ok {
		return false
	}
	call, ok := es.X.(*ast.CallExpr)
	if !ok {
		return false
	}
	sel, ok := call.Fun.(*ast.SelectorExpr)
	if !ok || sel.Sel.Name != "Parallel" {
		return false
	}
	pkg, ok := sel.X.(*ast.Ident)
	return ok && pkg.Name == "testenv"
}
