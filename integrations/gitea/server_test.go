package gitea

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"courier/internal/exporttest"

	"go.uber.org/goleak"
)

// TestMain stops the Gitea server (if a test started one) before looking
// for leaked goroutines: its connections close with it.
func TestMain(m *testing.M) {
	code := m.Run()
	if err := srv.stop(); err != nil {
		fmt.Fprintln(os.Stderr, "stopping gitea:", err)
		code = 1
	}
	if code == 0 {
		// protoactor's dead-letter throttle parks a goroutine for one
		// throttle interval after a message reaches a stopped actor.
		if err := goleak.Find(exporttest.GoleakOptions()...); err != nil {
			fmt.Fprintln(os.Stderr, "goleak:", err)
			code = 1
		}
	}
	os.Exit(code)
}

// server is one real Gitea on loopback, shared by the tests of a run and
// started by the first that needs it.
type server struct {
	once  sync.Once
	err   error
	url   string
	token string

	script   string
	dir      string
	pid      int
	watchdog *exec.Cmd
}

var srv server

// gitea returns the server's URL and admin token, starting it on first
// use; a missing script fails the test (it never skips).
func gitea(t *testing.T) (url, token string) {
	t.Helper()
	srv.once.Do(func() { srv.err = srv.start() })
	if srv.err != nil {
		t.Fatalf("real Gitea server: %v", srv.err)
	}
	return srv.url, srv.token
}

// scriptPath is the project's own Gitea script, in this package's testdata
// (go test runs in the package's folder).
func scriptPath() (string, error) {
	p, err := filepath.Abs(filepath.Join("testdata", "gitea-server.sh"))
	if err != nil {
		return "", err
	}
	if _, err := os.Stat(p); err != nil {
		return "", fmt.Errorf("the script that builds and starts Gitea is expected at %s: %w", p, err)
	}
	return p, nil
}

func (s *server) start() error {
	script, err := scriptPath()
	if err != nil {
		return err
	}
	s.script = script
	if s.dir, err = os.MkdirTemp("", "courier-gitea-"); err != nil {
		return err
	}
	// The first build compiles Gitea (minutes); later ones are cached.
	t0 := time.Now()
	if err := s.run(30*time.Minute, "build"); err != nil {
		return err
	}
	if d := time.Since(t0); d > 5*time.Second {
		fmt.Fprintf(os.Stderr, "gitea-server.sh build took %s\n", d.Round(time.Second))
	}
	port, err := freePort()
	if err != nil {
		return err
	}
	if err := s.run(3*time.Minute, "start", s.dir, strconv.Itoa(port)); err != nil {
		return err
	}
	env, err := readEnv(filepath.Join(s.dir, "env"))
	if err != nil {
		return err
	}
	s.url, s.token = env["GITEA_URL"], env["GITEA_TOKEN"]
	if s.pid, err = strconv.Atoi(env["GITEA_PID"]); err != nil || s.url == "" || s.token == "" {
		return fmt.Errorf("%s/env lacks GITEA_URL, GITEA_TOKEN or GITEA_PID", s.dir)
	}
	// Should this test binary die before TestMain stops the server (a
	// panic, a timeout), the watchdog stops it and removes its data.
	s.watchdog = exec.Command("sh", "-c", `
		while kill -0 "$1" 2>/dev/null; do sleep 1; done
		kill "$2" 2>/dev/null
		i=0; while kill -0 "$2" 2>/dev/null && [ $i -lt 20 ]; do sleep 0.5; i=$((i+1)); done
		kill -9 "$2" 2>/dev/null; rm -rf "$3"`,
		"watchdog", strconv.Itoa(os.Getpid()), strconv.Itoa(s.pid), s.dir)
	s.watchdog.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	return s.watchdog.Start()
}

// run runs the script, its output into a log file in the data folder
// (a file, not a pipe: nothing waits on Gitea's inherited descriptors).
func (s *server) run(timeout time.Duration, args ...string) error {
	logf, err := os.OpenFile(filepath.Join(s.dir, "script.log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	defer logf.Close()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", append([]string{s.script}, args...)...)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Run(); err != nil {
		out, _ := os.ReadFile(logf.Name())
		return fmt.Errorf("%s %s: %v\n%s", s.script, strings.Join(args, " "), err, tail(string(out), 3000))
	}
	return nil
}

// stop stops the server and waits until its process is gone.
func (s *server) stop() error {
	if s.dir == "" {
		return nil
	}
	defer os.RemoveAll(s.dir)
	var errs []error
	if s.pid > 0 {
		if err := s.run(time.Minute, "stop", s.dir); err != nil {
			errs = append(errs, err)
		}
		if err := waitGone(s.pid, 15*time.Second); err != nil {
			_ = syscall.Kill(s.pid, syscall.SIGKILL)
			if err := waitGone(s.pid, 5*time.Second); err != nil {
				errs = append(errs, err)
			}
		}
	}
	if s.watchdog != nil && s.watchdog.Process != nil {
		// The whole group: its sleep too.
		_ = syscall.Kill(-s.watchdog.Process.Pid, syscall.SIGKILL)
		_ = s.watchdog.Wait()
	}
	return errors.Join(errs...)
}

// waitGone waits until pid no longer runs (gone, or a zombie that its new
// parent has yet to reap: Gitea is the script's child, not ours).
func waitGone(pid int, d time.Duration) error {
	deadline := time.Now().Add(d)
	for {
		if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
			return nil
		}
		if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid)); err == nil {
			if f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:])); len(f) > 0 && f[0] == "Z" {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("gitea (pid %d) still running after %s", pid, d)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func readEnv(path string) (map[string]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	out := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), "="); ok {
			out[k] = v
		}
	}
	return out, sc.Err()
}

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "..." + s[len(s)-n:]
}
