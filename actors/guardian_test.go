package actors_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/rs/zerolog"

	"courier/actors"
	"courier/internal/exporttest"
)

// guardianRig is a guardian on its own actor system, its fatal reports
// collected.
type guardianRig struct {
	sys   *actor.ActorSystem
	g     *actors.Guardian
	logs  *exporttest.LogBuffer
	log   zerolog.Logger
	fatal chan string
}

func newGuardianRig(t *testing.T, maxRestarts int) *guardianRig {
	t.Helper()
	r := &guardianRig{sys: exporttest.NewSystem(), logs: &exporttest.LogBuffer{}, fatal: make(chan string, 10)}
	r.log = zerolog.New(r.logs)
	g, err := actors.NewGuardian(r.sys, actors.GuardianOptions{
		Log: r.log, MaxRestarts: maxRestarts, RestartWindow: time.Hour,
		BackoffInitial: time.Millisecond, BackoffMax: 5 * time.Millisecond,
		OnFatal: func(child string, reason any) { r.fatal <- fmt.Sprintf("%s: %v", child, reason) },
	})
	if err != nil {
		t.Fatal(err)
	}
	r.g = g
	t.Cleanup(func() {
		_ = g.Stop()
		r.sys.Shutdown()
	})
	return r
}

// worker spawns a worker running loop under the guardian.
func (r *guardianRig) worker(t *testing.T, name string, policy actors.Policy, loop func(ctx context.Context) error) *actor.PID {
	t.Helper()
	pid, err := r.g.Spawn(actors.WorkerProps(name, r.log, loop), name, policy)
	if err != nil {
		t.Fatal(err)
	}
	return pid
}

func (r *guardianRig) alive(pid *actor.PID) bool {
	_, ok := r.sys.ProcessRegistry.Get(pid)
	return ok
}

func (r *guardianRig) waitFatal(t *testing.T) string {
	t.Helper()
	select {
	case why := <-r.fatal:
		return why
	case <-time.After(time.Minute):
		t.Fatal("OnFatal was not called")
		return ""
	}
}

// TestGuardianRestartsAFailedWorker: a worker whose loop panics, then
// fails with an error, is restarted each time and runs on; nothing is
// fatal.
func TestGuardianRestartsAFailedWorker(t *testing.T) {
	r := newGuardianRig(t, 5)
	var starts atomic.Int32
	up := make(chan struct{})
	pid := r.worker(t, "flaky", actors.Restart, func(ctx context.Context) error {
		switch starts.Add(1) {
		case 1:
			panic("first start panics")
		case 2:
			return errors.New("second start fails")
		}
		close(up)
		<-ctx.Done()
		return nil
	})
	select {
	case <-up:
	case <-time.After(time.Minute):
		t.Fatalf("the worker was not restarted twice (%d starts)", starts.Load())
	}
	if n := starts.Load(); n != 3 {
		t.Fatalf("%d starts, want 3", n)
	}
	if !r.alive(pid) {
		t.Fatal("the restarted worker is not alive")
	}
	logs := r.logs.String()
	if !strings.Contains(logs, "flaky panicked") || !strings.Contains(logs, "first start panics") || !strings.Contains(logs, "goroutine") {
		t.Fatalf("the panic and its stack should be logged:\n%s", logs)
	}
	if n := r.logs.Count("actor failed; restarting it"); n != 2 {
		t.Fatalf("%d restarts logged, want 2:\n%s", n, logs)
	}
	// A clean stop cancels the loop's context; its nil return is no failure.
	if err := r.sys.Root.StopFuture(pid).Wait(); err != nil {
		t.Fatal(err)
	}
	select {
	case why := <-r.fatal:
		t.Fatalf("nothing should be fatal: %s", why)
	default:
	}
}

// TestGuardianGivesUpAfterMaxRestarts: a worker that fails at every start
// is restarted MaxRestarts times, then stopped and reported fatal once.
func TestGuardianGivesUpAfterMaxRestarts(t *testing.T) {
	r := newGuardianRig(t, 2)
	var starts atomic.Int32
	pid := r.worker(t, "broken", actors.Restart, func(context.Context) error {
		starts.Add(1)
		return errors.New("cannot connect")
	})
	why := r.waitFatal(t)
	if !strings.Contains(why, "broken") || !strings.Contains(why, "failed 3 times") || !strings.Contains(why, "cannot connect") {
		t.Fatalf("fatal report %q", why)
	}
	waitFor(t, "the worker stopped", func() bool { return !r.alive(pid) })
	if n := starts.Load(); n != 3 {
		t.Fatalf("%d starts, want 3 (the first and 2 restarts)", n)
	}
	select {
	case why := <-r.fatal:
		t.Fatalf("OnFatal called twice: %s", why)
	default:
	}
}

// TestGuardianFatalPolicyStopsAtTheFirstFailure: a child under the Fatal
// policy is not restarted; its failure is reported at once.
func TestGuardianFatalPolicyStopsAtTheFirstFailure(t *testing.T) {
	r := newGuardianRig(t, 5)
	var starts atomic.Int32
	pid := r.worker(t, "core", actors.Fatal, func(context.Context) error {
		starts.Add(1)
		panic("corrupt state")
	})
	why := r.waitFatal(t)
	if !strings.Contains(why, "core") || !strings.Contains(why, "corrupt state") {
		t.Fatalf("fatal report %q", why)
	}
	waitFor(t, "the worker stopped", func() bool { return !r.alive(pid) })
	if n := starts.Load(); n != 1 {
		t.Fatalf("%d starts, want 1", n)
	}
}

// TestWorkerThatHangsDoesNotHoldUpItsStop: a loop that ignores its
// context is abandoned (and logged) after the bounded wait, so stopping
// the agent never hangs on it.
func TestWorkerThatHangsDoesNotHoldUpItsStop(t *testing.T) {
	r := newGuardianRig(t, 5)
	release := make(chan struct{})
	running := make(chan struct{})
	pid := r.worker(t, "stuck", actors.Restart, func(context.Context) error {
		close(running)
		<-release // like a call without a context
		return nil
	})
	<-running
	// Stopped when its Stopping handler returns, after the bounded wait.
	r.sys.Root.Stop(pid)
	waitFor(t, "the worker stopped", func() bool { return !r.alive(pid) })
	close(release)
	if !strings.Contains(r.logs.String(), "stuck did not stop within 10s of being cancelled") {
		t.Fatalf("the abandoned loop should be logged:\n%s", r.logs.String())
	}
}
