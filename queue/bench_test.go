package queue

// Benchmarks of the queue against raw Pebble (docs/benchmarks.md). They run
// only with -bench; `make bench` runs them at full size. Nothing here asserts
// a timing: the machine is noisy, so results are read as ratios between
// sub-benchmarks of one run.

import (
	"context"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
)

// benchItemSize is the payload size of every benchmark item (1 KiB).
const benchItemSize = 1024

// benchHistory is how many items the "after history" store has delivered
// before it is measured: COURIER_BENCH_ITEMS, 100,000 by default so that a
// casual -bench run stays quick; `make bench` sets 1,000,000.
func benchHistory(b *testing.B) int {
	v := os.Getenv("COURIER_BENCH_ITEMS")
	if v == "" {
		return 100_000
	}
	n, err := strconv.Atoi(v)
	if err != nil || n <= 0 {
		b.Fatalf("COURIER_BENCH_ITEMS=%q: want a positive integer", v)
	}
	return n
}

// benchPool returns n distinct random payloads of size bytes (random, so
// that Pebble's block compression does not flatter the numbers).
func benchPool(n, size int) [][]byte {
	r := rand.New(rand.NewPCG(1, 2))
	out := make([][]byte, n)
	for i := range out {
		p := make([]byte, size)
		for j := 0; j+8 <= size; j += 8 {
			binary.LittleEndian.PutUint64(p[j:], r.Uint64())
		}
		out[i] = p
	}
	return out
}

// benchQuota never fills: a benchmark with a nil Router keeps everything
// pending, and a Wait producer at a full quota would wait forever.
func benchQuota() Quota {
	return Quota{MaxBytes: 1 << 40, MaxItems: 1 << 40, MaxKeyBytes: 1 << 40, MaxKeyItems: 1 << 40}
}

func benchLogger() zerolog.Logger { return zerolog.Nop() }

// openRawPebble opens Pebble as the queue's store does, minus the queue.
func openRawPebble(b *testing.B, dir string) *pebble.DB {
	b.Helper()
	db, err := pebble.Open(dir, &pebble.Options{
		FormatMajorVersion: pebble.FormatNewest,
		Logger:             pebbleLogger{log: benchLogger()},
	})
	if err != nil {
		b.Fatal(err)
	}
	return db
}

// produce runs producers goroutines that together hand commit b.N items,
// batch at a time, and reports items/s over the timed part.
func produce(b *testing.B, producers, batch int, pool [][]byte, commit func(items [][]byte) error) float64 {
	b.Helper()
	var claimed atomic.Int64
	var failed atomic.Pointer[error]
	n := int64(b.N)
	b.ResetTimer()
	var wg sync.WaitGroup
	for p := 0; p < producers; p++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			items := make([][]byte, 0, batch)
			for failed.Load() == nil {
				end := claimed.Add(int64(batch))
				start := end - int64(batch)
				if start >= n {
					return
				}
				items = items[:0]
				for i := start; i < min(end, n); i++ {
					items = append(items, pool[i%int64(len(pool))])
				}
				if err := commit(items); err != nil {
					failed.CompareAndSwap(nil, &err)
					return
				}
			}
		}()
	}
	wg.Wait()
	b.StopTimer()
	if err := failed.Load(); err != nil {
		b.Fatal(*err)
	}
	rate := float64(b.N) / b.Elapsed().Seconds()
	b.ReportMetric(rate, "items/s")
	return rate
}

// histogramOf reads count and sum of a histogram from a registry, without
// importing the protobuf types.
func histogramOf(b *testing.B, reg *prometheus.Registry, name string) (count uint64, sum float64) {
	b.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		b.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name && len(mf.GetMetric()) > 0 {
			h := mf.GetMetric()[0].GetHistogram()
			return h.GetSampleCount(), h.GetSampleSum()
		}
	}
	return 0, 0
}

