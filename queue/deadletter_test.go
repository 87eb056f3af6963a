package queue

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
)

// lockedBuffer collects a queue's log lines for assertions.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// refuseAll answers every batch as PagerDuty answers an event for a
// revoked key.
var refuseAll = SinkFunc(func(context.Context, string, []Message) error {
	return PermanentStatus(400, errors.New("PagerDuty answered 400 Bad Request: Invalid routing key"))
})

// failOne enqueues payload on key and waits until it is settled (a dead
// letter, the sink refusing everything), so that dead letters fail in the
// order of the calls.
func failOne(t *testing.T, q *Queue, key, payload string) {
	t.Helper()
	ctx := context.Background()
	if err := q.Enqueue(ctx, key, [][]byte{[]byte(payload)}, Refuse); err != nil {
		t.Fatal(err)
	}
	waitFor(t, payload+" dead-lettered", func() bool {
		st, err := q.Status(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, k := range st.Keys {
			if k.Key == key {
				return k.Pending == 0
			}
		}
		return false
	})
}

// dropped reads courier_queue_dead_letters_dropped_total{reason} as a
// scrape would.
func dropped(t *testing.T, reg *prometheus.Registry, reason string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "courier_queue_dead_letters_dropped_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "reason" && l.GetValue() == reason {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	t.Fatalf("no courier_queue_dead_letters_dropped_total{reason=%q}", reason)
	return 0
}

func listAll(t *testing.T, q *Queue, query ItemQuery) []Item {
	t.Helper()
	var out []Item
	for page := 0; ; page++ {
		p, err := q.ListItems(query)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, p.Items...)
		if !p.More {
			return out
		}
		if page > 10_000 {
			t.Fatal("listing does not end")
		}
		last := p.Items[len(p.Items)-1]
		query.AfterKey, query.AfterSeq = last.Key, last.Seq
	}
}

func itemPayloads(t *testing.T, q *Queue, items []Item) []string {
	t.Helper()
	var out []string
	for _, it := range items {
		full, err := q.Item(it.Key, it.Seq)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, string(full.Payload))
	}
	return out
}

func TestDeadLetterQuotaDropsOldestFirstAcrossKeys(t *testing.T) {
	sys := newSystem(t)
	dir := t.TempDir()
	logs := &lockedBuffer{}
	reg := prometheus.NewRegistry()
	size := int64(recordHeader + len("a1"))
	opts := Options{
		Dir: dir, Router: routeAll(refuseAll), Logger: zerolog.New(logs),
		MaxFailedBytes: 4 * size, Registerer: reg,
		KeyLabel: func(k string) string { return "redacted-" + k[:1] },
	}
	q, err := Open(sys, opts)
	if err != nil {
		t.Fatal(err)
	}
	for _, kp := range [][2]string{{"a", "a1"}, {"a", "a2"}, {"a", "a3"}, {"b", "b1"}, {"b", "b2"}, {"b", "b3"}} {
		failOne(t, q, kp[0], kp[1])
	}
	ctx := context.Background()
	waitFor(t, "the quota applied", func() bool {
		st, _ := q.Status(ctx)
		return st.FailedBytes <= 4*size && st.Failed == 4
	})
	if got := strings.Join(itemPayloads(t, q, listAll(t, q, ItemQuery{})), ","); got != "a3,b1,b2,b3" {
		t.Fatalf("dead letters kept: %s; want the 4 newest a3,b1,b2,b3", got)
	}
	if n := dropped(t, reg, "quota"); n != 2 {
		t.Fatalf("courier_queue_dead_letters_dropped_total{reason=quota} = %v, want 2", n)
	}
	if l := logs.String(); !strings.Contains(l, `"routing_key":"redacted-a"`) || !strings.Contains(l, "queue.max_failed_bytes") ||
		!strings.Contains(l, `"dropped":`) || strings.Contains(l, `"routing_key":"a"`) {
		t.Fatalf("no log line naming the redacted key and how many were dropped:\n%s", l)
	}
	if err := q.Close(ctx); err != nil {
		t.Fatal(err)
	}

	// The counters survive a restart and agree with the records; a lower
	// quota applies at once.
	opts.MaxFailedBytes = 2 * size
	opts.Registerer = nil
	q2 := openQueue(t, sys, opts)
	waitFor(t, "the lower quota applied on start", func() bool {
		st, _ := q2.Status(ctx)
		return st.Failed == 2 && st.FailedBytes == 2*size
	})
	if got := strings.Join(itemPayloads(t, q2, listAll(t, q2, ItemQuery{})), ","); got != "b2,b3" {
		t.Fatalf("after restart with a lower quota: %s, want b2,b3", got)
	}
}

