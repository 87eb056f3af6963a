package queue

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
)

// A Wait producer parked behind a full key must not hold back Wait
// producers of other keys that have room: arrival order holds per key.
func TestFullKeyDoesNotBlockOtherKeysWaiters(t *testing.T) {
	sys := newSystem(t)
	rec := newRecorder()
	release := make(chan struct{})
	rec.fail = func(key string, _ []Message) error {
		if key == "full" {
			select {
			case <-release:
				return nil
			default:
				return &RetryAfterError{After: 5 * time.Millisecond, Err: errors.New("503")}
			}
		}
		return nil
	}
	q := openQueue(t, sys, Options{Dir: t.TempDir(), Router: routeAll(rec), Quota: Quota{MaxKeyItems: 2},
		BackoffInitial: time.Millisecond, BackoffMax: 5 * time.Millisecond})
	ctx := context.Background()
	if err := q.Enqueue(ctx, "full", payloads("f", 0, 2), Wait); err != nil {
		t.Fatal(err)
	}
	parked := make(chan error, 1)
	go func() { parked <- q.Enqueue(ctx, "full", payloads("f", 2, 1), Wait) }()
	waitFor(t, "a producer of the full key parked", func() bool {
		s, err := q.Status(ctx)
		return err == nil && s.Waiting == 1
	})
	other, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	if err := q.Enqueue(other, "other", payloads("o", 0, 1), Wait); err != nil {
		t.Fatalf("a key with room waited behind another key's full quota: %v", err)
	}
	close(release)
	if err := <-parked; err != nil {
		t.Fatal(err)
	}
	waitFor(t, "all delivered", func() bool { return rec.total() == 4 })
}

// One corrupt metadata record must not stop the queue from opening: it is
// quarantined and the key's counters are rebuilt from its records.
func TestCorruptMetaIsRebuilt(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	{
		q, err := Open(newSystem(t), Options{Dir: dir, Logger: testLogger(t)})
		if err != nil {
			t.Fatal(err)
		}
		if err := q.Enqueue(ctx, "k", payloads("p", 0, 3), Refuse); err != nil {
			t.Fatal(err)
		}
		if err := q.Enqueue(ctx, "other", payloads("o", 0, 2), Refuse); err != nil {
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
	if err := db.Set(metaKey("k"), []byte{0xee, 1, 2}, pebble.Sync); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	rec := newRecorder()
	q, err := Open(newSystem(t), Options{Dir: dir, Logger: testLogger(t), Router: routeAll(rec)})
	if err != nil {
		t.Fatalf("open with one corrupt key metadata record: %v", err)
	}
	defer q.Close(ctx)
	waitFor(t, "both keys delivered", func() bool { return rec.total() == 5 })
	if got := rec.snapshot("k"); len(got) != 3 || got[0] != "p-00000" || got[2] != "p-00002" {
		t.Fatalf("k delivered %v", got)
	}
	waitFor(t, "counters drained", func() bool {
		s, err := q.Status(ctx)
		return err == nil && s.Pending == 0 && s.PendingBytes == 0
	})
	if v, err := q.Get(quarantineNS, "meta/k"); err != nil || len(v) != 3 {
		t.Fatalf("the corrupt metadata should be kept in quarantine: %q %v", v, err)
	}
	// New records of the rebuilt key continue after the old ones.
	if err := q.Enqueue(ctx, "k", payloads("p", 3, 1), Refuse); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the next record", func() bool { return len(rec.snapshot("k")) == 4 })
}

// Every delivered message names its store's incarnation, which survives a
// reopen, differs for a store created anew and changes when metadata is
// rebuilt (seqs may then repeat).
func TestIncarnationInEveryMessage(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	var stores []string
	sink := SinkFunc(func(_ context.Context, _ string, b []Message) error {
		for _, m := range b {
			stores = append(stores, m.Store)
		}
		return nil
	})
	q, err := Open(newSystem(t), Options{Dir: dir, Logger: testLogger(t), Router: routeAll(sink)})
	if err != nil {
		t.Fatal(err)
	}
	first := q.Incarnation()
	if len(first) != 16 {
		t.Fatalf("incarnation %q", first)
	}
	if err := q.Enqueue(ctx, "k", payloads("p", 0, 1), Refuse); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "delivered", func() bool { s, _ := q.Status(ctx); return s.Pending == 0 && s.DeliveredHour == 1 })
	if err := q.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if len(stores) != 1 || stores[0] != first {
		t.Fatalf("delivered with store %v, want %s", stores, first)
	}
	q, err = Open(newSystem(t), Options{Dir: dir, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	if got := q.Incarnation(); got != first {
		t.Fatalf("incarnation changed on reopen: %s then %s", first, got)
	}
	_ = q.Close(ctx)
	other, err := Open(newSystem(t), Options{Dir: t.TempDir(), Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close(ctx)
	if other.Incarnation() == first {
		t.Fatal("a new store reused the incarnation of another")
	}
}

// A retry in the same group commit as the settle that dead-letters records
// must see those records: none may be orphaned with counters that no longer
// count them. The commit is built as the actor builds it.
func TestRetryInTheSameCommitAsADeadLetterSettle(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	q, err := Open(newSystem(t), Options{Dir: dir, Logger: testLogger(t)}) // no router: nothing delivers
	if err != nil {
		t.Fatal(err)
	}
	if err := q.Enqueue(ctx, "k", payloads("p", 0, 3), Refuse); err != nil {
		t.Fatal(err)
	}
	if err := q.Close(ctx); err != nil {
		t.Fatal(err)
	}
	opts := Options{Dir: dir, Logger: testLogger(t)}
	opts.setDefaults()
	st, err := openStore(dir, nil, opts.Logger)
	if err != nil {
		t.Fatal(err)
	}
	defer st.close()
	metas, err := st.loadMeta(opts.Logger)
	if err != nil {
		t.Fatal(err)
	}
	a := newQueueActor(nil, st, opts, metas, newMetrics(), opts.Logger)
	recs, err := st.read("k", 0, 3, 10, 1<<20)
	if err != nil || len(recs) != 3 {
		t.Fatalf("read: %d %v", len(recs), err)
	}
	var failed []failedRec
	var bytes int64
	for _, r := range recs {
		failed = append(failed, failedRec{seq: r.msg.Seq, raw: r.raw, reason: "400"})
		bytes += int64(len(r.raw))
	}
	c, b, err := a.buildCommit([]any{
		&settleReq{key: "k", from: 0, through: 2, bytes: bytes, failed: failed},
		&retryReq{},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Commit(pebble.Sync); err != nil {
		t.Fatal(err)
	}
	_ = b.Close()
	m := *c.metas["k"]
	var dead int64
	_ = st.failedRecords("k", func(uint64, []byte) error { dead++; return nil })
	pending, err := st.rangeBytes("k", m.head, m.tail)
	if err != nil {
		t.Fatal(err)
	}
	if m.failed != dead || m.pending() != 3-dead || pending != m.bytes {
		t.Fatalf("metadata says %d failed, %d pending (%d bytes); the store holds %d dead letters and %d pending bytes",
			m.failed, m.pending(), m.bytes, dead, pending)
	}
}
