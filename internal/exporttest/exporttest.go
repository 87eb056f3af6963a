// Package exporttest is test support shared by the export test suites
// (actors, cli, backend and every integration under integrations/): a real
// agent core — an actor system, a Pebble queue on disk whose sink records
// what it delivers, the guardian and the exporter — plus log capture and
// the goleak options these suites need.
//
// It is a normal package so that test files of several packages can share
// it, but only _test.go files may import it. It lives under the top-level
// internal/ folder, not under integrations/, because it uses protoactor and
// the queue, which arch_test.go keeps out of the integrations' non-test
// code.
package exporttest

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/rs/zerolog"
	"go.uber.org/goleak"

	"courier/actors"
	"courier/queue"
)

// GoleakOptions are the options of goleak for suites that run actors:
// protoactor's dead-letter throttle parks a goroutine for one throttle
// interval after a message reaches a stopped actor; it ends by itself.
func GoleakOptions(more ...goleak.Option) []goleak.Option {
	return append([]goleak.Option{
		goleak.IgnoreTopFunction("github.com/asynkron/protoactor-go/actor.NewDeadLetter.NewThrottle.func4.1"),
	}, more...)
}

// NewSystem is an actor system whose own (slog) logging is discarded.
func NewSystem() *actor.ActorSystem {
	return actor.NewActorSystem(actor.WithLoggerFactory(func(*actor.ActorSystem) *slog.Logger {
		return slog.New(slog.NewTextHandler(io.Discard, nil))
	}))
}

// Envelope is one delivered record.
type Envelope struct {
	Integration string          `json:"integration"`
	Model       string          `json:"model"`
	ID          string          `json:"id"`
	Session     []string        `json:"session"`
	Data        json.RawMessage `json:"data"`
}

// Recorder is a queue sink that keeps every delivered record (decoded, and
// the raw payloads for credential checks).
type Recorder struct {
	mu      sync.Mutex
	got     []Envelope
	raw     bytes.Buffer
	n       int
	discard bool
	after   func(n int)
}

// Deliver implements queue.Sink.
func (r *Recorder) Deliver(_ context.Context, _ string, batch []queue.Message) error {
	r.mu.Lock()
	for _, m := range batch {
		r.n++
		if r.discard {
			continue
		}
		var e Envelope
		if err := json.Unmarshal(m.Payload, &e); err != nil {
			r.mu.Unlock()
			return queue.Permanent(err)
		}
		r.got = append(r.got, e)
		r.raw.Write(m.Payload)
	}
	n, after := r.n, r.after
	r.mu.Unlock()
	if after != nil {
		after(n)
	}
	return nil
}

// SetDiscard makes the recorder count records only; set it before the
// first export.
func (r *Recorder) SetDiscard(d bool) {
	r.mu.Lock()
	r.discard = d
	r.mu.Unlock()
}

// SetAfter sets a function called after each batch with the total so far,
// from the delivery actor; nil removes it.
func (r *Recorder) SetAfter(f func(n int)) {
	r.mu.Lock()
	r.after = f
	r.mu.Unlock()
}

// Count is how many records were delivered.
func (r *Recorder) Count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.n
}

// Take returns the records delivered since the last Take.
func (r *Recorder) Take() []Envelope {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := r.got
	r.got = nil
	return out
}

// Raw is every payload delivered so far, concatenated.
func (r *Recorder) Raw() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.raw.String()
}

// LogBuffer collects a logger's output; safe for concurrent writers.
type LogBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *LogBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *LogBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// Count is how many lines hold s.
func (l *LogBuffer) Count(s string) int {
	n := 0
	for _, line := range strings.Split(l.String(), "\n") {
		if strings.Contains(line, s) {
			n++
		}
	}
	return n
}

// Options shape a Rig.
type Options struct {
	// Dir holds the queue (Dir/db); empty is a new t.TempDir().
	Dir string
	// Level is the level of the rig's logger (zero: debug).
	Level zerolog.Level
	// Echo also writes the logs to the test's log.
	Echo bool
	// Timestamp adds a time to every log line.
	Timestamp bool
	// Sink receives what the queue delivers; nil is the rig's Recorder.
	Sink queue.Sink
	// QueueOnly leaves out the guardian and the exporter, for tests that
	// drive sessions straight: the queue spawns its actors at the root
	// and does not linger.
	QueueOnly bool
	// Export are the exporter's options; Store and Log are the rig's and a
	// zero RestartBackoff is 10ms.
	Export actors.ExportOptions
	// Quota bounds the rig's queue; zero fields take the queue's defaults.
	Quota queue.Quota
	// AfterStop runs at cleanup once the queue and actors stopped.
	AfterStop func()
}

