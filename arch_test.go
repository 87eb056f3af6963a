package main

import (
	"bytes"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestArchitecture enforces docs/architecture.md's rules that a linter cannot:
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

// TestStandsAlone keeps the repository self-contained: a clone with nothing
// beside it must build, test and explain itself, so no tracked file may
// point outside it at a sibling folder.
func TestStandsAlone(t *testing.T) {
	out, err := exec.Command("git", "ls-files", "-z").Output()
	if err != nil {
		t.Skipf("not a git checkout: %v", err)
	}
	outside := []byte("../" + "shared")
	for _, name := range strings.Split(strings.TrimRight(string(out), "\x00"), "\x00") {
		b, err := os.ReadFile(name)
		if err != nil {
			continue // deleted in the work tree
		}
		if bytes.Contains(b, outside) {
			t.Errorf("%s refers to %s: the repository must stand alone (docs/ and testdata/ hold what it needs)", name, outside)
		}
	}
}