// BenchmarkEnqueue compares durable enqueue of 1 KiB items through the queue
// actor (nil Router: everything stays pending) with raw Pebble Sync commits
// of the same items. Shapes are producers x items per request:
//
//	16x1    16 producers, one item per Enqueue (Wait) / per Sync commit
//	1x100   one producer, 100 items per Enqueue / per Sync batch
//	16x100  16 producers, 100 items per Enqueue / per Sync batch
//
// courier and raw of one shape run back to back, and the whole set is run
// COURIER_BENCH_ROUNDS times (1 by default, 3 under `make bench`; -count
// would repeat each sub-benchmark in a row instead of interleaving them), so
// that each ratio compares runs made on the same machine state. Goal:
// courier/raw >= 0.5.
func BenchmarkEnqueue(b *testing.B) {
	pool := benchPool(1024, benchItemSize)
	shapes := []struct {
		name             string
		producers, batch int
	}{{"16x1", 16, 1}, {"1x100", 1, 100}, {"16x100", 16, 100}}
	courier, raw := map[string][]float64{}, map[string][]float64{}
	for range benchRounds(b) {
		for _, s := range shapes {
			b.Run(s.name, func(b *testing.B) {
				// b.Run calls its function with growing b.N until a run is
				// long enough; the last call is the result.
				var cRate, rRate float64
				b.Run("courier", func(b *testing.B) {
					sys := newSystem(b)
					reg := prometheus.NewRegistry()
					q, err := Open(sys, Options{Dir: b.TempDir(), Logger: benchLogger(), Quota: benchQuota(), Registerer: reg})
					if err != nil {
						b.Fatal(err)
					}
					defer func() { _ = q.Close(context.Background()) }()
					ctx := context.Background()
					rate := produce(b, s.producers, s.batch, pool, func(items [][]byte) error {
						return q.Enqueue(ctx, "bench", items, Wait)
					})
					// Group commit at work: how many items each fsync carried.
					if commits, sum := histogramOf(b, reg, "courier_queue_commit_seconds"); commits > 0 {
						b.ReportMetric(float64(b.N)/float64(commits), "items/commit")
						b.ReportMetric(sum/float64(commits)*1000, "ms/commit")
					}
					cRate = rate
				})
				b.Run("raw", func(b *testing.B) {
					db := openRawPebble(b, b.TempDir())
					defer func() { _ = db.Close() }()
					var seq atomic.Uint64
					rate := produce(b, s.producers, s.batch, pool, func(items [][]byte) error {
						bt := db.NewBatch()
						for _, it := range items {
							_ = bt.Set(seqKey(prefixData, "bench", seq.Add(1)), it, nil)
						}
						err := bt.Commit(pebble.Sync)
						_ = bt.Close()
						return err
					})
					rRate = rate
				})
				courier[s.name] = append(courier[s.name], cRate)
				raw[s.name] = append(raw[s.name], rRate)
			})
		}
	}
	for _, s := range shapes {
		c, r := courier[s.name], raw[s.name]
		if len(c) == 0 || len(c) != len(r) {
			continue
		}
		ratios := make([]float64, len(c))
		for i := range c {
			ratios[i] = c[i] / max(r[i], 1)
		}
		b.Logf("%-6s courier %8.0f items/s  raw %8.0f items/s  courier/raw %.2f (goal >= 0.5); per round %.2f",
			s.name, median(c), median(r), median(ratios), ratios)
	}
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	return s[len(s)/2]
}

// benchRounds is COURIER_BENCH_ROUNDS, how many times interleaved
// comparisons run: 1 by default, 3 under `make bench`.
func benchRounds(b *testing.B) int {
	v := os.Getenv("COURIER_BENCH_ROUNDS")
	if v == "" {
		return 1
	}
	n, err := strconv.Atoi(v)
	if err != nil || n <= 0 {
		b.Fatalf("COURIER_BENCH_ROUNDS=%q: want a positive integer", v)
	}
	return n
}

// gateSink accepts everything, but only while open; it counts what it got
// and when each batch arrived.
type gateSink struct {
	mu        sync.Mutex
	gate      chan struct{} // closed while open
	calls     []time.Time
	delivered atomic.Int64
	target    atomic.Int64
	reached   chan struct{}
}

func newGateSink() *gateSink {
	s := &gateSink{gate: make(chan struct{}), reached: make(chan struct{}, 1)}
	close(s.gate)
	return s
}

func (s *gateSink) pause() {
	s.mu.Lock()
	s.gate = make(chan struct{})
	s.mu.Unlock()
}

func (s *gateSink) resume() {
	s.mu.Lock()
	close(s.gate)
	s.mu.Unlock()
}

// expect arms the sink to signal reached once delivered reaches n.
func (s *gateSink) expect(n int64) {
	select {
	case <-s.reached:
	default:
	}
	s.target.Store(n)
}

