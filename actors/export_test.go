package actors_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/rs/zerolog"
	"go.uber.org/goleak"

	"courier/actors"
	"courier/integrations"
	"courier/integrations/synthetic"
	"courier/queue"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, goleak.IgnoreTopFunction("github.com/asynkron/protoactor-go/actor.NewDeadLetter.NewThrottle.func4.1"))
}

// rig is a real agent core: actor system, guardian, queue on disk with the
// local sink, and the exporter.
type rig struct {
	q   *queue.Queue
	exp *actors.Exporter
	out string
}

func newRig(t *testing.T, opts actors.ExportOptions) *rig {
	t.Helper()
	log := zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel)
	sys := actor.NewActorSystem(actor.WithLoggerFactory(func(*actor.ActorSystem) *slog.Logger {
		return slog.New(slog.NewTextHandler(io.Discard, nil))
	}))
	g, err := actors.NewGuardian(sys, actors.GuardianOptions{Log: log})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	out := filepath.Join(dir, "exports")
	q, err := queue.Open(sys, queue.Options{
		Dir: filepath.Join(dir, "db"), Logger: log, Linger: time.Millisecond,
		Router: func(string) queue.Route { return queue.Route{Sink: queue.DirSink{Dir: out}} },
		Spawn:  func(p *actor.Props, name string) (*actor.PID, error) { return g.Spawn(p, name, actors.Fatal) },
	})
	if err != nil {
		t.Fatal(err)
	}
	opts.Store = actors.QueueStore{Q: q}
	opts.Log = log
	if opts.RestartBackoff == 0 {
		opts.RestartBackoff = 10 * time.Millisecond
	}
	exp, err := actors.NewExporter(sys, g, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = q.Close(context.Background())
		_ = g.Stop()
		sys.Shutdown()
	})
	return &rig{q: q, exp: exp, out: out}
}

func syntheticSpec(t *testing.T, id, cfg string) actors.IntegrationSpec {
	t.Helper()
	c, err := integrations.DecodeConfig(synthetic.Type, []byte(cfg))
	if err != nil {
		t.Fatal(err)
	}
	return actors.IntegrationSpec{ID: id, Type: synthetic.Type, Config: c}
}

func (r *rig) run(t *testing.T, spec actors.ExportSpec) actors.ExportResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	job, err := r.exp.Start(ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	res, err := job.Wait(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

// drained waits until the local sink has every record and returns the ids
// written for one integration, with how often each was written.
func (r *rig) drained(t *testing.T, id string) map[string]int {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		s, err := r.q.Status(context.Background())
		if err == nil && s.Pending == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("queue did not drain: %+v", s)
		}
		time.Sleep(5 * time.Millisecond)
	}
	ids := map[string]int{}
	files, _ := filepath.Glob(filepath.Join(r.out, id, "*.ndjson"))
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
				t.Fatalf("%s: bad line %q: %v", f, sc.Text(), err)
			}
			ids[env.ID]++
		}
		fh.Close()
	}
	return ids
}

func expectAll(t *testing.T, ids map[string]int, orgs, repos, items int) {
	t.Helper()
	for o := 0; o < orgs; o++ {
		for r := 0; r < repos; r++ {
			for n := 0; n < items; n++ {
				if id := fmt.Sprintf("synthetic:org%d:repo%d:%d", o, r, n); ids[id] == 0 {
					t.Fatalf("record %s missing (gap)", id)
				}
			}
		}
	}
	if want := orgs * repos * items; len(ids) != want {
		t.Fatalf("%d distinct records, want %d", len(ids), want)
	}
}

