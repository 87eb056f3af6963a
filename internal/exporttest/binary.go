package exporttest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
)

var bin struct {
	once sync.Once
	path string
	err  error
}

// Binary is the courier binary for an integration's end-to-end tests:
// $COURIER_BIN (make test sets it) or one built once per test process.
// Under -short the test is skipped: end-to-end tests are the slow part.
func Binary(t testing.TB) string {
	t.Helper()
	if testing.Short() {
		t.Skip("end-to-end test: runs the courier binary")
	}
	bin.once.Do(func() {
		if bin.path = os.Getenv("COURIER_BIN"); bin.path != "" {
			return
		}
		dir, err := os.MkdirTemp("", "courier-bin-")
		if err != nil {
			bin.err = err
			return
		}
		bin.path = filepath.Join(dir, "courier")
		_, self, _, _ := runtime.Caller(0)
		cmd := exec.Command("go", "build", "-o", bin.path, ".")
		cmd.Dir = filepath.Join(filepath.Dir(self), "..", "..")
		if out, err := cmd.CombinedOutput(); err != nil {
			bin.err = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if bin.err != nil {
		t.Fatal(bin.err)
	}
	return bin.path
}

// ChildEnv is the environment of a courier started by a test: no COURIER_*
// overrides, and every proxy pointed at a closed port so that only loopback
// is reached. NO_PROXY names loopback because git's curl, unlike Go,
// proxies loopback unless told not to.
func ChildEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(name, "COURIER_") || strings.Contains(strings.ToUpper(name), "PROXY") {
			continue
		}
		env = append(env, kv)
	}
	const nowhere = "http://127.0.0.1:9"
	return append(env, "HTTP_PROXY="+nowhere, "HTTPS_PROXY="+nowhere, "http_proxy="+nowhere, "https_proxy="+nowhere,
		"NO_PROXY=127.0.0.1,localhost", "no_proxy=127.0.0.1,localhost")
}