func (s *gateSink) takeCalls() []time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.calls
	s.calls = nil
	return c
}

func (s *gateSink) Deliver(ctx context.Context, _ string, batch []Message) error {
	s.mu.Lock()
	g := s.gate
	s.mu.Unlock()
	select {
	case <-g:
	case <-ctx.Done():
		return ctx.Err()
	}
	now := time.Now()
	s.mu.Lock()
	s.calls = append(s.calls, now)
	s.mu.Unlock()
	if d := s.delivered.Add(int64(len(batch))); d >= s.target.Load() && s.target.Load() > 0 {
		select {
		case s.reached <- struct{}{}:
		default:
		}
	}
	return nil
}

// waitSettled polls until nothing is pending (every delivered batch's settle
// is durable).
func waitSettled(b *testing.B, q *Queue) {
	b.Helper()
	deadline := time.Now().Add(10 * time.Minute)
	for {
		s, err := q.Status(context.Background())
		if err != nil {
			b.Fatal(err)
		}
		if s.Pending == 0 && s.Delivering == 0 {
			return
		}
		if time.Now().After(deadline) {
			b.Fatalf("still %d pending after 10 minutes", s.Pending)
		}
		time.Sleep(time.Millisecond)
	}
}

// benchEnqueue enqueues n pool items to key in requests of 1,000 from two
// producers (Wait policy).
func benchEnqueue(b *testing.B, q *Queue, key string, pool [][]byte, n int) {
	b.Helper()
	const perCall = 1000
	var wg sync.WaitGroup
	var claimed atomic.Int64
	var failed atomic.Pointer[error]
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for failed.Load() == nil {
				end := claimed.Add(perCall)
				start := end - perCall
				if start >= int64(n) {
					return
				}
				items := make([][]byte, 0, perCall)
				for i := start; i < min(end, int64(n)); i++ {
					items = append(items, pool[i%int64(len(pool))])
				}
				if err := q.Enqueue(context.Background(), key, items, Wait); err != nil {
					failed.CompareAndSwap(nil, &err)
				}
			}
		}()
	}
	wg.Wait()
	if err := failed.Load(); err != nil {
		b.Fatal(*err)
	}
}

