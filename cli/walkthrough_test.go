package cli_test

import (
	"context"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"courier/backend/devserver"
)

// walkthrough is the sh block of README.md's "Try the whole loop on one
// machine", one command per entry (continuation lines joined, comments
// dropped): the test runs what the README shows, so the two cannot drift.
func walkthrough(t *testing.T, repo string) []string {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(repo, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(raw), "## Try the whole loop on one machine")
	if !ok {
		t.Fatal("README.md has no walk-through section")
	}
	_, rest, _ = strings.Cut(rest, "```sh\n")
	block, _, _ := strings.Cut(rest, "```")
	var cmds []string
	cur := ""
	for _, line := range strings.Split(block, "\n") {
		if strings.HasPrefix(strings.TrimSpace(line), "#") || strings.TrimSpace(line) == "" {
			continue
		}
		cur += line + "\n"
		// A command goes on while a single quote is open or a line ends in \.
		if strings.Count(cur, "'")%2 == 1 || strings.HasSuffix(line, "\\") {
			continue
		}
		cmds = append(cmds, strings.TrimSpace(cur))
		cur = ""
	}
	return cmds
}

func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	return port
}

// The README's walk-through, run as written against the dev backend. The
// only changes are where things live: the binary under test for
// ./bin/courier, temporary folders for /tmp/dev and /tmp/agent, free ports
// for 8080 and 8787 (tests run in parallel on one machine).
func TestREADMEWalkthrough(t *testing.T) {
	e2e(t)
	_, self, _, _ := runtime.Caller(0)
	repo := filepath.Dir(filepath.Dir(self))
	tmp := t.TempDir()
	backendPort, apiPort := freePort(t), freePort(t)
	rewrite := strings.NewReplacer(
		"./bin/courier", courierBin, "/tmp/dev", filepath.Join(tmp, "dev"), "/tmp/agent", filepath.Join(tmp, "agent"),
		":8080", ":"+backendPort, ":8787", ":"+apiPort,
	)
	cmds := walkthrough(t, repo)
	if len(cmds) < 6 {
		t.Fatalf("walk-through has %d commands: %q", len(cmds), cmds)
	}
	backendURL := "http://127.0.0.1:" + backendPort
	waitHTTP := func(url string) {
		t.Helper()
		deadline := time.Now().Add(startDeadline)
		for {
			resp, err := http.Get(url)
			if err == nil {
				resp.Body.Close()
				if resp.StatusCode < 500 {
					return
				}
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s did not answer within %s: %v", url, startDeadline, err)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	var posted int
	for _, raw := range cmds {
		line := rewrite.Replace(raw)
		if line == "make build" {
			continue // the binary under test is built already
		}
		if bg, ok := strings.CutSuffix(line, "&"); ok {
			cmd := exec.Command("bash", "-c", "exec "+strings.TrimSpace(bg))
			cmd.Dir = repo
			cmd.Env = childEnv()
			log := filepath.Join(tmp, "bg-"+freePort(t)+".log")
			f, err := os.Create(log)
			if err != nil {
				t.Fatal(err)
			}
			cmd.Stdout, cmd.Stderr = f, f
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			f.Close()
			t.Cleanup(func() {
				_ = cmd.Process.Signal(syscall.SIGTERM)
				done := make(chan struct{})
				go func() { _ = cmd.Wait(); close(done) }()
				select {
				case <-done:
				case <-time.After(exitDeadline):
					_ = cmd.Process.Kill()
					<-done
				}
				if t.Failed() {
					out, _ := os.ReadFile(log)
					t.Logf("%s:\n%s", bg, tailLines(string(out), 30))
				}
			})
			switch {
			case strings.Contains(bg, "dev-backend"):
				waitHTTP(backendURL + "/")
			case strings.Contains(bg, "service-run"):
				waitHTTP("http://127.0.0.1:" + apiPort + "/readyz")
			}
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), cliDeadline)
		cmd := exec.CommandContext(ctx, "bash", "-o", "pipefail", "-c", line)
		cmd.Dir = repo
		// curl, unlike Go, proxies loopback too unless told not to.
		cmd.Env = append(childEnv(), "no_proxy=127.0.0.1,localhost", "NO_PROXY=127.0.0.1,localhost")
		out, err := cmd.CombinedOutput()
		cancel()
		// head -c closes the pipe early: curl's exit 23 is the reader's doing.
		if err != nil && !(strings.Contains(line, "| head") && strings.Contains(err.Error(), "exit status 23")) {
			t.Fatalf("README command failed: %s\n%v\n%s", raw, err, out)
		}
		if strings.Contains(line, "/commands") {
			posted++
		}
		if strings.Contains(line, "/admin/results") || strings.Contains(line, "/admin/records") {
			// The agent runs commands in the background: the README's reads
			// show what has arrived so far. Wait for every command's result.
			admin := devserver.NewAdminClient(backendURL)
			deadline := time.Now().Add(deliverDeadline)
			for {
				res, err := admin.Results(context.Background(), "agt_1")
				if err == nil && len(res) == posted {
					for _, r := range res {
						if r.Status != "succeeded" {
							t.Fatalf("command %s: %s %s", r.CommandID, r.Status, r.Error)
						}
					}
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("results: %d of %d after %s (%v)", len(res), posted, deliverDeadline, err)
				}
				time.Sleep(100 * time.Millisecond)
			}
			admin.CloseIdleConnections()
		}
	}
	if posted < 3 {
		t.Fatalf("the walk-through posts %d commands; want export, validate-config and export-onboard-data", posted)
	}
	if !regexp.MustCompile(`\bagt_1\b`).MatchString(strings.Join(cmds, "\n")) {
		t.Fatal("walk-through does not name the agent")
	}
}
