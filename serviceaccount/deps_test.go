package serviceaccount_test

import (
	"go/parser"
	"go/token"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// The package imports the standard library and middleware alone, so that a Go service
// can use it without building YAML, CEL or Kubernetes' client libraries.
func TestImportsStaySmall(t *testing.T) {
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(token.NewFileSet(), name, nil, parser.ImportsOnly)
		if err != nil {
			t.Fatal(err)
		}
		for _, imp := range f.Imports {
			path, _ := strconv.Unquote(imp.Path.Value)
			first, _, _ := strings.Cut(path, "/")
			if strings.Contains(first, ".") && path != "github.com/tokengate/tokengate/middleware" {
				t.Errorf("%s imports %s", name, path)
			}
		}
		n++
	}
	if n < 3 {
		t.Fatalf("read %d files", n)
	}
}
