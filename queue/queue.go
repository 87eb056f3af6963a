package queue

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
)

// ErrNotFound is returned by Get for a name never Put.
var ErrNotFound = errors.New("not found")

// Quota bounds what may be pending. Zero fields take the defaults.
type Quota struct {
	MaxBytes    int64 // all keys
	MaxItems    int64
	MaxKeyBytes int64 // each key
	MaxKeyItems int64
}

// Options configure Open.
type Options struct {
	// Dir holds the Pebble database.
	Dir string
	// FS replaces the real filesystem; tests pass Pebble's crashable
	// in-memory one.
	FS     vfs.FS
	Logger zerolog.Logger
	Quota  Quota
	// Router picks each key's Sink and batch limits. Nil leaves every key
	// pending (useful for a store that only accepts).
	Router Router
	// Defaults for routes that leave them zero.
	BatchMaxItems int
	BatchMaxBytes int
	Linger        time.Duration
	// IdleTimeout stops the delivery actor of a key with nothing pending.
	IdleTimeout time.Duration
	// MaxWaiters bounds producers parked by the Wait policy; past it they
	// are refused with ErrFull.
	MaxWaiters int
	// BackoffInitial and BackoffMax shape the retry schedule of a key whose
	// upstream fails.
	BackoffInitial time.Duration
	BackoffMax     time.Duration
	// CompactEvery triggers a compaction of a key's delivered prefix after
	// that many delivered records, to give the disk back.
	CompactEvery uint64
	// Registerer receives the queue's metrics; nil registers none.
	Registerer prometheus.Registerer
	// Spawn starts the queue actor, as a child of the guardian in the
	// agent; nil spawns it under the actor system's root.
	Spawn func(props *actor.Props, name string) (*actor.PID, error)
	// KeyLabel turns a routing key into what logs and metrics may show:
	// a PagerDuty routing key is a credential.
	KeyLabel func(key string) string
	// MinFreeBytes is the free space kept on the store's filesystem: below
	// it new data is refused with ErrDiskFull (Wait producers wait), while
	// delivery and its deletes go on. Zero means 64 MiB; negative, none.
	MinFreeBytes int64
	// DiskReserveBytes is the size of the reserve file released when a
	// write hits ENOSPC all the same, so that Pebble's write succeeds and
	// delivery can go on deleting. Zero means 16 MiB; negative, none.
	DiskReserveBytes int64
	// MetricsKeys is how many routing keys, those with the most pending,
	// get series of their own in the metrics; the rest are summed under
	// routing_key="other". Zero means 20.
	MetricsKeys int
	// MaxFailedBytes bounds dead letters, all keys together; past it the
	// oldest are dropped. Zero means DefaultMaxFailedBytes.
	MaxFailedBytes int64
	// MaxFailedAge, when positive, drops dead letters that failed longer
	// ago than that.
	MaxFailedAge time.Duration

	// Tests set these: the clock the age limit is checked against and
	// how often it is.
	clock         func() time.Time
	ageCheckEvery time.Duration
}

func (o *Options) setDefaults() {
	def := func(p *int64, v int64) {
		if *p <= 0 {
			*p = v
		}
	}
	def(&o.Quota.MaxBytes, 1<<30)
	def(&o.Quota.MaxItems, 5_000_000)
	def(&o.Quota.MaxKeyBytes, 256<<20)
	def(&o.Quota.MaxKeyItems, 2_000_000)
	if o.BatchMaxItems <= 0 {
		o.BatchMaxItems = 500
	}
	if o.BatchMaxBytes <= 0 {
		o.BatchMaxBytes = 1 << 20
	}
	if o.Linger < 0 {
		o.Linger = 0
	}
	if o.IdleTimeout <= 0 {
		o.IdleTimeout = time.Minute
	}
	if o.MaxWaiters <= 0 {
		o.MaxWaiters = 10_000
	}
	if o.BackoffInitial <= 0 {
		o.BackoffInitial = 500 * time.Millisecond
	}
	if o.BackoffMax <= 0 {
		o.BackoffMax = 5 * time.Minute
	}
	def(&o.MaxFailedBytes, DefaultMaxFailedBytes)
	if o.clock == nil {
		o.clock = time.Now
	}
	if o.CompactEvery == 0 {
		o.CompactEvery = 100_000
	}
	o.MinFreeBytes = diskDefault(o.MinFreeBytes, defaultMinFree)
	o.DiskReserveBytes = diskDefault(o.DiskReserveBytes, defaultDiskReserve)
	if o.KeyLabel == nil {
		o.KeyLabel = func(k string) string { return k }
	}
	if o.Router == nil {
		o.Router = func(string) Route { return Route{} }
	}
}

