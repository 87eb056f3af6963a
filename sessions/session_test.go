package sessions_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"slices"
	"sync"
	"testing"

	"github.com/asynkron/protoactor-go/actor"
	"go.uber.org/goleak"

	"courier/actors"
	"courier/queue"
	"courier/sessions"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, goleak.IgnoreTopFunction("github.com/asynkron/protoactor-go/actor.NewDeadLetter.NewThrottle.func4.1"))
}

// journal wraps the real queue store and writes down the order in which
// records became durable and tokens were committed.
type journal struct {
	actors.QueueStore
	mu      sync.Mutex
	ops     []string
	failKey bool
}

func (j *journal) Append(ctx context.Context, key string, payloads [][]byte) error {
	if j.failKey {
		return errors.New("disk full")
	}
	err := j.QueueStore.Append(ctx, key, payloads)
	j.mu.Lock()
	j.ops = append(j.ops, "data")
	j.mu.Unlock()
	return err
}

func (j *journal) PutToken(ctx context.Context, path, token string) error {
	err := j.QueueStore.PutToken(ctx, path, token)
	j.mu.Lock()
	j.ops = append(j.ops, "token:"+token)
	j.mu.Unlock()
	return err
}

func newStore(t *testing.T) *journal {
	t.Helper()
	sys := actor.NewActorSystem(actor.WithLoggerFactory(func(*actor.ActorSystem) *slog.Logger {
		return slog.New(slog.NewTextHandler(io.Discard, nil))
	}))
	q, err := queue.Open(sys, queue.Options{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = q.Close(context.Background()); sys.Shutdown() })
	return &journal{QueueStore: actors.QueueStore{Q: q}}
}

func TestNestingPathsAndSiblingTokens(t *testing.T) {
	st := newStore(t)
	ctx := context.Background()
	run := sessions.NewRun(sessions.RunOptions{IntegrationID: "int_1", Store: st})
	org := run.Root().Track("org:acme")
	api := org.Track("repo:acme/api")
	web := org.Track("repo:acme/web")
	prAPI, tok, err := api.Open("pull_request")
	if err != nil || tok != "" {
		t.Fatalf("first open: %q %v", tok, err)
	}
	prWeb, _, _ := web.Open("pull_request")
	if got := prAPI.Path(); !slices.Equal(got, []string{"int_1", "org:acme", "repo:acme/api", "pull_request"}) {
		t.Fatalf("path %v", got)
	}
	if err := prAPI.Send(ctx, sessions.Record{ID: "pr:1", Data: map[string]int{"n": 1}}); err != nil {
		t.Fatal(err)
	}
	if err := prAPI.Done(ctx, "t-api"); err != nil {
		t.Fatal(err)
	}
	if err := prWeb.Done(ctx, "t-web"); err != nil {
		t.Fatal(err)
	}
	// Siblings keep their own tokens.
	run2 := sessions.NewRun(sessions.RunOptions{IntegrationID: "int_1", Store: st})
	o2 := run2.Root().Track("org:acme")
	_, a, _ := o2.Track("repo:acme/api").Open("pull_request")
	_, w, _ := o2.Track("repo:acme/web").Open("pull_request")
	if a != "t-api" || w != "t-web" {
		t.Fatalf("tokens %q %q", a, w)
	}
	if !run2.Stats().Incremental {
		t.Fatal("a run that read a token is incremental")
	}
	// Tracking sessions cannot send; a parent with running children cannot end.
	if err := org.Send(ctx, sessions.Record{ID: "x"}); err == nil {
		t.Fatal("tracking session accepted a record")
	}
	if err := org.Done(ctx, ""); err == nil {
		t.Fatal("org ended while its repos run")
	}
	_ = api.Done(ctx, "")
	_ = web.Done(ctx, "")
	if err := org.Done(ctx, ""); err != nil {
		t.Fatalf("org with finished children: %v", err)
	}
	run3 := sessions.NewRun(sessions.RunOptions{IntegrationID: "int_1", Store: st})
	o3 := run3.Root().Track("org:acme")
	o3.Track("repo:x")
	if err := o3.Done(ctx, "t"); err == nil {
		t.Fatal("Done with a running child must fail")
	}
}

