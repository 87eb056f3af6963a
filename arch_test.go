package main

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestArchitecture enforces ARCHITECTURE.md's rules that a linter cannot:
// integrations are plain Go (no protoactor, no Pebble, no bare go
// statements outside the safe helper) and only queue/ touches Pebble.
func TestArchitecture(t *testing.T) {
	const (
		protoactor = "github.com/asynkron/protoactor-go"
		pebble     = "github.com/cockroachdb/pebble"
	)
	fset := token.NewFileSet()
	err := filepath.WalkDir(".", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if strings.HasPrefix(d.Name(), ".") && path != "." || d.Name() == "testdata" {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") {
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, parser.ImportsOnly|parser.ParseComments)
		if err != nil {
			return err
		}
		dir := filepath.ToSlash(filepath.Dir(path))
		test := strings.HasSuffix(path, "_test.go")
		inIntegrations := dir == "integrations" || strings.HasPrefix(dir, "integrations/")
		for _, imp := range f.Imports {
			p, _ := strconv.Unquote(imp.Path.Value)
			if inIntegrations && !test && (strings.HasPrefix(p, protoactor) || strings.HasPrefix(p, pebble)) {
				t.Errorf("%s imports %s: integrations are plain Go; the actors package runs them", path, p)
			}
			if strings.HasPrefix(p, pebble) && dir != "queue" && !test {
				t.Errorf("%s imports %s: only queue/ may use Pebble (one writer)", path, p)
			}
		}
		if inIntegrations && !test && path != filepath.FromSlash("integrations/safe.go") {
			full, err := parser.ParseFile(fset, path, nil, 0)
			if err != nil {
				return err
			}
			ast.Inspect(full, func(n ast.Node) bool {
				if g, ok := n.(*ast.GoStmt); ok {
					t.Errorf("%s: bare go statement: a panic there kills the agent; use integrations.Group", fset.Position(g.Pos()))
				}
				return true
			})
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
