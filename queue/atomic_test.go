package queue

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// TestEnqueueWithIsOneBatch crashes a filesystem that drops what was not
// fsynced while producers call EnqueueWith: in what survives, every record
// has its key write and every key write its record, and every call
// answered nil before the crash survived.
func TestEnqueueWithIsOneBatch(t *testing.T) {
	fs := vfs.NewCrashableMem()
	ctx := context.Background()
	q, err := Open(newSystem(t), Options{Dir: "db", FS: fs, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var acked []string
	var wg sync.WaitGroup
	crashAt := make(chan struct{})
	for p := 0; p < 4; p++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 100; i++ {
				name := fmt.Sprintf("p%d-%03d", p, i)
				if err := q.EnqueueWith(ctx, "results", [][]byte{[]byte(name)}, Wait, KV{NS: "journal", Name: name, Value: []byte("done")}); err != nil {
					t.Errorf("enqueue: %v", err)
					return
				}
				mu.Lock()
				acked = append(acked, name)
				if p == 0 && i == 50 {
					close(crashAt)
				}
				mu.Unlock()
			}
		}()
	}
	<-crashAt
	mu.Lock()
	want := append([]string(nil), acked...)
	mu.Unlock()
	crashed := fs.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: 50, RNG: rand.New(rand.NewPCG(1, 7))})
	wg.Wait()
	if err := q.Close(ctx); err != nil {
		t.Fatal(err)
	}

	rec := newRecorder()
	q2, err := Open(newSystem(t), Options{Dir: "db", FS: crashed, Logger: testLogger(t), Router: routeAll(rec)})
	if err != nil {
		t.Fatalf("reopen after crash: %v", err)
	}
	defer q2.Close(ctx)
	waitFor(t, "recovered records delivered", func() bool {
		s, err := q2.Status(ctx)
		return err == nil && s.Pending == 0
	})
	records := map[string]bool{}
	for _, r := range rec.snapshot("results") {
		records[r] = true
	}
	kvs := map[string]bool{}
	if err := q2.Scan("journal", func(name string, _ []byte) error { kvs[name] = true; return nil }); err != nil {
		t.Fatal(err)
	}
	for name := range records {
		if !kvs[name] {
			t.Fatalf("record %s survived without its key write", name)
		}
	}
	for name := range kvs {
		if !records[name] {
			t.Fatalf("key write %s survived without its record", name)
		}
	}
	for _, name := range want {
		if !records[name] {
			t.Fatalf("acknowledged %s lost in the crash", name)
		}
	}
	if len(records) < len(want) {
		t.Fatalf("%d survived, %d acknowledged", len(records), len(want))
	}
}
