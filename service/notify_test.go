package service

import (
	"bytes"
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

// listenNotify stands in for systemd: a unixgram socket named by
// NOTIFY_SOCKET for the rest of the test.
func listenNotify(t *testing.T) *net.UnixConn {
	t.Helper()
	path := filepath.Join(t.TempDir(), "notify.sock")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	t.Setenv("NOTIFY_SOCKET", path)
	return conn
}

// datagrams reads what was sent so far. Every send is complete before the
// call that made it returns, so the read deadline only ends the wait on an
// empty socket.
func datagrams(t *testing.T, conn *net.UnixConn) []string {
	t.Helper()
	var got []string
	buf := make([]byte, 4096)
	for {
		if err := conn.SetReadDeadline(time.Now().Add(200 * time.Millisecond)); err != nil {
			t.Fatal(err)
		}
		n, _, err := conn.ReadFromUnix(buf)
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				return got
			}
			t.Fatal(err)
		}
		got = append(got, string(buf[:n]))
	}
}

func TestNotifierSends(t *testing.T) {
	conn := listenNotify(t)
	n := NewNotifier()
	for _, step := range []struct {
		send func() error
		want string
	}{
		{n.Ready, "READY=1"},
		{n.Watchdog, "WATCHDOG=1"},
		{n.Stopping, "STOPPING=1"},
	} {
		if err := step.send(); err != nil {
			t.Fatal(err)
		}
		if got := datagrams(t, conn); len(got) != 1 || got[0] != step.want {
			t.Errorf("sent %q, want [%q]", got, step.want)
		}
	}
	if os.Getenv("NOTIFY_SOCKET") == "" {
		t.Error("the notifier unset NOTIFY_SOCKET")
	}
}

func TestNotifierAbstractSocket(t *testing.T) {
	name := "@courier-test-" + strconv.Itoa(os.Getpid())
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: name, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	t.Setenv("NOTIFY_SOCKET", name)
	if err := NewNotifier().Ready(); err != nil {
		t.Fatal(err)
	}
	if got := datagrams(t, conn); len(got) != 1 || got[0] != "READY=1" {
		t.Errorf("sent %q", got)
	}
}

func TestNotifierWithoutSystemd(t *testing.T) {
	t.Setenv("NOTIFY_SOCKET", "")
	t.Setenv("WATCHDOG_USEC", "")
	n := NewNotifier()
	for _, f := range []func() error{n.Ready, n.Watchdog, n.Stopping} {
		if err := f(); err != nil {
			t.Errorf("without NOTIFY_SOCKET: %v, want a silent no-op", err)
		}
	}
	if d, ok := n.WatchdogInterval(); ok {
		t.Errorf("watchdog on (%s) without WATCHDOG_USEC", d)
	}
	// RunWatchdog returns at once when there is no watchdog.
	RunWatchdog(context.Background(), n, func() error { t.Error("health checked without a watchdog"); return nil }, zerolog.Nop())
}

func TestNotifierSocketGone(t *testing.T) {
	t.Setenv("NOTIFY_SOCKET", filepath.Join(t.TempDir(), "gone.sock"))
	if err := NewNotifier().Ready(); err == nil || !strings.Contains(err.Error(), "READY=1") {
		t.Errorf("err = %v, want an error naming the message", err)
	}
}

func TestWatchdogInterval(t *testing.T) {
	pid := strconv.Itoa(os.Getpid())
	for _, tc := range []struct {
		usec, pid string
		want      time.Duration
		ok        bool
	}{
		{"60000000", "", 60 * time.Second, true},
		{"60000000", pid, 60 * time.Second, true},
		{"60000000", strconv.Itoa(os.Getpid() + 1), 0, false}, // another process's watchdog
		{"", "", 0, false},
		{"zero", "", 0, false},
		{"0", "", 0, false},
	} {
		t.Setenv("WATCHDOG_USEC", tc.usec)
		t.Setenv("WATCHDOG_PID", tc.pid)
		d, ok := NewNotifier().WatchdogInterval()
		if d != tc.want || ok != tc.ok {
			t.Errorf("WATCHDOG_USEC=%q WATCHDOG_PID=%q: %s %v, want %s %v", tc.usec, tc.pid, d, ok, tc.want, tc.ok)
		}
	}
}

// healthScript answers health checks from a script of results and stops
// the watchdog (cancels ctx) after the last one. It records every check
// and every ping in order.
type healthScript struct {
	mu      sync.Mutex
	results []error
	calls   int
	events  []string
	cancel  context.CancelFunc
}