// Queue is the handle producers and the local API use. Every method is safe
// for concurrent use; none touches Pebble for writing, they ask the actor.
type Queue struct {
	sys     *actor.ActorSystem
	pid     *actor.PID
	st      *store
	log     zerolog.Logger
	metrics *metrics
	closed  atomic.Bool
	ready   atomic.Bool
	// keyLabel is Options.KeyLabel, for metrics.
	keyLabel func(string) string
}

// Open opens (or creates) the store in opts.Dir and starts the queue actor.
// Records that were in flight when the process stopped are pending again.
func Open(sys *actor.ActorSystem, opts Options) (*Queue, error) {
	opts.setDefaults()
	st, err := openStoreLimits(opts.Dir, opts.FS, opts.Logger, opts.DiskReserveBytes, opts.MinFreeBytes)
	if err != nil {
		return nil, err
	}
	metas, err := st.loadMeta(opts.Logger.With().Str("component", "queue").Logger())
	if err != nil {
		_ = st.close()
		return nil, fmt.Errorf("open queue store %s: %w", opts.Dir, err)
	}
	m := newMetrics()
	q := &Queue{sys: sys, st: st, log: opts.Logger.With().Str("component", "queue").Logger(), metrics: m, keyLabel: opts.KeyLabel}
	a := newQueueActor(sys, st, opts, metas, m, q.log)
	props := actor.PropsFromProducer(func() actor.Actor { return a },
		actor.WithSupervisor(deliverySupervisor()))
	spawn := opts.Spawn
	if spawn == nil {
		spawn = sys.Root.SpawnNamed
	}
	pid, err := spawn(props, "queue")
	if err != nil {
		_ = st.close()
		return nil, fmt.Errorf("start queue actor: %w", err)
	}
	q.pid = pid
	m.register(opts.Registerer, q, opts.MetricsKeys)
	q.ready.Store(true)
	return q, nil
}

// Enqueue appends payloads, in order, to key's FIFO and returns once they
// are durable. With Refuse a full queue answers ErrFull at once; with Wait it
// blocks until there is room or ctx ends. On error nothing of the request may
// be assumed written, though with a cancelled ctx it may have been.
func (q *Queue) Enqueue(ctx context.Context, key string, payloads [][]byte, p Policy) error {
	return q.enqueue(ctx, key, payloads, p, nil)
}

func (q *Queue) enqueue(ctx context.Context, key string, payloads [][]byte, p Policy, with []KV) error {
	if err := validKey(key); err != nil {
		return err
	}
	if len(payloads) == 0 {
		return nil
	}
	if q.closed.Load() {
		return ErrClosed
	}
	req := &enqueueReq{ctx: ctx, key: key, payloads: payloads, policy: p, reply: make(chan error, 1), at: time.Now(), with: with}
	for _, pl := range payloads {
		req.bytes += int64(len(pl) + recordHeader)
	}
	q.sys.Root.Send(q.pid, req)
	select {
	case err := <-req.reply:
		return err
	case <-ctx.Done():
		q.sys.Root.Send(q.pid, &cancelWait{req: req})
		return ctx.Err()
	}
}

// Put stores value under (ns, name) durably, ordered after every Enqueue
// that returned before it was called. Sessions keep their tokens here, which
// is what makes "tokens after data" hold.
func (q *Queue) Put(ctx context.Context, ns, name string, value []byte) error {
	return q.kv(ctx, &kvReq{ns: ns, name: name, value: value})
}

// Delete removes (ns, name) durably.
func (q *Queue) Delete(ctx context.Context, ns, name string) error {
	return q.kv(ctx, &kvReq{ns: ns, name: name, del: true})
}