func TestDeadLetterAgeLimit(t *testing.T) {
	sys := newSystem(t)
	var clk atomic.Int64
	clk.Store(time.Now().UnixNano())
	reg := prometheus.NewRegistry()
	opts := Options{Dir: t.TempDir(), Router: routeAll(refuseAll), MaxFailedAge: time.Hour, Registerer: reg,
		ageCheckEvery: 10 * time.Millisecond, clock: func() time.Time { return time.Unix(0, clk.Load()) }}
	q := openQueue(t, sys, opts)
	failOne(t, q, "k", "old")
	failOne(t, q, "k", "new")
	items := listAll(t, q, ItemQuery{Key: "k"})
	if len(items) != 2 || !items[0].FailedAt.Before(items[1].FailedAt) {
		t.Fatalf("dead letters: %+v", items)
	}
	// An hour after the first failed, and a little less after the second.
	clk.Store(items[0].FailedAt.Add(time.Hour + time.Nanosecond).UnixNano())
	waitFor(t, "the old dead letter dropped", func() bool { st, _ := q.Status(context.Background()); return st.Failed == 1 })
	if got := strings.Join(itemPayloads(t, q, listAll(t, q, ItemQuery{Key: "k"})), ","); got != "new" {
		t.Fatalf("kept %s, want new", got)
	}
	if n := dropped(t, reg, "age"); n != 1 {
		t.Fatalf("dropped{reason=age} = %v", n)
	}
}

func TestDeadLetterListShowPurge(t *testing.T) {
	sys := newSystem(t)
	dir := t.TempDir()
	router := func(k string) Route {
		if k == "held" {
			return Route{} // stays pending
		}
		return Route{Sink: refuseAll}
	}
	reg := prometheus.NewRegistry()
	opts := Options{Dir: dir, Router: router, Registerer: reg}
	q := openQueue(t, sys, opts)
	ctx := context.Background()
	for i := range 5 {
		failOne(t, q, "k1", fmt.Sprintf("k1-%d", i))
	}
	for i := range 3 {
		failOne(t, q, "k2", fmt.Sprintf("k2-%d", i))
	}
	if err := q.Enqueue(ctx, "held", [][]byte{[]byte("h0"), []byte("h1"), []byte("h2")}, Refuse); err != nil {
		t.Fatal(err)
	}

	all := listAll(t, q, ItemQuery{Limit: 2})
	if got := strings.Join(itemPayloads(t, q, all), ","); got != "k1-0,k1-1,k1-2,k1-3,k1-4,k2-0,k2-1,k2-2" {
		t.Fatalf("paged listing of every key: %s", got)
	}
	it := all[0]
	if it.State != StateFailed || it.StatusCode != 400 || it.Attempts != 1 || !strings.Contains(it.Reason, "Invalid routing key") ||
		it.FailedAt.IsZero() || it.EnqueuedAt.IsZero() || it.Size != int64(recordHeader+len("k1-0")) {
		t.Fatalf("dead letter: %+v", it)
	}
	if got := strings.Join(itemPayloads(t, q, listAll(t, q, ItemQuery{Key: "k2", Limit: 1})), ","); got != "k2-0,k2-1,k2-2" {
		t.Fatalf("one key: %s", got)
	}
	pend := listAll(t, q, ItemQuery{State: StatePending, Limit: 2})
	if got := strings.Join(itemPayloads(t, q, pend), ","); got != "h0,h1,h2" || pend[0].State != StatePending {
		t.Fatalf("pending: %s %+v", got, pend)
	}
	if _, err := q.ListItems(ItemQuery{Key: "nope"}); !errors.Is(err, ErrUnknownKey) {
		t.Fatalf("unknown key listed: %v", err)
	}
	if _, err := q.Item("k1", 999); !errors.Is(err, ErrNoItem) {
		t.Fatalf("unknown seq: %v", err)
	}
	if _, err := q.Purge(ctx, Purge{Key: "nope"}); !errors.Is(err, ErrUnknownKey) {
		t.Fatalf("purge of an unknown key: %v", err)
	}
	if _, err := q.Purge(ctx, Purge{Key: "k1", OneSeq: true, Seq: 999}); !errors.Is(err, ErrNoItem) {
		t.Fatalf("purge of an unknown seq: %v", err)
	}

	// One.
	res, err := q.Purge(ctx, Purge{Key: "k1", OneSeq: true, Seq: all[1].Seq})
	if err != nil || res.Dropped != 1 || res.ByKey["k1"] != 1 {
		t.Fatalf("purge one: %+v %v", res, err)
	}
	// Older than the fourth of k1: the first (k1-0) of those left.
	res, err = q.Purge(ctx, Purge{Key: "k1", OlderThan: all[3].FailedAt})
	if err != nil || res.Dropped != 2 {
		t.Fatalf("purge older than: %+v %v", res, err)
	}
	if got := strings.Join(itemPayloads(t, q, listAll(t, q, ItemQuery{Key: "k1"})), ","); got != "k1-3,k1-4" {
		t.Fatalf("after purging one and older: %s", got)
	}
	// One key.
	if res, err = q.Purge(ctx, Purge{Key: "k2"}); err != nil || res.Dropped != 3 {
		t.Fatalf("purge key: %+v %v", res, err)
	}
	// Everything: the pending records stay.
	if res, err = q.Purge(ctx, Purge{}); err != nil || res.Dropped != 2 || res.ByKey["k1"] != 2 {
		t.Fatalf("purge all: %+v %v", res, err)
	}
	st, _ := q.Status(ctx)
	if st.Failed != 0 || st.FailedBytes != 0 || st.Pending != 3 {
		t.Fatalf("status after purging: %+v", st)
	}
	if n := dropped(t, reg, "purge"); n != 8 {
		t.Fatalf("dropped{reason=purge} = %v, want 8", n)
	}
	if err := q.Close(ctx); err != nil {
		t.Fatal(err)
	}
	opts.Registerer = nil
	q2 := openQueue(t, sys, opts)
	if items := listAll(t, q2, ItemQuery{}); len(items) != 0 {
		t.Fatalf("purged dead letters back after a restart: %+v", items)
	}
	st, _ = q2.Status(ctx)
	if st.Failed != 0 || st.FailedBytes != 0 || st.Pending != 3 {
		t.Fatalf("status after restart: %+v", st)
	}
}