func (h *healthScript) check() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	i := h.calls
	h.calls++
	if i >= len(h.results)-1 {
		h.cancel()
	}
	if i >= len(h.results) {
		h.events = append(h.events, "extra")
		return errors.New("past the script")
	}
	if err := h.results[i]; err != nil {
		h.events = append(h.events, "unhealthy")
		return err
	}
	h.events = append(h.events, "healthy")
	return nil
}

func (h *healthScript) ping() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.events = append(h.events, "ping")
}

// fakeNotifier records pings into a healthScript.
type fakeNotifier struct {
	h        *healthScript
	interval time.Duration
}

func (f fakeNotifier) Ready() error                            { return nil }
func (f fakeNotifier) Stopping() error                         { return nil }
func (f fakeNotifier) Watchdog() error                         { f.h.ping(); return nil }
func (f fakeNotifier) WatchdogInterval() (time.Duration, bool) { return f.interval, true }

// script is healthy ×3, unhealthy ×4, healthy ×3, unhealthy ×2, healthy.
func script() []error {
	bad := errors.New("queue not writable")
	var s []error
	for _, run := range []struct {
		n   int
		err error
	}{{3, nil}, {4, bad}, {3, nil}, {2, bad}, {1, nil}} {
		for range run.n {
			s = append(s, run.err)
		}
	}
	return s
}

// TestRunWatchdogPingsOnlyWhileHealthy: every ping follows a healthy check
// at once, no check that failed is followed by a ping, and the log has one
// line per change of health, not one per tick.
func TestRunWatchdogPingsOnlyWhileHealthy(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	h := &healthScript{results: script(), cancel: cancel}
	var logs bytes.Buffer
	RunWatchdog(ctx, fakeNotifier{h: h, interval: 2 * time.Millisecond}, h.check, zerolog.New(&logs))

	var want []string
	for _, err := range h.results {
		if err != nil {
			want = append(want, "unhealthy")
		} else {
			want = append(want, "healthy", "ping")
		}
	}
	if strings.Join(h.events, " ") != strings.Join(want, " ") {
		t.Errorf("events:\n got %v\nwant %v", h.events, want)
	}
	if n := strings.Count(logs.String(), "withholding the systemd watchdog ping"); n != 2 {
		t.Errorf("%d 'not healthy' lines, want 2 (one per unhealthy spell):\n%s", n, logs.String())
	}
	if n := strings.Count(logs.String(), "pings resumed"); n != 2 {
		t.Errorf("%d 'healthy again' lines, want 2:\n%s", n, logs.String())
	}
	if !strings.Contains(logs.String(), "queue not writable") {
		t.Errorf("the log does not say why:\n%s", logs.String())
	}
}

// TestRunWatchdogDatagrams runs the real notifier against a fake systemd:
// WATCHDOG=1 arrives once per healthy check and never for an unhealthy one.
func TestRunWatchdogDatagrams(t *testing.T) {
	conn := listenNotify(t)
	t.Setenv("WATCHDOG_USEC", "20000") // 20ms: a ping every 10ms
	t.Setenv("WATCHDOG_PID", strconv.Itoa(os.Getpid()))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	h := &healthScript{results: script(), cancel: cancel}
	RunWatchdog(ctx, NewNotifier(), h.check, zerolog.Nop())

	healthy := 0
	for _, err := range h.results {
		if err == nil {
			healthy++
		}
	}
	got := datagrams(t, conn)
	if len(got) != healthy {
		t.Errorf("%d datagrams for %d healthy checks out of %d: %q", len(got), healthy, len(h.results), got)
	}
	for _, g := range got {
		if g != "WATCHDOG=1" {
			t.Errorf("sent %q, want WATCHDOG=1", g)
		}
	}
}

// TestRunWatchdogStopsWithContext: RunWatchdog returns when ctx ends, even
// while the process is unhealthy.
func TestRunWatchdogStopsWithContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	h := &healthScript{cancel: func() {}}
	done := make(chan struct{})
	go func() {
		defer close(done)
		RunWatchdog(ctx, fakeNotifier{h: h, interval: time.Hour}, func() error { return errors.New("down") }, zerolog.Nop())
	}()
	cancel()
	select {
	case <-done:
	case <-time.After(30 * time.Second): // only a broken RunWatchdog gets here
		t.Fatal("RunWatchdog did not return after its context ended")
	}
}
