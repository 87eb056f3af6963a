package actors_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"go.uber.org/goleak"

	"courier/actors"
	"courier/integrations"
	"courier/integrations/synthetic"
	"courier/internal/exporttest"
	"courier/queue"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, exporttest.GoleakOptions()...)
}

// rig is a real agent core (exporttest.Rig) whose queue delivers to the
// local sink.
type rig struct {
	*exporttest.Rig
	out string
}

func newRig(t *testing.T, opts actors.ExportOptions) *rig {
	t.Helper()
	dir := t.TempDir()
	out := filepath.Join(dir, "exports")
	r := exporttest.New(t, exporttest.Options{Dir: dir, Level: zerolog.WarnLevel, Echo: true,
		Sink: queue.DirSink{Dir: out}, Export: opts})
	return &rig{Rig: r, out: out}
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
	return r.Run(t, spec)
}

// drained waits until the local sink has every record and returns the ids
// written for one integration, with how often each was written.
func (r *rig) drained(t *testing.T, id string) map[string]int {
	t.Helper()
	r.Drain(t)
	return exporttest.DirIDs(t, r.out, id)
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
	job, err := r.Exp.Start(ctx, actors.ExportSpec{ID: "t5", Integrations: []actors.IntegrationSpec{
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

// An export that waits for room in a full queue is not stalled: waiting on
// backpressure is the queue's progress, not the integration's hang.
func TestBackpressureIsNotAStall(t *testing.T) {
	const stall = 200 * time.Millisecond
	var first atomic.Int64
	sink := queue.SinkFunc(func(ctx context.Context, key string, batch []queue.Message) error {
		first.CompareAndSwap(0, time.Now().UnixNano())
		// The upstream is down for several stall timeouts: the export's
		// next Append waits for room all that time.
		if time.Since(time.Unix(0, first.Load())) < 5*stall {
			return &queue.RetryAfterError{After: 10 * time.Millisecond, Err: errors.New("503")}
		}
		return queue.DirSink{Dir: filepath.Join(t.TempDir(), "out")}.Deliver(ctx, key, batch)
	})
	dir := t.TempDir()
	r := exporttest.New(t, exporttest.Options{Dir: dir, Level: zerolog.WarnLevel, Echo: true, Sink: sink,
		Quota: queue.Quota{MaxKeyItems: 100}, Export: actors.ExportOptions{StallTimeout: stall}})
	res := r.Run(t, actors.ExportSpec{ID: "bp", Integrations: []actors.IntegrationSpec{
		syntheticSpec(t, "waits", `{"orgs":1,"repos_per_org":4,"items_per_repo":60}`),
	}})
	if w := res.Integrations[0]; w.Status != actors.StatusSucceeded || w.Records["item"] != 240 {
		t.Fatalf("an export waiting on a full queue failed: %+v", w)
	}
}

// TestSameExportStartsAgainOnceDone: a run of a command may start the
// moment the previous run of the same command is done (the router resumes
// a command as soon as its old run ended). Before, Done came before the
// job's actor had left the registry, so such a start now and then failed
// with "spawn: name exists" (seen in CI on the router-restart test).
func TestSameExportStartsAgainOnceDone(t *testing.T) {
	r := newRig(t, actors.ExportOptions{})
	spec := actors.ExportSpec{ID: "again", Integrations: []actors.IntegrationSpec{
		syntheticSpec(t, "a", `{"orgs":1,"repos_per_org":1,"items_per_repo":1}`)}}
	for i := 0; i < 200; i++ {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		j, err := r.Exp.Start(ctx, spec)
		if err != nil {
			cancel()
			t.Fatalf("run %d: %v", i, err)
		}
		if _, err := j.Wait(ctx); err != nil {
			cancel()
			t.Fatalf("run %d: %v", i, err)
		}
		cancel()
	}
}
