package jira

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/rs/zerolog"
	"go.uber.org/goleak"

	"courier/actors"
	"courier/integrations"
	"courier/queue"
)

func TestMain(m *testing.M) {
	// protoactor's dead-letter throttle parks a goroutine for one throttle
	// interval after a message reaches a stopped actor; it ends by itself.
	goleak.VerifyTestMain(m, goleak.IgnoreTopFunction("github.com/asynkron/protoactor-go/actor.NewDeadLetter.NewThrottle.func4.1"))
}

// shrink makes pages small and retries quick for one test.
func shrink(t *testing.T, page int) {
	t.Helper()
	oldPage, oldSub, oldBackoff := pageSize, subPageSize, backoffInitial
	pageSize, subPageSize, backoffInitial = page, page, 10*time.Millisecond
	t.Cleanup(func() { pageSize, subPageSize, backoffInitial = oldPage, oldSub, oldBackoff })
}

// envelope is one delivered record.
type envelope struct {
	Integration string          `json:"integration"`
	Model       string          `json:"model"`
	ID          string          `json:"id"`
	Session     []string        `json:"session"`
	Data        json.RawMessage `json:"data"`
}

// collector is the queue's sink: it keeps every delivered record.
type collector struct {
	mu  sync.Mutex
	got []envelope
	n   int
}

func (c *collector) Deliver(_ context.Context, _ string, batch []queue.Message) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, m := range batch {
		var e envelope
		if err := json.Unmarshal(m.Payload, &e); err != nil {
			return queue.Permanent(err)
		}
		c.got = append(c.got, e)
		c.n++
	}
	return nil
}

func (c *collector) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n
}

func (c *collector) take() []envelope {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := c.got
	c.got = nil
	return out
}

// syncBuffer is a log destination shared by goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

type nopCloser struct{}

func (nopCloser) Close() error { return nil }

// rig is the real path an export takes: the export supervisor and its
// integration actors, a Pebble queue on disk whose sink collects records.
type rig struct {
	t    *testing.T
	exp  *actors.Exporter
	q    *queue.Queue
	coll *collector
	logs *syncBuffer
	seen int
	n    int
}

const testID = "int_jira"

func newRig(t *testing.T) *rig {
	t.Helper()
	logs := &syncBuffer{}
	log := zerolog.New(logs).Level(zerolog.DebugLevel).With().Timestamp().Logger()
	sys := actor.NewActorSystem(actor.WithLoggerFactory(func(*actor.ActorSystem) *slog.Logger {
		return slog.New(slog.NewTextHandler(io.Discard, nil))
	}))
	g, err := actors.NewGuardian(sys, actors.GuardianOptions{Log: log})
	if err != nil {
		t.Fatal(err)
	}
	coll := &collector{}
	q, err := queue.Open(sys, queue.Options{
		Dir: filepath.Join(t.TempDir(), "db"), Logger: log, Linger: time.Millisecond,
		Router: func(string) queue.Route { return queue.Route{Sink: coll} },
		Spawn:  func(p *actor.Props, name string) (*actor.PID, error) { return g.Spawn(p, name, actors.Fatal) },
	})
	if err != nil {
		t.Fatal(err)
	}
	exp, err := actors.NewExporter(sys, g, actors.ExportOptions{
		Store: actors.QueueStore{Q: q}, Log: log, RestartBackoff: 10 * time.Millisecond,
		IntegrationLogger: func(id string) (zerolog.Logger, io.Closer) {
			return log.With().Str("integration", id).Logger(), nopCloser{}
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	r := &rig{t: t, exp: exp, q: q, coll: coll, logs: logs}
	t.Cleanup(func() {
		_ = q.Close(context.Background())
		_ = g.Stop()
		sys.Shutdown()
		r.assertNoSecrets()
		if t.Failed() {
			t.Logf("logs:\n%s", logs.String())
		}
	})
	return r
}

// secrets are every form a credential of the fake could take in a log.
func secrets() []string {
	return []string{fakeToken, fakePAT, base64.StdEncoding.EncodeToString([]byte(fakeEmail + ":" + fakeToken))}
}

func (r *rig) assertNoSecrets() {
	r.t.Helper()
	for _, line := range strings.Split(r.logs.String(), "\n") {
		for _, s := range secrets() {
			if strings.Contains(line, s) {
				r.t.Errorf("a log line holds a credential (%.6s…): %s", s, line)
			}
		}
	}
}

// export runs one export of the jira integration to its end through the
// real queue and returns its result and the records it delivered.
func (r *rig) export(cfg string, reprocess bool) (actors.IntegrationResult, []envelope) {
	r.t.Helper()
	c, err := integrations.DecodeConfig(Type, []byte(cfg))
	if err != nil {
		r.t.Fatal(err)
	}
	r.n++
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	job, err := r.exp.Start(ctx, actors.ExportSpec{ID: fmt.Sprintf("export-%d", r.n), Reprocess: reprocess,
		Integrations: []actors.IntegrationSpec{{ID: testID, Type: Type, Config: c}}})
	if err != nil {
		r.t.Fatal(err)
	}
	res, err := job.Wait(ctx)
	if err != nil {
		r.t.Fatal(err)
	}
	ir := res.Integrations[0]
	for _, s := range secrets() {
		if strings.Contains(ir.Error, s) || strings.Contains(fmt.Sprint(ir.EntityErrors), s) {
			r.t.Errorf("a result holds a credential: %+v", ir)
		}
	}
	var sent int
	for _, n := range ir.Records {
		sent += int(n)
	}
	deadline := time.Now().Add(30 * time.Second)
	for r.coll.count() < r.seen+sent {
		if time.Now().After(deadline) {
			r.t.Fatalf("timed out: %d of %d records delivered", r.coll.count()-r.seen, sent)
		}
		time.Sleep(2 * time.Millisecond)
	}
	r.seen += sent
	return ir, r.coll.take()
}

// byModel groups records by model, then by id, counting repeats.
func byModel(envs []envelope) map[string]map[string]int {
	out := map[string]map[string]int{}
	for _, e := range envs {
		if out[e.Model] == nil {
			out[e.Model] = map[string]int{}
		}
		out[e.Model][e.ID]++
	}
	return out
}

// data decodes the last record with id into v.
func data(t *testing.T, envs []envelope, id string, v any) {
	t.Helper()
	for i := len(envs) - 1; i >= 0; i-- {
		if envs[i].ID == id {
			if err := json.Unmarshal(envs[i].Data, v); err != nil {
				t.Fatal(err)
			}
			return
		}
	}
	t.Fatalf("no record %s", id)
}