func (q *Queue) kv(ctx context.Context, r *kvReq) error {
	if q.closed.Load() {
		return ErrClosed
	}
	r.reply = make(chan error, 1)
	q.sys.Root.Send(q.pid, r)
	select {
	case err := <-r.reply:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Incarnation is the store's incarnation id (16 hex digits), as every
// delivered Message carries it in Store.
func (q *Queue) Incarnation() string { return q.st.incarnation }

// Get reads (ns, name); ErrNotFound when absent.
func (q *Queue) Get(ns, name string) ([]byte, error) { return q.st.get(ns, name) }

// Scan calls fn for each name in ns in byte order.
func (q *Queue) Scan(ns string, fn func(name string, value []byte) error) error {
	return q.st.scanKV(ns, fn)
}

// Status returns counts by key and state.
func (q *Queue) Status(ctx context.Context) (Status, error) {
	r := &statusReq{reply: make(chan Status, 1)}
	q.sys.Root.Send(q.pid, r)
	select {
	case s := <-r.reply:
		s.DiskBytes = q.st.diskBytes()
		s.DiskFreeBytes = q.st.disk.freeBytes()
		if err := q.st.disk.err(); err != nil {
			s.DiskFull = err.Error()
		}
		if !q.closed.Load() {
			q.st.fillLastErrors(&s)
		}
		return s, nil
	case <-ctx.Done():
		return Status{}, ctx.Err()
	}
}

// Failed lists the dead letters of key with why each failed.
func (q *Queue) Failed(key string, fn func(FailedItem) error) error {
	return q.st.failedRecords(key, func(seq uint64, v []byte) error {
		at, reason, raw, err := decodeFailed(v)
		if err != nil {
			return fn(FailedItem{Seq: seq, Reason: err.Error()})
		}
		it := FailedItem{Seq: seq, FailedAt: at, Reason: reason}
		if _, p, err := decodeRecord(raw); err == nil {
			it.Payload = append([]byte(nil), p...) // v belongs to the iterator
		}
		return fn(it)
	})
}

// FailedItem is one dead letter.
type FailedItem struct {
	Seq      uint64
	FailedAt time.Time
	Reason   string
	Payload  []byte
}

// Retry moves the failed items of key (every key when key is "") back to
// the tail of their FIFO and returns how many moved.
func (q *Queue) Retry(ctx context.Context, key string) (int, error) {
	if q.closed.Load() {
		return 0, ErrClosed
	}
	r := &retryReq{key: key, reply: make(chan retryResult, 1)}
	q.sys.Root.Send(q.pid, r)
	select {
	case res := <-r.reply:
		return res.n, res.err
	case <-ctx.Done():
		return 0, ctx.Err()
	}
}

// Ready reports whether the queue takes new data: the store open, the
// queue actor answering and room on the disk.
func (q *Queue) Ready(ctx context.Context) error {
	if err := q.Alive(ctx); err != nil {
		return err
	}
	return q.st.disk.err()
}

// Alive reports whether the store is open and the queue actor answering.
// A full disk is not a failure of the process (a restart would not help),
// so this is what a watchdog checks.
func (q *Queue) Alive(ctx context.Context) error {
	if !q.ready.Load() {
		return errors.New("queue is not open")
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if _, err := q.Status(ctx); err != nil {
		return fmt.Errorf("queue actor is not answering: %w", err)
	}
	return nil
}

// Close stops intake, waits for the batch being committed, stops the
// delivery actors and closes Pebble. Everything acknowledged is already on
// disk, so a Close cut short by ctx loses nothing.
func (q *Queue) Close(ctx context.Context) error {
	if q.closed.Swap(true) {
		return nil
	}
	q.ready.Store(false)
	r := &closeReq{reply: make(chan struct{}, 1)}
	q.sys.Root.Send(q.pid, r)
	select {
	case <-r.reply:
	case <-ctx.Done():
		return fmt.Errorf("queue close: %w", ctx.Err())
	}
	// Stopping the actor stops its delivery actors first, each waiting for
	// its worker, so nothing reads Pebble once it is closed.
	if err := q.sys.Root.StopFuture(q.pid).Wait(); err != nil {
		return fmt.Errorf("queue close: stop actor: %w", err)
	}
	return q.st.close()
}
