package cli_test

import (
	"bufio"
	"context"
	"os/exec"
	"path/filepath"
	"regexp"
	"syscall"
	"testing"
	"time"

	"courier/backend/devserver"
)

// The hidden dev-backend command is the README's walk-through: it must
// serve the backend API, accept its enroll code, and stop on SIGTERM.
func TestDevBackendCommand(t *testing.T) {
	root := e2e(t)
	cmd := exec.Command(courierBin, "--log-format", "json", "dev-backend", "--listen", "127.0.0.1:0",
		"--dir", filepath.Join(t.TempDir(), "dev"), "--enroll-code", "WALK-1")
	cmd.Env = childEnv()
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	defer func() {
		_ = cmd.Process.Kill()
		<-done
	}()
	urls := make(chan string, 1)
	go func() {
		re := regexp.MustCompile(`listening on (http://127\.0\.0\.1:\d+)`)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if m := re.FindStringSubmatch(sc.Text()); m != nil {
				urls <- m[1]
			}
		}
		done <- cmd.Wait()
	}()
	var url string
	select {
	case url = <-urls:
	case <-time.After(30 * time.Second):
		t.Fatal("dev-backend did not say where it listens")
	}
	if r := runCourier(t, root, "enroll", "WALK-1", "--backend-url", url, "--no-service"); r.code != 0 {
		t.Fatalf("enroll against dev-backend: %s", r)
	}
	admin := devserver.NewAdminClient(url)
	defer admin.CloseIdleConnections()
	agents, err := admin.Agents(context.Background())
	if err != nil || len(agents) != 1 {
		t.Fatalf("agents: %v %v", agents, err)
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		done <- err // for the deferred wait
		if err != nil {
			t.Fatalf("dev-backend after SIGTERM: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("dev-backend did not stop on SIGTERM")
	}
}
