package git

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"time"
)

// stderrTail is how much of git's stderr is kept for an error message.
const stderrTail = 8 << 10

// gitEnv is the environment of every git process: the agent's own, less
// what would point git at another repository, with prompts off (a prompt
// would hang an unattended export) and messages in English.
func gitEnv() []string {
	drop := map[string]bool{
		"GIT_DIR": true, "GIT_WORK_TREE": true, "GIT_INDEX_FILE": true, "GIT_OBJECT_DIRECTORY": true,
		"GIT_ALTERNATE_OBJECT_DIRECTORIES": true, "GIT_NAMESPACE": true, "GIT_COMMON_DIR": true,
		"GIT_TERMINAL_PROMPT": true, "GIT_NO_REPLACE_OBJECTS": true, "LC_ALL": true, "GIT_PAGER": true,
	}
	var env []string
	sshSet := false
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if drop[k] {
			continue
		}
		if k == "GIT_SSH_COMMAND" || k == "GIT_SSH" {
			sshSet = true
		}
		env = append(env, kv)
	}
	env = append(env, "GIT_TERMINAL_PROMPT=0", "GIT_NO_REPLACE_OBJECTS=1", "LC_ALL=C", "GIT_PAGER=cat")
	if !sshSet {
		// ssh would otherwise ask for a password or a host key on a tty.
		env = append(env, "GIT_SSH_COMMAND=ssh -o BatchMode=yes")
	}
	return env
}

// gitCmd is one git invocation.
type gitCmd struct {
	// dir is the process's working folder ("" = the agent's).
	dir  string
	args []string
	// stdin, when set, is the process's standard input.
	stdin io.Reader
	// secrets are scrubbed from error messages.
	secrets []string
	// onStderr is called when git writes to stderr (its progress meter):
	// proof of life for the stall watchdog. It must be safe for use from
	// another goroutine.
	onStderr func()
	// config is git configuration for this process only, passed through
	// the environment (GIT_CONFIG_COUNT, git >= 2.31) rather than "-c" so
	// that a credential in it never shows in the process list.
	config [][2]string
}

// GitError is a git command that failed: which subcommand, how, and the
// end of what it said, with credentials scrubbed.
type GitError struct {
	Cmd    string // "fetch", "ls-remote", ...
	Err    error
	Stderr string
}

func (e *GitError) Error() string {
	if e.Stderr == "" {
		return fmt.Sprintf("git %s: %v", e.Cmd, e.Err)
	}
	return fmt.Sprintf("git %s: %v: %s", e.Cmd, e.Err, e.Stderr)
}

func (e *GitError) Unwrap() error { return e.Err }

// subcommand names the command in messages: the first argument that is
// neither an option nor the value of -c or -C (a -c value may hold a
// credential).
func (c gitCmd) subcommand() string {
	for i := 0; i < len(c.args); i++ {
		switch a := c.args[i]; {
		case a == "-c" || a == "-C":
			i++
		case !strings.HasPrefix(a, "-"):
			return a
		}
	}
	return "?"
}

func (c gitCmd) command(ctx context.Context, stderr io.Writer) *exec.Cmd {
	cmd := exec.CommandContext(ctx, "git", c.args...)
	cmd.Dir = c.dir
	cmd.Env = gitEnv()
	if len(c.config) > 0 {
		cmd.Env = append(cmd.Env, "GIT_CONFIG_COUNT="+strconv.Itoa(len(c.config)))
		for i, kv := range c.config {
			n := strconv.Itoa(i)
			cmd.Env = append(cmd.Env, "GIT_CONFIG_KEY_"+n+"="+kv[0], "GIT_CONFIG_VALUE_"+n+"="+kv[1])
		}
	}
	cmd.Stdin = c.stdin
	cmd.Stderr = stderr
	// Pipes held open by a grandchild (ssh, remote helpers) must not hang
	// Wait after the kill.
	cmd.WaitDelay = 5 * time.Second
	killGroupOnCancel(cmd)
	return cmd
}

// output runs the command and returns its stdout.
func (c gitCmd) output(ctx context.Context) ([]byte, error) {
	tail := &tailWriter{max: stderrTail, touch: c.onStderr}
	cmd := c.command(ctx, tail)
	var out bytes.Buffer
	cmd.Stdout = &out
	if err := cmd.Run(); err != nil {
		return out.Bytes(), c.fail(ctx, err, tail)
	}
	return out.Bytes(), nil
}