// BenchmarkDequeue measures delivery on a store whose key has already
// delivered COURIER_BENCH_ITEMS items (1,000,000 under `make bench`; the
// history is built once, in requests of 1,000 and batches of 500) against a
// fresh store, with two route batch sizes:
//
//	batch500  the queue's default BatchMaxItems;
//	batch1    MaxItems 1, what events/ keys use (events.PagerDutyBatchItems),
//	          so every delivered item is its own settle and range delete.
//
// One op is five rounds (one for batch1): in each, 20,000 items are
// enqueued while the sink is paused, then the time from opening the sink to
// the last settle being durable is measured. Reported: items/s; the time between consecutive
// batches (p50, p99) and its mean over the first and the last tenth of each
// round's batches (growth within a round); and one direct read of a batch at
// the ack cursor (read-us). Goal: after/fresh ≈ 1.
func BenchmarkDequeue(b *testing.B) {
	const key = "bench"
	history := benchHistory(b)
	pool := benchPool(1024, benchItemSize)
	after := fmt.Sprintf("after%dk", history/1000)
	agedDir := b.TempDir()
	var agedTail uint64 // 0 until the history is built
	type result struct{ rate, p50 float64 }
	results := map[string]result{}

	for _, batch := range []int{500, 1} {
		// Batches of one take seconds per round (docs/benchmarks.md), so
		// they get one round.
		const perRound = 20_000
		rounds := 5
		if batch == 1 {
			rounds = 1
		}
		for _, aged := range []bool{false, true} {
			name := "fresh"
			if aged {
				name = after
			}
			b.Run(fmt.Sprintf("batch%d/%s", batch, name), func(b *testing.B) {
				b.StopTimer()
				dir, tail := b.TempDir(), uint64(0)
				if aged {
					if agedTail == 0 {
						agedTail = buildHistory(b, agedDir, key, pool, history)
					}
					dir, tail = agedDir, agedTail
				}
				sys := newSystem(b)
				sink := newGateSink()
				q, err := Open(sys, Options{Dir: dir, Logger: benchLogger(), Quota: benchQuota(),
					Router: func(string) Route { return Route{Sink: sink, MaxItems: batch} }})
				if err != nil {
					b.Fatal(err)
				}
				defer func() { _ = q.Close(context.Background()) }()
				var gaps, reads []time.Duration
				var firsts, lasts []float64
				var elapsed time.Duration
				for range b.N * rounds {
					sink.pause()
					head := tail
					target := sink.delivered.Load() + int64(perRound)
					benchEnqueue(b, q, key, pool, perRound)
					tail += uint64(perRound)
					// Dequeue alone: read one batch at the ack cursor, as the
					// delivery worker does.
					for range 5 {
						t0 := time.Now()
						recs, err := q.st.read(key, head, tail, batch, 1<<20)
						reads = append(reads, time.Since(t0))
						if err != nil || len(recs) != batch {
							b.Fatalf("direct read at %d: %d records, %v", head, len(recs), err)
						}
					}
					// Start every round from an empty memtable, as after a
					// restart: what settles write then accumulates there,
					// and rounds compare like with like.
					if err := q.st.db.Flush(); err != nil {
						b.Fatal(err)
					}
					sink.expect(target)
					start := time.Now()
					b.StartTimer()
					sink.resume()
					<-sink.reached
					waitSettled(b, q)
					b.StopTimer()
					elapsed += time.Since(start)
					calls := sink.takeCalls()
					prev := start
					for _, t := range calls {
						gaps = append(gaps, t.Sub(prev))
						prev = t
					}
					if k := len(calls) / 10; k > 0 {
						firsts = append(firsts, float64(calls[k].Sub(calls[0]).Microseconds())/float64(k))
						lasts = append(lasts, float64(calls[len(calls)-1].Sub(calls[len(calls)-1-k]).Microseconds())/float64(k))
					}
				}
				if aged {
					agedTail = tail
				}
				rate := float64(b.N*rounds*perRound) / elapsed.Seconds()
				p50 := ms(percentile(gaps, 50))
				b.ReportMetric(rate, "items/s")
				b.ReportMetric(p50, "batch-p50-ms")
				b.ReportMetric(ms(percentile(gaps, 99)), "batch-p99-ms")
				b.ReportMetric(mean(firsts), "first10%-us/batch")
				b.ReportMetric(mean(lasts), "last10%-us/batch")
				b.ReportMetric(float64(percentile(reads, 50).Microseconds()), "read-us")
				b.ReportMetric(0, "ns/op") // items/s is the figure
				results[fmt.Sprintf("batch%d/%s", batch, name)] = result{rate: rate, p50: p50}
			})
		}
	}
	for _, batch := range []int{500, 1} {
		f, a := results[fmt.Sprintf("batch%d/fresh", batch)], results[fmt.Sprintf("batch%d/%s", batch, after)]
		if f.rate > 0 && a.rate > 0 {
			b.Logf("batch%-3d %s/fresh: items/s %.2f, batch p50 %.2f (goal ≈ 1)", batch, after, a.rate/f.rate, a.p50/f.p50)
		}
	}
	if f1, f500 := results["batch1/fresh"], results["batch500/fresh"]; f1.rate > 0 && f500.rate > 0 {
		b.Logf("fresh store, items/s of batch1/batch500: %.3f", f1.rate/f500.rate)
	}
}

// buildHistory enqueues n items to key in dir and delivers them all, in
// batches of 500, and returns the key's tail.
func buildHistory(b *testing.B, dir, key string, pool [][]byte, n int) uint64 {
	b.Helper()
	start := time.Now()
	sys := newSystem(b)
	sink := newGateSink()
	q, err := Open(sys, Options{Dir: dir, Logger: benchLogger(), Quota: benchQuota(),
		Router: func(string) Route { return Route{Sink: sink, MaxItems: 500} }})
	if err != nil {
		b.Fatal(err)
	}
	sink.expect(int64(n))
	benchEnqueue(b, q, key, pool, n)
	<-sink.reached
	waitSettled(b, q)
	s, _ := q.Status(context.Background())
	if err := q.Close(context.Background()); err != nil {
		b.Fatal(err)
	}
	b.Logf("history: %d items enqueued and delivered in %s; the store uses %d MiB on disk",
		n, time.Since(start).Round(time.Millisecond), s.DiskBytes>>20)
	return uint64(n)
}

func mean(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	var t float64
	for _, x := range v {
		t += x
	}
	return t / float64(len(v))
}

func percentile(d []time.Duration, p int) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	return s[min(len(s)-1, len(s)*p/100)]
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