func TestPanicRestartsAndResumesWhileSiblingSucceeds(t *testing.T) {
	r := newRig(t, actors.ExportOptions{})
	res := r.run(t, actors.ExportSpec{ID: "t1", Integrations: []actors.IntegrationSpec{
		syntheticSpec(t, "crashy", `{"orgs":2,"repos_per_org":2,"items_per_repo":120,"panic_after":170}`),
		syntheticSpec(t, "steady", `{"orgs":1,"repos_per_org":3,"items_per_repo":80}`),
	}})
	byID := map[string]actors.IntegrationResult{}
	for _, i := range res.Integrations {
		byID[i.ID] = i
	}
	c := byID["crashy"]
	if c.Status != actors.StatusSucceeded || c.Restarts != 1 {
		t.Fatalf("crashy: %+v", c)
	}
	if !c.Incremental {
		t.Fatal("the restarted attempt should have resumed from tokens")
	}
	if s := byID["steady"]; s.Status != actors.StatusSucceeded || s.Records["item"] != 240 {
		t.Fatalf("steady: %+v", s)
	}
	expectAll(t, r.drained(t, "crashy"), 2, 2, 120)
	expectAll(t, r.drained(t, "steady"), 1, 3, 80)
	// Resumed, not restarted from scratch: at most the records since the
	// last checkpoint were sent twice.
	if c.Records["item"] >= 480+170 {
		t.Fatalf("crashy re-sent too much: %d records for 480", c.Records["item"])
	}
}

func TestHangIsStalledAndOthersFinish(t *testing.T) {
	r := newRig(t, actors.ExportOptions{StallTimeout: 300 * time.Millisecond})
	res := r.run(t, actors.ExportSpec{ID: "t2", Integrations: []actors.IntegrationSpec{
		syntheticSpec(t, "hangs", `{"items_per_repo":50,"hang_after":30}`),
		syntheticSpec(t, "fine", `{"items_per_repo":50}`),
	}})
	h, f := res.Integrations[0], res.Integrations[1]
	if h.Status != actors.StatusFailed || !strings.Contains(h.Error, "stalled") {
		t.Fatalf("hangs: %+v", h)
	}
	if f.Status != actors.StatusSucceeded {
		t.Fatalf("fine: %+v", f)
	}
	if !res.Failed() {
		t.Fatal("an export with a failed integration must report failure")
	}
}

func TestErrorFailsWithTheError(t *testing.T) {
	r := newRig(t, actors.ExportOptions{})
	res := r.run(t, actors.ExportSpec{ID: "t3", Integrations: []actors.IntegrationSpec{
		syntheticSpec(t, "errs", `{"items_per_repo":50,"error_after":20}`),
	}})
	e := res.Integrations[0]
	if e.Status != actors.StatusFailed || e.Error != "synthetic: error_after 20 reached" || e.Restarts != 0 {
		t.Fatalf("errs: %+v", e)
	}
}

func TestSecondExportIsIncrementalAndReprocessIsFull(t *testing.T) {
	r := newRig(t, actors.ExportOptions{})
	spec := func(id string, reprocess bool) actors.ExportSpec {
		return actors.ExportSpec{ID: id, Reprocess: reprocess, Integrations: []actors.IntegrationSpec{
			syntheticSpec(t, "s", `{"orgs":1,"repos_per_org":2,"items_per_repo":75}`),
		}}
	}
	first := r.run(t, spec("a", false)).Integrations[0]
	if first.Records["item"] != 150 || first.Incremental {
		t.Fatalf("first: %+v", first)
	}
	second := r.run(t, spec("b", false)).Integrations[0]
	if len(second.Records) != 0 && second.Records["item"] != 0 || !second.Incremental {
		t.Fatalf("second should send nothing new: %+v", second)
	}
	third := r.run(t, spec("c", true)).Integrations[0]
	if third.Records["item"] != 150 || third.Incremental {
		t.Fatalf("reprocess: %+v", third)
	}
	expectAll(t, r.drained(t, "s"), 1, 2, 75)
}

func TestCancel(t *testing.T) {
	r := newRig(t, actors.ExportOptions{})
	ctx := context.Background()
	job, err := r.exp.Start(ctx, actors.ExportSpec{ID: "t5", Integrations: []actors.IntegrationSpec{
		syntheticSpec(t, "slow", `{"items_per_repo":1000,"delay_ms":5}`),
	}})
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond)
	job.Cancel()
	res, err := job.Wait(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if s := res.Integrations[0].Status; s != actors.StatusCancelled {
		t.Fatalf("status %s", s)
	}
}
