package queue

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// TestCrashKeepsEverythingAcknowledged crashes a filesystem that drops
// whatever was not fsynced, part-way through concurrent enqueues, and checks
// that every enqueue answered nil before the crash survives, in order.
func TestCrashKeepsEverythingAcknowledged(t *testing.T) {
	for round := 0; round < 3; round++ {
		t.Run(fmt.Sprint("seed", round), func(t *testing.T) { crashRound(t, int64(round)) })
	}
}

func crashRound(t *testing.T, seed int64) {
	fs := vfs.NewCrashableMem()
	ctx := context.Background()
	sys := newSystem(t)
	q, err := Open(sys, Options{Dir: "db", FS: fs, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	const producers, each = 8, 200
	var mu sync.Mutex
	acked := map[string][]string{}
	var wg sync.WaitGroup
	crashAt := make(chan struct{})
	for p := 0; p < producers; p++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			key := fmt.Sprintf("k%d", p%3)
			for i := 0; i < each; i++ {
				pl := fmt.Sprintf("p%d-%04d", p, i)
				if err := q.Enqueue(ctx, key, [][]byte{[]byte(pl)}, Refuse); err != nil {
					t.Errorf("enqueue: %v", err)
					return
				}
				mu.Lock()
				acked[key] = append(acked[key], pl)
				if p == 0 && i == each/2 {
					close(crashAt)
				}
				mu.Unlock()
			}
		}()
	}
	<-crashAt
	// Take what was acknowledged, then crash: anything acknowledged is
	// synced already, so the clone must have it, whatever else it drops.
	mu.Lock()
	want := map[string][]string{}
	for k, v := range acked {
		want[k] = append([]string(nil), v...)
	}
	mu.Unlock()
	crashed := fs.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: 50, RNG: rand.New(rand.NewPCG(uint64(seed), 7))})
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
	total := 0
	for _, v := range want {
		total += len(v)
	}
	// Pending reaches 0 only once every recovered item was handed to the
	// recorder, so a lost item shows below as missing, not as a time-out.
	waitFor(t, "recovered items delivered", func() bool {
		s, err := q2.Status(ctx)
		return err == nil && s.Pending == 0
	})
	if rec.total() < total {
		t.Errorf("recovered %d items, %d were acknowledged", rec.total(), total)
	}
	for k, w := range want {
		got := rec.snapshot(k)
		// Each producer's items must appear in its own order, and every
		// acknowledged one must be there.
		pos := map[string]int{}
		for i, g := range got {
			pos[g] = i
		}
		last := map[string]int{}
		for _, pl := range w {
			i, ok := pos[pl]
			if !ok {
				t.Fatalf("acknowledged %s of %s lost in the crash", pl, k)
			}
			prod := pl[:2]
			if j, seen := last[prod]; seen && i < j {
				t.Fatalf("%s out of order after crash", pl)
			}
			last[prod] = i
		}
	}
}