// Dead letters written before status codes and attempts were kept still
// read, and count as they did.
func TestDeadLetterVersion1Reads(t *testing.T) {
	at := time.Unix(1700000000, 0).UTC()
	raw := make([]byte, recordHeader+3)
	putRecord(raw, at, []byte("old"))
	v1 := []byte{failedVersion1}
	v1 = binary.BigEndian.AppendUint64(v1, uint64(at.UnixNano()))
	v1 = binary.AppendUvarint(v1, 3)
	v1 = append(append(v1, "why"...), raw...)
	it := failedItem("k", 7, v1, true)
	if it.Reason != "why" || !it.FailedAt.Equal(at) || string(it.Payload) != "old" || it.StatusCode != 0 || it.Attempts != 0 || it.Size != int64(len(raw)) {
		t.Fatalf("version 1 dead letter: %+v", it)
	}
	fi, raw2, err := decodeFailedInfo(encodeFailedInfo(failedInfo{at: at, code: 429, attempts: 12, reason: "r"}, raw))
	if err != nil || fi.code != 429 || fi.attempts != 12 || fi.reason != "r" || !bytes.Equal(raw2, raw) {
		t.Fatalf("round trip: %+v %v", fi, err)
	}
}

// A purge and a retry that arrive together never share a commit, where
// both would take the same dead letters from the database: the counters
// stay equal to what a full scan finds.
func TestDeadLetterPurgeAndRetryTogether(t *testing.T) {
	sys := newSystem(t)
	q := openQueue(t, sys, Options{Dir: t.TempDir(), Router: routeAll(refuseAll)})
	ctx := context.Background()
	for round := range 20 {
		failOne(t, q, "k", fmt.Sprint("a", round))
		failOne(t, q, "k", fmt.Sprint("b", round))
		var wg sync.WaitGroup
		wg.Add(2)
		go func() { defer wg.Done(); _, _ = q.Retry(ctx, "k") }()
		go func() { defer wg.Done(); _, _ = q.Purge(ctx, Purge{Key: "k"}) }()
		wg.Wait()
		var st Status
		waitFor(t, "the round settled", func() bool { st, _ = q.Status(ctx); return st.Pending == 0 })
		items := listAll(t, q, ItemQuery{Key: "k"})
		var bytes int64
		for _, it := range items {
			bytes += it.Size
		}
		if st.Failed != int64(len(items)) || st.FailedBytes != bytes {
			t.Fatalf("round %d: status counts %d dead letters (%d bytes), the store holds %d (%d bytes)",
				round, st.Failed, st.FailedBytes, len(items), bytes)
		}
	}
}
