package gitea

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/rs/zerolog"

	"courier/actors"
	"courier/integrations"
	"courier/queue"
)

// envelope is one delivered record.
type envelope struct {
	Integration string          `json:"integration"`
	Model       string          `json:"model"`
	ID          string          `json:"id"`
	Session     []string        `json:"session"`
	Data        json.RawMessage `json:"data"`
}

// recorder is the queue's sink: it keeps every delivered record.
type recorder struct {
	mu  sync.Mutex
	got []envelope
}

func (r *recorder) Deliver(_ context.Context, _ string, batch []queue.Message) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, m := range batch {
		var e envelope
		if err := json.Unmarshal(m.Payload, &e); err != nil {
			return queue.Permanent(err)
		}
		r.got = append(r.got, e)
	}
	return nil
}

func (r *recorder) take() []envelope {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := r.got
	r.got = nil
	return out
}

// logBuf collects every log line of the rig, for the credential checks.
type logBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// rig is a real agent core, as in actors/export_test.go: actor system,
// guardian, Pebble queue on disk delivering to a recorder, and the export
// supervisor running the integration under its actor.
type rig struct {
	q    *queue.Queue
	exp  *actors.Exporter
	rec  *recorder
	logs *logBuf
	// cache is the integrations' cache folder (git mirrors in cache/git).
	cache string
}

func newRig(t *testing.T) *rig {
	t.Helper()
	logs := &logBuf{}
	log := zerolog.New(io.MultiWriter(logs, zerolog.NewTestWriter(t))).Level(zerolog.DebugLevel)
	sys := actor.NewActorSystem(actor.WithLoggerFactory(func(*actor.ActorSystem) *slog.Logger {
		return slog.New(slog.NewTextHandler(io.Discard, nil))
	}))
	g, err := actors.NewGuardian(sys, actors.GuardianOptions{Log: log})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	rec := &recorder{}
	q, err := queue.Open(sys, queue.Options{
		Dir: filepath.Join(dir, "db"), Logger: log, Linger: time.Millisecond,
		Router: func(string) queue.Route { return queue.Route{Sink: rec} },
		Spawn:  func(p *actor.Props, name string) (*actor.PID, error) { return g.Spawn(p, name, actors.Fatal) },
	})
	if err != nil {
		t.Fatal(err)
	}
	exp, err := actors.NewExporter(sys, g, actors.ExportOptions{
		Store: actors.QueueStore{Q: q}, Log: log, RestartBackoff: 10 * time.Millisecond,
		CacheDir: func(string) string { return filepath.Join(dir, "cache") },
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = q.Close(context.Background())
		_ = g.Stop()
		sys.Shutdown()
	})
	return &rig{q: q, exp: exp, rec: rec, logs: logs, cache: filepath.Join(dir, "cache")}
}

// spec decodes cfg (JSON) as the registry does for a backend command.
func spec(t *testing.T, id string, cfg any) actors.IntegrationSpec {
	t.Helper()
	raw, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	c, err := integrations.DecodeConfig(Type, raw)
	if err != nil {
		t.Fatal(err)
	}
	return actors.IntegrationSpec{ID: id, Type: Type, Config: c}
}

var jobN atomic.Int64

// export runs one export of one integration to its end, waits until the
// queue delivered everything, and returns the result and the records.
func (r *rig) export(t *testing.T, s actors.IntegrationSpec) (actors.IntegrationResult, []envelope) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	job, err := r.exp.Start(ctx, actors.ExportSpec{ID: fmt.Sprintf("job%d", jobN.Add(1)), Integrations: []actors.IntegrationSpec{s}})
	if err != nil {
		t.Fatal(err)
	}
	res, err := job.Wait(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for {
		st, err := r.q.Status(ctx)
		if err == nil && st.Pending == 0 {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("queue did not drain: %+v", st)
		}
		time.Sleep(5 * time.Millisecond)
	}
	return res.Integrations[0], r.rec.take()
}

// index maps record id to its envelopes (a user can be sent under two
// owners), failing on one sent twice under the same session.
func index(t *testing.T, recs []envelope) map[string][]envelope {
	t.Helper()
	out := map[string][]envelope{}
	for _, e := range recs {
		for _, prev := range out[e.ID] {
			if slices.Equal(prev.Session, e.Session) {
				t.Errorf("record %s sent twice under %v", e.ID, e.Session)
			}
		}
		out[e.ID] = append(out[e.ID], e)
	}
	return out
}

func decode[T any](t *testing.T, e envelope) T {
	t.Helper()
	var v T
	if err := json.Unmarshal(e.Data, &v); err != nil {
		t.Fatalf("%s: %v", e.ID, err)
	}
	return v
}