func TestTokenOnlyAfterData(t *testing.T) {
	st := newStore(t)
	ctx := context.Background()
	run := sessions.NewRun(sessions.RunOptions{IntegrationID: "i", Store: st, MaxBatch: 3})
	s, _, _ := run.Root().Open("item")
	var wg sync.WaitGroup
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			recs := make([]sessions.Record, 7)
			for i := range recs {
				recs[i] = sessions.Record{ID: "r", Data: i}
			}
			if err := s.Send(ctx, recs...); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if err := s.Done(ctx, "last"); err != nil {
		t.Fatal(err)
	}
	if n := len(st.ops); st.ops[n-1] != "token:last" || slices.Index(st.ops, "token:last") != n-1 {
		t.Fatalf("token not after every append: %v", st.ops)
	}
	if got := run.Stats().Records["item"]; got != 28 {
		t.Fatalf("records %d", got)
	}
	// 4 sends of 7 in batches of at most 3: 3 appends each.
	if data := len(st.ops) - 1; data != 12 {
		t.Fatalf("%d appends, want 12", data)
	}
}

func TestUnfinishedOrFailedSessionKeepsOldToken(t *testing.T) {
	st := newStore(t)
	ctx := context.Background()
	first := sessions.NewRun(sessions.RunOptions{IntegrationID: "i", Store: st})
	s, _, _ := first.Root().Open("item")
	_ = s.Send(ctx, sessions.Record{ID: "a", Data: 1})
	if err := s.Done(ctx, "v1"); err != nil {
		t.Fatal(err)
	}
	// A run that sends but never finishes (a crash) leaves v1 in place.
	crashed := sessions.NewRun(sessions.RunOptions{IntegrationID: "i", Store: st})
	s2, tok, _ := crashed.Root().Open("item")
	if tok != "v1" {
		t.Fatalf("token %q", tok)
	}
	_ = s2.Send(ctx, sessions.Record{ID: "b", Data: 2})
	// A run whose send failed refuses to commit.
	failing := sessions.NewRun(sessions.RunOptions{IntegrationID: "i", Store: st})
	s3, tok, _ := failing.Root().Open("item")
	if tok != "v1" {
		t.Fatalf("after an unfinished run the token is %q, want v1", tok)
	}
	st.failKey = true
	if err := s3.Send(ctx, sessions.Record{ID: "c", Data: 3}); err == nil {
		t.Fatal("send should fail")
	}
	if err := s3.Done(ctx, "v3"); err == nil {
		t.Fatal("Done after a failed send must refuse")
	}
	st.failKey = false
	s3.Fail(errors.New("repo unreachable"))
	// A failed session takes its running descendants with it.
	repo := failing.Root().Track("repo:x")
	model, _, _ := repo.Open("commit")
	repo.Fail(errors.New("fetch failed"))
	if model.State() != sessions.Failed {
		t.Fatalf("model session under a failed repo is %s", model.State())
	}
	if ee := failing.Stats().EntityErrors; len(ee) != 2 || ee[0].Error != "repo unreachable" {
		t.Fatalf("entity errors %+v", ee)
	}
	check := sessions.NewRun(sessions.RunOptions{IntegrationID: "i", Store: st})
	if _, tok, _ := check.Root().Open("item"); tok != "v1" {
		t.Fatalf("token %q after failures, want v1", tok)
	}
	// Reprocess ignores it.
	re := sessions.NewRun(sessions.RunOptions{IntegrationID: "i", Store: st, Reprocess: true})
	if _, tok, _ := re.Root().Open("item"); tok != "" {
		t.Fatalf("reprocess saw token %q", tok)
	}
}

func TestSnapshotRollsUp(t *testing.T) {
	st := newStore(t)
	ctx := context.Background()
	run := sessions.NewRun(sessions.RunOptions{IntegrationID: "i", Store: st})
	org := run.Root().Track("org:a")
	r1 := org.Track("repo:1")
	m, _, _ := r1.Open("item")
	m.Progress(5, 10)
	_ = m.Send(ctx, sessions.Record{ID: "x", Data: 1}, sessions.Record{ID: "y", Data: 2})
	org.Track("repo:2")
	_ = m.Done(ctx, "")
	_ = r1.Done(ctx, "")
	nodes := run.Snapshot()
	if len(nodes) != 5 {
		t.Fatalf("nodes %+v", nodes)
	}
	orgNode := nodes[1]
	if orgNode.Current != 1 || orgNode.Total != 2 || orgNode.Sent != 2 {
		t.Fatalf("org rolls up children: %+v", orgNode)
	}
	if nodes[3].Kind != sessions.Model || nodes[3].Current != 5 || nodes[3].Total != 10 {
		t.Fatalf("model node %+v", nodes[3])
	}
}
