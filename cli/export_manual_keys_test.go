package cli_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/rs/zerolog"

	"courier/config"
	"courier/queue"
)

// queueAt opens the queue store of root with no router, as a stopped
// service leaves it, and closes it when fn returns.
func queueAt(t *testing.T, root string, fn func(q *queue.Queue)) {
	t.Helper()
	sys := actor.NewActorSystem(actor.WithLoggerFactory(func(*actor.ActorSystem) *slog.Logger {
		return slog.New(slog.NewTextHandler(io.Discard, nil))
	}))
	defer sys.Shutdown()
	l := config.Layout{Root: root}
	if err := os.MkdirAll(l.DB(), 0o700); err != nil {
		t.Fatal(err)
	}
	q, err := queue.Open(sys, queue.Options{Dir: l.DB(), Logger: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := q.Close(context.Background()); err != nil {
			t.Fatal(err)
		}
	}()
	fn(q)
}

// A manual export delivers only the keys it creates: records another export
// (the backend's) left pending stay queued for the service, and the run says
// so instead of writing them to the local folder.
func TestManualExportLeavesOtherKeysPending(t *testing.T) {
	root := e2e(t)
	ctx := context.Background()
	queueAt(t, root, func(q *queue.Queue) {
		var recs [][]byte
		for i := 0; i < 300; i++ {
			recs = append(recs, fmt.Appendf(nil, `{"integration":"int_s","model":"item","session":["int_s"],"id":"backend-%d","data":{}}`, i))
		}
		if err := q.Enqueue(ctx, "export/int_s", recs, queue.Refuse); err != nil {
			t.Fatal(err)
		}
	})
	cfg := writeFile(t, t.TempDir(), "syn.yaml", "orgs: 1\nrepos_per_org: 1\nitems_per_repo: 20\n")
	r := runCourier(t, root, "export", "--integration", "synthetic", "--id", "local1", "--config", cfg)
	if r.code != 0 {
		t.Fatalf("manual export: %s", r)
	}
	if n := len(exported(t, root, "local1")); n != 20 {
		t.Fatalf("local1: %d records written, want 20", n)
	}
	if _, err := os.Stat(filepath.Join(root, "exports", "int_s")); !os.IsNotExist(err) {
		t.Fatalf("the manual run wrote the backend's records to the local folder (stat: %v)", err)
	}
	if !strings.Contains(r.stdout, "export/int_s") || !strings.Contains(r.stdout, "300") {
		t.Fatalf("the run should say 300 records of export/int_s wait for the service:\n%s", r)
	}
	queueAt(t, root, func(q *queue.Queue) {
		s, err := q.Status(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, k := range s.Keys {
			if k.Key == "export/int_s" && k.Pending == 300 {
				return
			}
		}
		t.Fatalf("export/int_s should still have 300 pending: %+v", s.Keys)
	})
}
