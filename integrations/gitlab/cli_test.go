package gitlab

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"courier/internal/exporttest"
)

var (
	binOnce sync.Once
	binPath string
	binErr  error
)

// courier is the binary under test: $COURIER_BIN (make test), or one
// built once for this package's tests.
func courier(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("end-to-end test: runs the courier binary")
	}
	binOnce.Do(func() {
		if binPath = os.Getenv("COURIER_BIN"); binPath != "" {
			return
		}
		dir, err := os.MkdirTemp("", "courier-gitlab-bin-")
		if err != nil {
			binErr = err
			return
		}
		binPath = filepath.Join(dir, "courier")
		_, self, _, _ := runtime.Caller(0)
		cmd := exec.Command("go", "build", "-o", binPath, ".")
		cmd.Dir = filepath.Join(filepath.Dir(self), "..", "..")
		if out, err := cmd.CombinedOutput(); err != nil {
			binErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if binErr != nil {
		t.Fatal(binErr)
	}
	return binPath
}

// childEnv: no COURIER_* overrides, and a proxy that refuses everything
// but loopback (git's curl proxies loopback unless no_proxy says not to).
func childEnv() []string {
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
		"NO_PROXY=127.0.0.1", "no_proxy=127.0.0.1")
}

func runCLI(t *testing.T, root string, args ...string) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, courier(t), append([]string{"--root", root, "--log-format", "json"}, args...)...)
	cmd.Env = childEnv()
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case ctx.Err() != nil:
		t.Fatalf("courier %v did not finish", args)
	case errors.As(err, &ee):
		return ee.ExitCode(), out.String()
	case err != nil:
		t.Fatal(err)
	}
	return 0, out.String()
}

// The CLI validates and onboards against the fake; an export killed with
// SIGKILL part-way and run again holds every record: no gap.
func TestCLIValidateOnboardAndKill9(t *testing.T) {
	bin := courier(t)
	defer func(n int64) { pageSize = n }(pageSize)
	pageSize = 2
	f := newFake(t)
	w := build(f)
	dir := t.TempDir()
	root := filepath.Join(dir, "root")
	cfg := filepath.Join(dir, "gitlab.yaml")
	body := fmt.Sprintf("url: %s\ntoken: %s\ngroups: [acme]\nusers: [bob]\n", f.url(), f.token)
	if err := os.WriteFile(cfg, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	if code, out := runCLI(t, root, "validate-config", "--integration", "gitlab", "--config", cfg); code != 0 || !strings.Contains(out, `"valid": true`) {
		t.Fatalf("validate-config: exit %d\n%s", code, out)
	}
	onb := filepath.Join(dir, "repos.ndjson")
	if code, out := runCLI(t, root, "export-onboard-data", "--integration", "gitlab", "--config", cfg, "--object-type", "repos", "--output", onb); code != 0 {
		t.Fatalf("export-onboard-data: exit %d\n%s", code, out)
	}
	if b, _ := os.ReadFile(onb); !strings.Contains(string(b), "acme/platform/api") || !strings.Contains(string(b), "bob/notes") {
		t.Fatalf("onboarded repos:\n%s", b)
	}

	// The first export stops answering at the notes of bob/notes's issue,
	// once api's records are on disk, and is killed there.
	hit := make(chan struct{})
	release := make(chan struct{})
	var once sync.Once
	defer once.Do(func() { close(release) })
	f.fault(func(rw http.ResponseWriter, req *http.Request) bool {
		if strings.HasSuffix(req.URL.Path, fmt.Sprintf("/projects/%d/issues/1/notes", w.nts.id)) {
			select {
			case hit <- struct{}{}:
			default:
			}
			<-release
		}
		return false
	})
	cmd := exec.Command(bin, "--root", root, "--log-format", "json", "export", "--integration", "gitlab", "--config", cfg)
	cmd.Env = childEnv()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-hit:
	case <-time.After(2 * time.Minute):
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		t.Fatal("the export never reached bob/notes's issue notes")
	}
	exports := filepath.Join(root, "exports")
	deadline := time.Now().Add(time.Minute)
	for len(exporttest.DirIDs(t, exports, "gitlab")) == 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	_ = cmd.Process.Kill() // SIGKILL
	_ = cmd.Wait()
	before := len(exporttest.DirIDs(t, exports, "gitlab"))
	f.fault(nil)
	once.Do(func() { close(release) })
	want := f.want(t, w)
	if before == 0 || before >= len(want) {
		t.Fatalf("killed with %d of %d records on disk: not part-way", before, len(want))
	}
	if code, out := runCLI(t, root, "export", "--integration", "gitlab", "--config", cfg); code != 0 {
		t.Fatalf("second run: exit %d\n%s", code, out)
	}
	got := exporttest.DirIDs(t, exports, "gitlab")
	for id := range want {
		if got[id] == 0 {
			t.Errorf("record %s missing after kill -9 and a second run (%d on disk before it)", id, before)
		}
	}
	if b, err := os.ReadFile(filepath.Join(root, "logs", "integrations", "gitlab")); err == nil && strings.Contains(string(b), f.token) {
		t.Error("the token is in the integration's log")
	}
}
