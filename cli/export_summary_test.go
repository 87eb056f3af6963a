package cli_test

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

// bgCourier is a courier command running in the background, its output in
// files (no copying goroutines).
type bgCourier struct {
	cmd            *exec.Cmd
	stdout, stderr string
	done           chan struct{}
}

func startCourier(t *testing.T, root string, args ...string) *bgCourier {
	t.Helper()
	dir := t.TempDir()
	b := &bgCourier{stdout: filepath.Join(dir, "stdout"), stderr: filepath.Join(dir, "stderr"), done: make(chan struct{})}
	out, err := os.Create(b.stdout)
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	errf, err := os.Create(b.stderr)
	if err != nil {
		t.Fatal(err)
	}
	defer errf.Close()
	b.cmd = exec.Command(courierBin, append([]string{"--root", root, "--log-format", "json"}, args...)...)
	b.cmd.Env = childEnv()
	b.cmd.Stdout, b.cmd.Stderr = out, errf
	if err := b.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { _ = b.cmd.Wait(); close(b.done) }()
	t.Cleanup(func() {
		_ = b.cmd.Process.Kill()
		<-b.done
	})
	return b
}

func (b *bgCourier) output() (stdout, stderr string) {
	o, _ := os.ReadFile(b.stdout)
	e, _ := os.ReadFile(b.stderr)
	return string(o), string(e)
}

