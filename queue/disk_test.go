package queue

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestFullDisk fills a small filesystem with events while the upstream is
// down. Every enqueue must be answered, stored or refused with ErrDiskFull,
// the process must stay up, Ready must say why, and what was acknowledged
// must be delivered in order once the upstream is back; once space
// returns, events are taken again without a restart.
//
// "threshold" leaves the disk to the statfs check alone; "enospc" keeps
// almost nothing free, so that Pebble's own write hits ENOSPC and the
// reserve has to save it.
func TestFullDisk(t *testing.T) {
	for _, tc := range []struct {
		name    string
		minFree int64
	}{
		{"threshold", 2 << 20},
		{"enospc", 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			q := fullDisk(t, tc.minFree)
			q.st.disk.mu.Lock()
			released := q.st.disk.releases
			q.st.disk.mu.Unlock()
			if tc.name == "enospc" && released == 0 {
				t.Fatal("the disk never filled under Pebble: the reserve was not exercised")
			}
		})
	}
}

func fullDisk(t *testing.T, minFree int64) *Queue {
	const capacity = 12 << 20
	fs := newSmallFS(capacity)
	sys := newSystem(t)
	up := make(chan struct{})
	rec := newRecorder()
	rec.fail = func(string, []Message) error {
		select {
		case <-up:
			return nil
		default:
			return errors.New("upstream down")
		}
	}
	q := openQueue(t, sys, Options{
		Dir: "db", FS: fs, Router: routeAll(rec), BackoffInitial: time.Millisecond, BackoffMax: 5 * time.Millisecond,
		MinFreeBytes: minFree, DiskReserveBytes: 2 << 20,
	})
	ctx := context.Background()
	if err := q.Ready(ctx); err != nil {
		t.Fatalf("ready with an empty disk: %v", err)
	}
	var acked []string
	payload := strings.Repeat("x", 2000)
	enqueue := func(i int) error {
		ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		p := fmt.Sprintf("e%06d-%s", i, payload)
		err := q.Enqueue(ctx, "k", [][]byte{[]byte(p)}, Refuse)
		switch {
		case err == nil:
			acked = append(acked, p)
		case errors.Is(err, context.DeadlineExceeded):
			t.Fatalf("enqueue %d got no answer in 30 s with %d bytes free: the queue is wedged", i, fs.free())
		}
		return err
	}
	i := 0
	var refused error
	for ; refused == nil; i++ {
		if i > 100_000 {
			t.Fatalf("%d events stored on a %d-byte filesystem and none refused", i, capacity)
		}
		refused = enqueue(i)
	}
	t.Logf("%d events stored, then refused: %v (%d bytes free)", len(acked), refused, fs.free())
	if !errors.Is(refused, ErrDiskFull) {
		t.Fatalf("refused with %v, want ErrDiskFull", refused)
	}
	if len(acked) == 0 {
		t.Fatal("nothing was stored before the disk filled")
	}
	// Still full: refused again at once, and not ready, saying why.
	if err := enqueue(i); !errors.Is(err, ErrDiskFull) {
		t.Fatalf("second enqueue on a full disk: %v, want ErrDiskFull", err)
	}
	i++
	if err := q.Ready(ctx); err == nil || !errors.Is(err, ErrDiskFull) && !strings.Contains(err.Error(), "disk") {
		t.Fatalf("Ready on a full disk: %v, want an error naming the disk", err)
	}
	st, err := q.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.DiskFull == "" {
		t.Fatalf("status on a full disk has no disk_full reason: %+v", st)
	}
	if _, err := q.Retry(ctx, ""); !errors.Is(err, ErrDiskFull) {
		t.Fatalf("retry on a full disk: %v, want ErrDiskFull", err)
	}

	// The upstream comes back: everything acknowledged drains, in order,
	// although the disk is full.
	close(up)
	waitFor(t, "the acknowledged events to be delivered", func() bool { return len(rec.snapshot("k")) >= len(acked) })
	waitFor(t, "the queue to be empty", func() bool {
		st, err := q.Status(ctx)
		return err == nil && st.Pending == 0
	})
	if got := rec.snapshot("k"); !slices.Equal(got, acked) {
		t.Fatalf("delivered %d events, want the %d acknowledged in order", len(got), len(acked))
	}

	// Space returns (an operator frees some): taken again, no restart.
	fs.setCapacity(capacity * 4)
	waitFor(t, "the queue to be ready again", func() bool { return q.Ready(ctx) == nil })
	before := len(acked)
	if err := enqueue(i); err != nil {
		t.Fatalf("enqueue after space returned: %v", err)
	}
	waitFor(t, "the new event to be delivered", func() bool { return len(rec.snapshot("k")) == before+1 })
	return q
}

// TestFullDiskWaitProducerWaits parks a Wait producer while the disk is
// full and admits it once space returns; a restart on the full disk opens
// the store and keeps what it holds.
func TestFullDiskWaitProducerWaits(t *testing.T) {
	fs := newSmallFS(8 << 20)
	sys := newSystem(t)
	opts := Options{Dir: "db", FS: fs, MinFreeBytes: 2 << 20, DiskReserveBytes: 1 << 20, Logger: testLogger(t)}
	q, err := Open(sys, opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	payload := []byte(strings.Repeat("y", 4000))
	stored := 0
	fill := func() {
		for {
			err := q.Enqueue(ctx, "k", [][]byte{payload}, Refuse)
			if errors.Is(err, ErrDiskFull) {
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			stored++
		}
	}
	fill()
	if err := q.Close(ctx); err != nil {
		t.Fatal(err)
	}
	// A restart while the disk is full (systemd after a crash) opens it.
	q, err = Open(sys, opts)
	if err != nil {
		t.Fatalf("reopen on a full disk: %v", err)
	}
	defer q.Close(ctx)
	fill()
	if err := q.Ready(ctx); !errors.Is(err, ErrDiskFull) {
		t.Fatalf("Ready after reopening on a full disk: %v, want ErrDiskFull", err)
	}
	st, err := q.Status(ctx)
	if err != nil || st.Pending != int64(stored) {
		t.Fatalf("after reopen: %d pending (%v), want the %d stored", st.Pending, err, stored)
	}
	done := make(chan error, 1)
	go func() { done <- q.Enqueue(ctx, "k", [][]byte{payload}, Wait) }()
	waitFor(t, "the Wait producer to park", func() bool {
		st, err := q.Status(ctx)
		return err == nil && st.Waiting == 1
	})
	fs.setCapacity(64 << 20)
	if err := <-done; err != nil {
		t.Fatalf("Wait producer after space returned: %v", err)
	}
	if err := q.Ready(ctx); err != nil {
		t.Fatalf("Ready after space returned: %v", err)
	}
}