// fail turns a failed run into a *GitError, or into the context's error
// when the run was cancelled.
func (c gitCmd) fail(ctx context.Context, err error, tail *tailWriter) error {
	if ctx.Err() != nil {
		return fmt.Errorf("git %s: %w", c.subcommand(), context.Cause(ctx))
	}
	if errors.Is(err, exec.ErrNotFound) {
		return &GitError{Cmd: c.subcommand(), Err: errors.New("the git program was not found on PATH")}
	}
	return &GitError{Cmd: c.subcommand(), Err: err, Stderr: redactText(tail.message(), c.secrets)}
}

// gitProc is a running git whose stdout is read as a stream.
type gitProc struct {
	c      gitCmd
	ctx    context.Context
	cancel context.CancelFunc
	cmd    *exec.Cmd
	tail   *tailWriter
	Stdout io.ReadCloser
}

// start runs the command with its stdout as a stream. Call wait once done
// reading (or stop to abandon it).
func (c gitCmd) start(ctx context.Context) (*gitProc, error) {
	ctx, cancel := context.WithCancel(ctx)
	tail := &tailWriter{max: stderrTail, touch: c.onStderr}
	cmd := c.command(ctx, tail)
	out, err := cmd.StdoutPipe()
	if err != nil {
		cancel()
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		cancel()
		return nil, c.fail(ctx, err, tail)
	}
	return &gitProc{c: c, ctx: ctx, cancel: cancel, cmd: cmd, tail: tail, Stdout: out}, nil
}

// wait waits for a process whose stdout was read to its end.
func (p *gitProc) wait() error {
	defer p.cancel()
	if err := p.cmd.Wait(); err != nil {
		return p.c.fail(p.ctx, err, p.tail)
	}
	return nil
}

// stop kills the process and reaps it.
func (p *gitProc) stop() {
	p.cancel()
	_ = p.cmd.Wait()
}

// tailWriter keeps the last max bytes written to it. Writes come from
// os/exec's copying goroutine; message is read after Wait.
type tailWriter struct {
	max   int
	touch func()
	mu    sync.Mutex
	buf   []byte
}

func (t *tailWriter) Write(p []byte) (int, error) {
	t.mu.Lock()
	t.buf = append(t.buf, p...)
	if len(t.buf) > 2*t.max {
		t.buf = append(t.buf[:0], t.buf[len(t.buf)-t.max:]...)
	}
	t.mu.Unlock()
	if t.touch != nil {
		t.touch()
	}
	return len(p), nil
}

// message is the part of stderr worth showing: the "fatal:"/"error:" lines
// when there are any, otherwise the last line; progress meters (lines
// ended by \r) are left out.
func (t *tailWriter) message() string {
	t.mu.Lock()
	s := string(t.buf)
	t.mu.Unlock()
	var lines, important []string
	for _, l := range strings.FieldsFunc(s, func(r rune) bool { return r == '\n' || r == '\r' }) {
		l = strings.TrimSpace(l)
		if l == "" || isProgressLine(l) {
			continue
		}
		lines = append(lines, l)
		if strings.HasPrefix(l, "fatal:") || strings.HasPrefix(l, "error:") || strings.HasPrefix(l, "ERROR:") {
			important = append(important, l)
		}
	}
	if len(important) == 0 && len(lines) > 0 {
		important = lines[len(lines)-1:]
	}
	msg := strings.Join(important, "; ")
	if len(msg) > 1000 {
		msg = msg[:1000] + "..."
	}
	return msg
}

func isProgressLine(l string) bool {
	for _, p := range []string{"remote: Counting", "remote: Compressing", "remote: Enumerating", "remote: Total",
		"Receiving objects", "Resolving deltas", "Counting objects", "Compressing objects", "Enumerating objects",
		"Checking connectivity", "Updating files", "Unpacking objects", "From ", "Cloning into", "remote: Finding sources"} {
		if strings.HasPrefix(l, p) {
			return true
		}
	}
	return strings.HasPrefix(l, " ") || strings.HasPrefix(l, "+ ") || strings.HasPrefix(l, "* ") || strings.HasPrefix(l, "- [")
}