// Rig is a real agent core: an actor system, a guardian, a Pebble queue on
// disk delivering to a sink (by default a Recorder) and the exporter, with
// every log line captured.
type Rig struct {
	Sys      *actor.ActorSystem
	Guardian *actors.Guardian
	Q        *queue.Queue
	Store    actors.QueueStore
	Exp      *actors.Exporter
	Rec      *Recorder
	Log      zerolog.Logger
	LogBuf   *LogBuffer
	Dir      string
}

var jobN atomic.Int64

// New starts a rig, stopped at t's cleanup.
func New(t testing.TB, o Options) *Rig {
	t.Helper()
	r := &Rig{Rec: &Recorder{}, LogBuf: &LogBuffer{}, Dir: o.Dir}
	if r.Dir == "" {
		r.Dir = t.TempDir()
	}
	var w io.Writer = r.LogBuf
	if o.Echo {
		w = io.MultiWriter(r.LogBuf, zerolog.NewTestWriter(t))
	}
	r.Log = zerolog.New(w).Level(o.Level)
	if o.Timestamp {
		r.Log = r.Log.With().Timestamp().Logger()
	}
	sink := o.Sink
	if sink == nil {
		sink = r.Rec
	}
	r.Sys = NewSystem()
	qo := queue.Options{
		Dir: filepath.Join(r.Dir, "db"), Logger: r.Log, Quota: o.Quota,
		Router: func(string) queue.Route { return queue.Route{Sink: sink} },
	}
	if !o.QueueOnly {
		g, err := actors.NewGuardian(r.Sys, actors.GuardianOptions{Log: r.Log})
		if err != nil {
			r.Sys.Shutdown()
			t.Fatal(err)
		}
		r.Guardian = g
		qo.Linger = time.Millisecond
		qo.Spawn = func(p *actor.Props, name string) (*actor.PID, error) { return g.Spawn(p, name, actors.Fatal) }
	}
	q, err := queue.Open(r.Sys, qo)
	if err != nil {
		r.stop()
		t.Fatal(err)
	}
	r.Q, r.Store = q, actors.QueueStore{Q: q}
	t.Cleanup(func() {
		_ = q.Close(context.Background())
		r.stop()
		if o.AfterStop != nil {
			o.AfterStop()
		}
	})
	if o.QueueOnly {
		return r
	}
	eo := o.Export
	eo.Store, eo.Log = r.Store, r.Log
	if eo.RestartBackoff == 0 {
		eo.RestartBackoff = 10 * time.Millisecond
	}
	if r.Exp, err = actors.NewExporter(r.Sys, r.Guardian, eo); err != nil {
		t.Fatal(err)
	}
	return r
}

func (r *Rig) stop() {
	if r.Guardian != nil {
		_ = r.Guardian.Stop()
	}
	r.Sys.Shutdown()
}

// Logs is every log line so far.
func (r *Rig) Logs() string { return r.LogBuf.String() }

// Start starts an export; an empty spec.ID is a new one.
func (r *Rig) Start(t testing.TB, ctx context.Context, spec actors.ExportSpec) *actors.Job {
	t.Helper()
	if spec.ID == "" {
		spec.ID = fmt.Sprintf("job%d", jobN.Add(1))
	}
	job, err := r.Exp.Start(ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	return job
}

// Run runs one export to its end (it does not wait for the queue).
func (r *Rig) Run(t testing.TB, spec actors.ExportSpec) actors.ExportResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	res, err := r.Start(t, ctx, spec).Wait(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

// Drain waits until the queue delivered everything it holds.
func (r *Rig) Drain(t testing.TB) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		s, err := r.Q.Status(context.Background())
		if err == nil && s.Pending == 0 && s.Delivering == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("queue did not drain: %+v", s)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// WaitDelivered waits until the recorder counted n records in all.
func (r *Rig) WaitDelivered(t testing.TB, n int) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for r.Rec.Count() < n {
		if time.Now().After(deadline) {
			t.Fatalf("timed out: %d of %d records delivered", r.Rec.Count(), n)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// Records returns the records delivered since the last call.
func (r *Rig) Records() []Envelope { return r.Rec.Take() }

// DirIDs reads every NDJSON line queue.DirSink wrote under root for one
// integration and counts each record id.
func DirIDs(t testing.TB, root, id string) map[string]int {
	t.Helper()
	ids := map[string]int{}
	files, _ := filepath.Glob(filepath.Join(root, id, "*.ndjson"))
	for _, f := range files {
		fh, err := os.Open(f)
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(fh)
		sc.Buffer(nil, 4<<20)
		for sc.Scan() {
			var env struct {
				Seq uint64 `json:"seq"`
				ID  string `json:"id"`
			}
			if err := json.Unmarshal(sc.Bytes(), &env); err != nil || env.Seq == 0 && env.ID == "" {
				fh.Close()
				t.Fatalf("%s: bad line %q: %v", f, sc.Text(), err)
			}
			ids[env.ID]++
		}
		fh.Close()
	}
	return ids
}
