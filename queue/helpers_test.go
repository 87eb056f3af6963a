package queue

import (
	"context"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/rs/zerolog"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	// protoactor's dead-letter throttle parks a goroutine for one throttle
	// interval after a message reaches a stopped actor; it ends by itself.
	goleak.VerifyTestMain(m, goleak.IgnoreTopFunction("github.com/asynkron/protoactor-go/actor.NewDeadLetter.NewThrottle.func4.1"))
}

func newSystem(t testing.TB) *actor.ActorSystem {
	t.Helper()
	sys := actor.NewActorSystem(actor.WithLoggerFactory(func(*actor.ActorSystem) *slog.Logger {
		return slog.New(slog.NewTextHandler(io.Discard, nil))
	}))
	t.Cleanup(sys.Shutdown)
	return sys
}

func testLogger(t testing.TB) zerolog.Logger {
	return zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel)
}

// openQueue opens a queue in dir and closes it when the test ends.
func openQueue(t testing.TB, sys *actor.ActorSystem, opts Options) *Queue {
	t.Helper()
	opts.Logger = testLogger(t)
	q, err := Open(sys, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = q.Close(context.Background()) })
	return q
}

// recorder is a Sink that keeps what it was given, per key, in order.
type recorder struct {
	mu   sync.Mutex
	got  map[string][]string
	cond chan struct{}
	// fail, when set, decides the answer for a batch before it is recorded.
	fail func(key string, batch []Message) error
}

func newRecorder() *recorder {
	return &recorder{got: map[string][]string{}, cond: make(chan struct{}, 1)}
}

func (r *recorder) Deliver(ctx context.Context, key string, batch []Message) error {
	if r.fail != nil {
		if err := r.fail(key, batch); err != nil {
			return err
		}
	}
	r.mu.Lock()
	for _, m := range batch {
		r.got[key] = append(r.got[key], string(m.Payload))
	}
	r.mu.Unlock()
	select {
	case r.cond <- struct{}{}:
	default:
	}
	return nil
}

func (r *recorder) snapshot(key string) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.got[key]...)
}

func (r *recorder) total() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, v := range r.got {
		n += len(v)
	}
	return n
}

// waitFor polls cond until it holds or the deadline passes. Deadlines here
// are generous: they bound a broken test, they do not measure speed.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func routeAll(s Sink) Router {
	return func(string) Route { return Route{Sink: s} }
}