// waitUntil polls cond until it holds, failing if the command exits first.
func (b *bgCourier) waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(cliDeadline)
	for !cond() {
		select {
		case <-b.done:
			o, e := b.output()
			t.Fatalf("courier exited (%d) before %s\nstdout:\n%s\nstderr:\n%s", b.cmd.ProcessState.ExitCode(), what, o, tailLines(e, 20))
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not happen within %s", what, cliDeadline)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// interrupt sends SIGINT, as Ctrl-C does, and returns the exit code.
func (b *bgCourier) interrupt(t *testing.T) int {
	t.Helper()
	if err := b.cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	select {
	case <-b.done:
	case <-time.After(exitDeadline):
		t.Fatalf("courier did not exit within %s of SIGINT", exitDeadline)
	}
	return b.cmd.ProcessState.ExitCode()
}

// ndjsonLines counts the records written under dir.
func ndjsonLines(dir string) int {
	files, _ := filepath.Glob(filepath.Join(dir, "*.ndjson"))
	n := 0
	for _, f := range files {
		b, _ := os.ReadFile(f)
		n += bytes.Count(b, []byte("\n"))
	}
	return n
}

// Ctrl-C while an integration runs: the summary says what was exported and
// what is on disk, and the command exits 130 (128 + SIGINT), as a shell
// reports a command that Ctrl-C stopped.
func TestExportInterruptedPrintsSummary(t *testing.T) {
	root := e2e(t)
	// The export sends 300 records one by one (delay_ms), then waits to be
	// cancelled.
	cfg := writeFile(t, t.TempDir(), "syn.yaml", "orgs: 1\nrepos_per_org: 1\nitems_per_repo: 1000\nhang_after: 300\ndelay_ms: 1\n")
	b := startCourier(t, root, "export", "-i", "synthetic", "-c", cfg)
	out := filepath.Join(root, "exports", "synthetic")
	b.waitUntil(t, "300 records on disk", func() bool { return ndjsonLines(out) == 300 })
	code := b.interrupt(t)
	stdout, stderr := b.output()
	if code != 130 {
		t.Errorf("exit %d after SIGINT, want 130", code)
	}
	for _, want := range []string{"INTEGRATION", "synthetic", "cancelled", "300 (item 300)", "300 records written under " + filepath.Join(root, "exports")} {
		if !strings.Contains(stdout, want) {
			t.Errorf("the summary lacks %q:\n%s", want, stdout)
		}
	}
	if !strings.Contains(stderr, "interrupted by SIGINT") {
		t.Errorf("stderr does not say it was interrupted:\n%s", tailLines(stderr, 5))
	}
}

// Ctrl-C while the records are being written (here: they cannot be, the
// output is a file): the summary still comes, with what is left queued and
// why; the next run with the same id writes them and says so, although it
// exports nothing new.
func TestExportInterruptedWhileWritingPrintsSummary(t *testing.T) {
	root := e2e(t)
	cfg := writeFile(t, t.TempDir(), "syn.yaml", "orgs: 1\nrepos_per_org: 1\nitems_per_repo: 20\n")
	notDir := writeFile(t, t.TempDir(), "not-a-folder", "")
	b := startCourier(t, root, "export", "-i", "synthetic", "-c", cfg, "--output", notDir)
	b.waitUntil(t, "the export to finish and the sink to fail", func() bool {
		_, e := b.output()
		return strings.Contains(e, `"integration finished"`) || strings.Contains(e, `"message":"integration finished"`)
	})
	code := b.interrupt(t)
	stdout, _ := b.output()
	if code != 130 {
		t.Errorf("exit %d after SIGINT, want 130", code)
	}
	for _, want := range []string{"succeeded", "20 (item 20)", "no records written\n", "export/synthetic: 20 records queued, not yet written"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("the summary lacks %q:\n%s", want, stdout)
		}
	}
	if strings.Contains(stdout, "nothing new") {
		t.Errorf("the summary blames the source for records the sink did not write:\n%s", stdout)
	}

	r := runCourier(t, root, "export", "-i", "synthetic", "-c", cfg)
	if r.code != 0 {
		t.Fatalf("second run: %s", r)
	}
	if !strings.Contains(r.stdout, "20 records written under "+filepath.Join(root, "exports")) || ndjsonLines(filepath.Join(root, "exports", "synthetic")) != 20 {
		t.Fatalf("the second run should write the 20 queued records and say so:\n%s", r)
	}
}

// "records written" counts what reached the folder in this run: none after
// a failed export (and not "nothing new": the export failed), none after an
// export with nothing new.
func TestExportSummarySaysWhatWasWritten(t *testing.T) {
	root := e2e(t)
	dir := t.TempDir()
	bad := writeFile(t, dir, "bad.yaml", "repos:\n  - "+filepath.Join(dir, "no-such-repo")+"\n")
	r := runCourier(t, root, "export", "-i", "git", "-c", bad)
	if r.code != 1 {
		t.Fatalf("export of a missing repo: %s", r)
	}
	if !strings.Contains(r.stdout, "\nno records written\n") || strings.Contains(r.stdout, "records written under") || strings.Contains(r.stdout, "nothing new") {
		t.Fatalf("a failed export that wrote nothing:\n%s", r)
	}

	cfg := writeFile(t, dir, "syn.yaml", "orgs: 1\nrepos_per_org: 1\nitems_per_repo: 5\n")
	if r := runCourier(t, root, "export", "-i", "synthetic", "-c", cfg); r.code != 0 || !strings.Contains(r.stdout, "5 records written under") {
		t.Fatalf("first synthetic run: %s", r)
	}
	r = runCourier(t, root, "export", "-i", "synthetic", "-c", cfg)
	if r.code != 0 || !strings.Contains(r.stdout, "no records written: nothing new since the last export") || strings.Contains(r.stdout, "records written under") {
		t.Fatalf("second synthetic run, nothing new: %s", r)
	}
}

// The bars end with the real count of the session they showed: a repo of
// 300 items ended as 297/297 when the last tick before the end had read
// 297 of 300. The bars are drawn on a terminal only, so the binary runs
// under script(1), which gives it one.
func TestExportProgressBarsEndWithTheRealCount(t *testing.T) {
	root := e2e(t)
	scriptBin, err := exec.LookPath("script")
	if err != nil {
		t.Fatal("this test runs courier on a terminal with script(1): install util-linux's script (Debian: bsdutils)")
	}
	cfg := writeFile(t, t.TempDir(), "syn.yaml", "orgs: 1\nrepos_per_org: 1\nitems_per_repo: 300\ndelay_ms: 3\n")
	quote := func(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }
	// A pty made by script has no size; mpb draws nothing at width 0.
	line := "stty cols 120 rows 40; exec " + strings.Join([]string{quote(courierBin), "--root", quote(root), "export", "-i", "synthetic", "-c", quote(cfg)}, " ")
	ctx, cancel := context.WithTimeout(t.Context(), cliDeadline)
	defer cancel()
	cmd := exec.CommandContext(ctx, scriptBin, "-qec", line, "/dev/null")
	cmd.Env = append(childEnv(), "NO_COLOR=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("courier under script: %v\n%s", err, out)
	}
	counts := regexp.MustCompile(`item\s+(\d+)/(\d+)`).FindAllSubmatch(out, -1)
	if len(counts) == 0 {
		t.Fatalf("no progress bar for the item session in:\n%q", out)
	}
	last := counts[len(counts)-1]
	if string(last[1]) != "300" || string(last[2]) != "300" {
		t.Fatalf("the item bar ended as %s/%s, want 300/300", last[1], last[2])
	}
}

// An integration's log keeps the run before as <id>.1, as a command's log
// does: the log of an export that went wrong survives the next one.
func TestIntegrationLogKeepsThePreviousRun(t *testing.T) {
	root := e2e(t)
	cfg := writeFile(t, t.TempDir(), "syn.yaml", "orgs: 1\nrepos_per_org: 1\nitems_per_repo: 3\n")
	if r := runCourier(t, root, "export", "-i", "synthetic", "-c", cfg); r.code != 0 {
		t.Fatalf("first export: %s", r)
	}
	ilog := filepath.Join(root, "logs", "integrations", "synthetic")
	first, err := os.ReadFile(ilog)
	if err != nil || len(first) == 0 {
		t.Fatalf("the first run's integration log: %v (%d bytes)", err, len(first))
	}
	if r := runCourier(t, root, "export", "-i", "synthetic", "-c", cfg); r.code != 0 {
		t.Fatalf("second export: %s", r)
	}
	kept, err := os.ReadFile(ilog + ".1")
	if err != nil || !bytes.Equal(kept, first) {
		t.Fatalf("%s.1 should hold the first run's log (%v):\n%s", ilog, err, kept)
	}
	if now, _ := os.ReadFile(ilog); bytes.Equal(now, first) || len(now) == 0 {
		t.Fatalf("%s should hold the second run's log", ilog)
	}
	if _, err := os.Stat(filepath.Join(root, "logs", "export.1")); err != nil {
		t.Fatalf("the command's log keeps its previous run too: %v", err)
	}
}

// DELIVERED (1H) lives in the running process and starts from 0 at every
// start (documented, not persisted): status says so while the process is
// younger than the hour the column names.
func TestStatusSaysDeliveredCountsSinceStart(t *testing.T) {
	root := e2e(t)
	initRoot(t, root)
	up := newFakeUpstream(t)
	svc := startServiceRun(t, root, up)
	defer svc.terminate()
	r := runCourier(t, root, "status")
	if r.code != 0 || !strings.Contains(r.stdout, "DELIVERED (1H)") || !strings.Contains(r.stdout, "delivered (1h) counts from this service-run's start") ||
		!strings.Contains(r.stdout, "starts from 0 at every start") {
		t.Fatalf("status of a young service-run: %s", r)
	}
}

// -i keeps both documented meanings (export's --integration, pd-send's
// --incident-key in send), and each help says so; export's help says what
// it does on an enrolled root.
func TestShortFlagIAndExportHelp(t *testing.T) {
	root := e2e(t)
	if r := runCourier(t, root, "export", "--help"); r.code != 0 || !strings.Contains(r.stdout, "also on an enrolled root") ||
		!strings.Contains(r.stdout, "never\n   uploads to the backend") || !strings.Contains(r.stdout, "in send, -i is --incident-key") {
		t.Fatalf("export --help: %s", r)
	}
	if r := runCourier(t, root, "send", "--help"); r.code != 0 || !strings.Contains(r.stdout, "in export, -i is --integration") {
		t.Fatalf("send --help: %s", r)
	}
	initRoot(t, root)
	up := newFakeUpstream(t)
	svc := startServiceRun(t, root, up)
	defer svc.terminate()
	key := routingKeys(t, 1)[0]
	if r := runCourier(t, root, "send", "-k", key, "-t", "resolve", "-i", "srv01/mysql"); r.code != 0 {
		t.Fatalf("send -i: %s", r)
	}
	arr := up.waitFor(t, "the resolve", func(a []arrival) bool { return len(a) >= 1 })
	if arr[0].event.DedupKey != "srv01/mysql" || arr[0].event.EventAction != "resolve" {
		t.Fatalf("send -i reached the upstream as %s", arr[0].body)
	}
	cfg := writeFile(t, t.TempDir(), "syn.yaml", "orgs: 1\nrepos_per_org: 1\nitems_per_repo: 2\n")
	if r := runCourier(t, t.TempDir(), "export", "-i", "synthetic", "-c", cfg); r.code != 0 || !strings.Contains(r.stdout, "2 records written") {
		t.Fatalf("export -i: %s", r)
	}
}
