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
	"strings"
	"sync"
	"testing"
	"time"

	"courier/internal/exporttest"
)

func runCLI(t *testing.T, root string, args ...string) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, exporttest.Binary(t), append([]string{"--root", root, "--log-format", "json"}, args...)...)
	cmd.Env = exporttest.ChildEnv()
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
	bin := exporttest.Binary(t)
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
	cmd.Env = exporttest.ChildEnv()
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
