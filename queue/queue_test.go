package queue

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
)

func payloads(prefix string, from, n int) [][]byte {
	out := make([][]byte, n)
	for i := range out {
		out[i] = fmt.Appendf(nil, "%s-%05d", prefix, from+i)
	}
	return out
}

func TestOrderPerKeyManyProducers(t *testing.T) {
	sys := newSystem(t)
	rec := newRecorder()
	q := openQueue(t, sys, Options{Dir: t.TempDir(), Router: routeAll(rec), BatchMaxItems: 7})
	ctx := context.Background()
	const keys, perKey = 4, 300
	var wg sync.WaitGroup
	for k := 0; k < keys; k++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			key := fmt.Sprintf("k%d", k)
			for i := 0; i < perKey; i += 3 {
				if err := q.Enqueue(ctx, key, payloads(key, i, 3), Wait); err != nil {
					t.Errorf("enqueue %s: %v", key, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	waitFor(t, "all delivered", func() bool { return rec.total() == keys*perKey })
	for k := 0; k < keys; k++ {
		key := fmt.Sprintf("k%d", k)
		got := rec.snapshot(key)
		for i, p := range got {
			if want := fmt.Sprintf("%s-%05d", key, i); p != want {
				t.Fatalf("%s[%d] = %s, want %s (order broken)", key, i, p, want)
			}
		}
	}
	waitFor(t, "status drained", func() bool {
		s, err := q.Status(ctx)
		return err == nil && s.Pending == 0 && s.DeliveredHour == keys*perKey
	})
}

func TestKeysDoNotBlockEachOther(t *testing.T) {
	sys := newSystem(t)
	rec := newRecorder()
	release := make(chan struct{})
	rec.fail = func(key string, _ []Message) error {
		if key == "stuck" {
			<-release
			return errors.New("upstream down")
		}
		return nil
	}
	defer close(release)
	q := openQueue(t, sys, Options{Dir: t.TempDir(), Router: routeAll(rec)})
	ctx := context.Background()
	if err := q.Enqueue(ctx, "stuck", payloads("s", 0, 1), Refuse); err != nil {
		t.Fatal(err)
	}
	if err := q.Enqueue(ctx, "free", payloads("f", 0, 5), Refuse); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "free key delivered while another key is stuck", func() bool { return len(rec.snapshot("free")) == 5 })
}

func TestQuotaRefuseAndWait(t *testing.T) {
	sys := newSystem(t)
	rec := newRecorder()
	var open atomic.Bool
	rec.fail = func(string, []Message) error {
		if !open.Load() {
			return &RetryAfterError{After: 10 * time.Millisecond, Err: errors.New("503")}
		}
		return nil
	}
	q := openQueue(t, sys, Options{
		Dir: t.TempDir(), Router: routeAll(rec),
		Quota:          Quota{MaxItems: 10, MaxKeyItems: 6},
		BackoffInitial: 5 * time.Millisecond, BackoffMax: 20 * time.Millisecond,
	})
	ctx := context.Background()
	if err := q.Enqueue(ctx, "a", payloads("a", 0, 6), Refuse); err != nil {
		t.Fatal(err)
	}
	// Per-key quota reached for a; b still has room under the global one.
	if err := q.Enqueue(ctx, "a", payloads("a", 6, 1), Refuse); !errors.Is(err, ErrFull) {
		t.Fatalf("per-key quota: got %v, want ErrFull", err)
	}
	if err := q.Enqueue(ctx, "b", payloads("b", 0, 4), Refuse); err != nil {
		t.Fatal(err)
	}
	if err := q.Enqueue(ctx, "c", payloads("c", 0, 1), Refuse); !errors.Is(err, ErrFull) {
		t.Fatalf("global quota: got %v, want ErrFull", err)
	}
	// Wait bounded by its context gives up with the context's error.
	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	err := q.Enqueue(short, "c", payloads("c", 0, 1), Wait)
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("wait with deadline: got %v", err)
	}
	// A waiting producer proceeds once delivery frees room.
	done := make(chan error, 1)
	go func() { done <- q.Enqueue(ctx, "c", payloads("c", 0, 2), Wait) }()
	select {
	case err := <-done:
		t.Fatalf("enqueue should wait while full, returned %v", err)
	case <-time.After(100 * time.Millisecond):
	}
	open.Store(true)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	waitFor(t, "all delivered", func() bool { return rec.total() == 12 })
	// A request that can never fit is refused with a reason, not parked.
	if err := q.Enqueue(ctx, "d", payloads("d", 0, 7), Wait); err == nil || errors.Is(err, ErrFull) {
		t.Fatalf("oversized request: got %v, want a clear error", err)
	}
}

func TestReopenRecoversPendingAndCounters(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	{
		sys := newSystem(t)
		q, err := Open(sys, Options{Dir: dir, Logger: testLogger(t)}) // no router: stays pending
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i < 50; i += 10 {
			if err := q.Enqueue(ctx, "events/x", payloads("x", i, 10), Refuse); err != nil {
				t.Fatal(err)
			}
		}
		if err := q.Put(ctx, "tokens", "int_1/repo:a", []byte("sha1")); err != nil {
			t.Fatal(err)
		}
		if err := q.Close(ctx); err != nil {
			t.Fatal(err)
		}
	}
	sys := newSystem(t)
	rec := newRecorder()
	gate := make(chan struct{})
	rec.fail = func(string, []Message) error { <-gate; return nil }
	q := openQueue(t, sys, Options{Dir: dir, Router: routeAll(rec)})
	s, err := q.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if s.Pending != 50 || s.PendingBytes != int64(50*(len("x-00000")+recordHeader)) {
		t.Fatalf("after reopen: pending %d bytes %d", s.Pending, s.PendingBytes)
	}
	if s.OldestPendingS <= 0 {
		t.Fatalf("oldest pending age not recovered: %v", s.OldestPendingS)
	}
	v, err := q.Get("tokens", "int_1/repo:a")
	if err != nil || string(v) != "sha1" {
		t.Fatalf("token after reopen: %q %v", v, err)
	}
	close(gate)
	waitFor(t, "delivered after reopen", func() bool { return rec.total() == 50 })
	if got := rec.snapshot("events/x"); got[0] != "x-00000" || got[49] != "x-00049" {
		t.Fatalf("order after reopen: %v", got)
	}
}

func TestDeadLetterAndRetry(t *testing.T) {
	sys := newSystem(t)
	rec := newRecorder()
	var reject atomic.Bool
	reject.Store(true)
	rec.fail = func(_ string, b []Message) error {
		if reject.Load() && string(b[0].Payload) == "bad" {
			return Permanent(errors.New("400 invalid event"))
		}
		return nil
	}
	q := openQueue(t, sys, Options{Dir: t.TempDir(), Router: func(string) Route { return Route{Sink: rec, MaxItems: 1} }})
	ctx := context.Background()
	for _, p := range []string{"ok1", "bad", "ok2"} {
		if err := q.Enqueue(ctx, "k", [][]byte{[]byte(p)}, Refuse); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "the key moves on past the dead letter", func() bool { return len(rec.snapshot("k")) == 2 })
	var st Status
	waitFor(t, "failed counted", func() bool { st, _ = q.Status(ctx); return st.Failed == 1 })
	var items []FailedItem
	if err := q.Failed("k", func(it FailedItem) error { items = append(items, it); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(items) != 1 || string(items[0].Payload) != "bad" || items[0].Reason != "400 invalid event" {
		t.Fatalf("failed items: %+v", items)
	}
	reject.Store(false)
	n, err := q.Retry(ctx, "")
	if err != nil || n != 1 {
		t.Fatalf("retry: %d %v", n, err)
	}
	waitFor(t, "retried item delivered", func() bool { return len(rec.snapshot("k")) == 3 })
	if got := rec.snapshot("k"); got[2] != "bad" {
		t.Fatalf("retried order: %v", got)
	}
	waitFor(t, "failed cleared", func() bool { st, _ = q.Status(ctx); return st.Failed == 0 && st.Pending == 0 })
}

func TestTooLargeHalvesAndRetryAfterIsHonoured(t *testing.T) {
	sys := newSystem(t)
	rec := newRecorder()
	var calls atomic.Int32
	var lastFail atomic.Int64
	rec.fail = func(_ string, b []Message) error {
		switch calls.Add(1) {
		case 1:
			lastFail.Store(time.Now().UnixNano())
			return &RetryAfterError{After: 300 * time.Millisecond, Err: errors.New("429")}
		case 2:
			if gap := time.Since(time.Unix(0, lastFail.Load())); gap < 300*time.Millisecond {
				t.Errorf("retried after %v, before Retry-After", gap)
			}
		}
		if len(b) > 2 {
			return fmt.Errorf("413: %w", ErrTooLarge)
		}
		return nil
	}
	q := openQueue(t, sys, Options{Dir: t.TempDir(), Router: routeAll(rec), BackoffInitial: time.Millisecond, Linger: 50 * time.Millisecond})
	if err := q.Enqueue(context.Background(), "k", payloads("p", 0, 8), Refuse); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "all delivered in halves", func() bool { return rec.total() == 8 })
	got := rec.snapshot("k")
	for i, p := range got {
		if p != fmt.Sprintf("p-%05d", i) {
			t.Fatalf("order: %v", got)
		}
	}
}

func TestCorruptRecordIsQuarantined(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	{
		sys := newSystem(t)
		q, err := Open(sys, Options{Dir: dir, Logger: testLogger(t)})
		if err != nil {
			t.Fatal(err)
		}
		if err := q.Enqueue(ctx, "k", payloads("p", 0, 3), Refuse); err != nil {
			t.Fatal(err)
		}
		if err := q.Close(ctx); err != nil {
			t.Fatal(err)
		}
	}
	db, err := pebble.Open(dir, &pebble.Options{FormatMajorVersion: pebble.FormatNewest, Logger: pebbleLogger{log: testLogger(t)}})
	if err != nil {
		t.Fatal(err)
	}
	k := seqKey(prefixData, "k", 1)
	v, closer, err := db.Get(k)
	if err != nil {
		t.Fatal(err)
	}
	bad := append([]byte(nil), v...)
	closer.Close()
	bad[len(bad)-1] ^= 0xff
	if err := db.Set(k, bad, pebble.Sync); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	sys := newSystem(t)
	rec := newRecorder()
	q := openQueue(t, sys, Options{Dir: dir, Router: routeAll(rec)})
	waitFor(t, "good records delivered", func() bool { return rec.total() == 2 })
	var st Status
	waitFor(t, "corrupt one failed", func() bool { st, _ = q.Status(ctx); return st.Failed == 1 && st.Pending == 0 })
	var reason string
	_ = q.Failed("k", func(it FailedItem) error { reason = it.Reason; return nil })
	if reason != "corrupt record: checksum mismatch" {
		t.Fatalf("reason %q", reason)
	}
	if got := rec.snapshot("k"); got[0] != "p-00000" || got[1] != "p-00002" {
		t.Fatalf("delivered %v", got)
	}
}

func TestSinkPanicRestartsDelivery(t *testing.T) {
	sys := newSystem(t)
	rec := newRecorder()
	var calls atomic.Int32
	rec.fail = func(string, []Message) error {
		if calls.Add(1) <= 2 {
			panic("sink bug")
		}
		return nil
	}
	q := openQueue(t, sys, Options{Dir: t.TempDir(), Router: routeAll(rec)})
	if err := q.Enqueue(context.Background(), "k", payloads("p", 0, 4), Refuse); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "delivered after the delivery actor restarted", func() bool { return rec.total() == 4 })
}

func TestIdleDelivererStopsAndComesBack(t *testing.T) {
	sys := newSystem(t)
	rec := newRecorder()
	q := openQueue(t, sys, Options{Dir: t.TempDir(), Router: routeAll(rec), IdleTimeout: 20 * time.Millisecond})
	ctx := context.Background()
	if err := q.Enqueue(ctx, "k", payloads("p", 0, 1), Refuse); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "first", func() bool { return rec.total() == 1 })
	time.Sleep(100 * time.Millisecond) // long enough to idle out
	if err := q.Enqueue(ctx, "k", payloads("p", 1, 1), Refuse); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "second after idling", func() bool { return rec.total() == 2 })
}

func TestBadKeysAndClosed(t *testing.T) {
	sys := newSystem(t)
	q, err := Open(sys, Options{Dir: t.TempDir(), Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for _, k := range []string{"", "a\x00b"} {
		if err := q.Enqueue(ctx, k, payloads("p", 0, 1), Refuse); err == nil {
			t.Fatalf("key %q accepted", k)
		}
	}
	if err := q.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if err := q.Enqueue(ctx, "k", payloads("p", 0, 1), Refuse); !errors.Is(err, ErrClosed) {
		t.Fatalf("after close: %v", err)
	}
}
