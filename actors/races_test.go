package actors_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"courier/actors"
	"courier/backend"
	"courier/queue"
)

// The races fixed in 6085d1f, as the command actors have them now.

// TestStartIsNotWrittenAfterDone (race A): the start of a command and its
// "done" are both writes of its journal entry. Before 6085d1f the start was
// written by a goroutine of its own and could land after the "done",
// putting the command back to accepted: it ran again after a restart. The
// command actor now writes the start before it runs the handler, and the
// "done" after, on one goroutine. Commands that end at once (validate of a
// synthetic integration) give a start write made concurrently the most
// chances to land last; none may be resumed after a restart.
func TestStartIsNotWrittenAfterDone(t *testing.T) {
	a := newAgent(t, agentOptions{})
	var ids []string
	for range 30 {
		ids = append(ids, a.command("validate-config", validateParams()))
	}
	for _, id := range ids {
		if r := a.result(id); r.Status != "succeeded" {
			t.Fatalf("%s: %+v", id, r)
		}
	}
	// The result is delivered once the "done" is in the same batch; a start
	// write made concurrently may land after it.
	a.stop()
	a.start()
	for _, id := range ids {
		if e := a.journal(id); e.State != "done" || e.StartedAt.IsZero() {
			t.Fatalf("%s after a restart: %+v (the start was written after the done)", id, e)
		}
	}
	a.running()
	if n := a.logs.Count("resuming a command interrupted by a restart"); n != 0 {
		t.Fatalf("%d finished commands were resumed", n)
	}
}

// TestResultIsStoredWhenTheStopRunsOut (race C): a command has its result
// and is storing it when the stop's deadline runs out and its actor is
// stopped. Before 6085d1f the result was stored with the router's
// context, which the stop cancels: the result was lost and the command ran
// again at the next start. Here the queue has room for one result: the
// first command's result holds it (its delivery is held back), so the
// second's store waits for room while the stop runs out.
func TestResultIsStoredWhenTheStopRunsOut(t *testing.T) {
	release := make(chan struct{})
	var releaseOnce sync.Once
	var a *agent
	a = newAgent(t, agentOptions{Quota: queue.Quota{MaxKeyItems: 1}, Route: func(key string) queue.Route {
		if key != backend.ResultsKey {
			return queue.Route{}
		}
		sink := a.client.Sink()
		return queue.Route{Sink: queue.SinkFunc(func(ctx context.Context, key string, batch []queue.Message) error {
			select {
			case <-release:
			case <-ctx.Done():
				return ctx.Err()
			}
			return sink.Deliver(ctx, key, batch)
		})}
	}})
	t.Cleanup(func() { releaseOnce.Do(func() { close(release) }) })
	first := a.command("validate-config", validateParams())
	waitFor(t, "the first result", func() bool {
		e, ok, err := actors.Journal{Q: a.q}.Get(first)
		return err == nil && ok && e.State == "done"
	})
	second := a.command("validate-config", validateParams())
	waitFor(t, "the second command to finish", func() bool { return a.logLines(second, "command finished") == 1 })

	// The stop's deadline is already over: the router is stopped at once,
	// and with it the second command's actor, while its result waits.
	over, cancel := context.WithCancel(context.Background())
	cancel()
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		a.stopWith(over)
	}()
	waitFor(t, "the second command's actor to stop", func() bool {
		return a.logLines(second, "the command's actor is stopping") == 1
	})
	releaseOnce.Do(func() { close(release) })
	<-stopped

	a.start()
	if e := a.journal(second); e.State != "done" {
		t.Fatalf("after the stop the journal has %+v: the result was lost", e)
	}
	a.running()
	if n := a.logs.Count("resuming a command interrupted by a restart"); n != 0 {
		t.Fatalf("%d commands were resumed", n)
	}
	if r := a.result(second); r.Status != "succeeded" {
		t.Fatalf("the second result: %+v", r)
	}
}

// logLines counts the log lines of command id whose message starts with msg.
func (a *agent) logLines(id, msg string) int {
	n := 0
	for _, l := range strings.Split(a.logs.String(), "\n") {
		if strings.Contains(l, fmt.Sprintf(`"command":%q`, id)) && strings.Contains(l, `"message":"`+msg) {
			n++
		}
	}
	return n
}

// preJournaling is the backend client with one twist: before the poller
// sees a validate-config command for the first time, its journal entry is
// already there, accepted and not done, as a resume that failed (the
// journal could not be read at start) leaves it.
type preJournaling struct {
	actors.Backend
	t    *testing.T
	q    func() *queue.Queue
	mu   sync.Mutex
	seen map[string]bool
}

func (b *preJournaling) Commands(ctx context.Context, wait time.Duration) ([]backend.Command, error) {
	cmds, err := b.Backend.Commands(ctx, wait)
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, c := range cmds {
		if c.Type != "validate-config" || b.seen[c.ID] {
			continue
		}
		b.seen[c.ID] = true
		e := actors.JournalEntry{Command: c, State: "accepted", ReceivedAt: time.Now().UTC()}
		if err := (actors.Journal{Q: b.q()}).Put(ctx, e); err != nil {
			b.t.Errorf("journal %s: %v", c.ID, err)
		}
	}
	return cmds, err
}

// TestRedeliveredUnfinishedCommandRuns (race D2): a command the journal
// has as accepted but that the router does not run (its resume failed) is
// delivered again by the backend. Before 6085d1f the poller only
// acknowledged a command it knew, so this one never ran until the next
// start; now a known, unfinished command is handed to the router again.
func TestRedeliveredUnfinishedCommandRuns(t *testing.T) {
	var a *agent
	a = newAgent(t, agentOptions{Service: func(o *actors.ServiceOptions) {
		o.Backend = &preJournaling{Backend: o.Backend, t: t, q: func() *queue.Queue { return a.q }, seen: map[string]bool{}}
	}})
	id := a.command("validate-config", validateParams())
	// The router handles commands in order: once a later command has its
	// result, the first one has been started (or is done).
	if r := a.result(a.command("export", export(synth("later", map[string]any{"items_per_repo": 1})))); r.Status != "succeeded" {
		t.Fatalf("later: %+v", r)
	}
	// Done, or running; read the journal again after asking the router,
	// in case it ended in between.
	if a.journal(id).State != "done" && !a.isRunning(id) && a.journal(id).State != "done" {
		t.Fatalf("the journaled command did not run: %+v", a.journal(id))
	}
	if r := a.result(id); r.Status != "succeeded" || r.Repeats != 0 {
		t.Fatalf("result %+v", r)
	}
}
