package queue

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/cockroachdb/pebble/v2"
	"github.com/rs/zerolog"
)

// Messages to the queue actor. Producers carry their own reply channel
// (buffered, so the actor never blocks on a reply) and a context, which a
// protoactor future cannot.
type (
	enqueueReq struct {
		ctx      context.Context
		key      string
		payloads [][]byte
		bytes    int64
		policy   Policy
		at       time.Time
		reply    chan error
		with     []KV // committed in the same batch (atomic.go)
	}
	cancelWait struct{ req *enqueueReq }
	kvReq      struct {
		ns, name string
		value    []byte
		del      bool
		reply    chan error
	}
	// settleReq ends the delivery of [from, through] of a key: delivered,
	// or moved to failed for the records listed in failed.
	settleReq struct {
		key           string
		from, through uint64
		bytes         int64
		failed        []failedRec
	}
	failedRec struct {
		seq      uint64
		raw      []byte
		reason   string
		code     int // upstream HTTP status, 0 when none
		attempts int
	}
	retryReq struct {
		key   string
		reply chan retryResult
	}
	retryResult struct {
		n   int
		err error
	}
	statusReq struct{ reply chan Status }
	closeReq  struct{ reply chan struct{} }
	idleReq   struct {
		key    string
		cursor uint64
		pid    *actor.PID
	}
	respawnReq struct{ key string }
	diskTick   struct{}
	flushMsg   struct{}
	commitDone struct {
		c   *commit
		err error
	}
	compactDone struct{ err error }
)

// keyState is the actor's view of one routing key.
type keyState struct {
	meta          keyMeta // durable
	resItems      int64   // admitted, not yet durable
	resBytes      int64
	oldestSeq     uint64 // seq whose enqueue time oldestAt caches
	oldestAt      time.Time
	sinceCompact  uint64
	deliverer     *actor.PID
	shared        *deliveryShared
	delivered     hourCounter
	crashes       int
	respawnQueued bool
	waiting       int // producers of this key parked in queueActor.waiters
}

type queueActor struct {
	sys     *actor.ActorSystem
	st      *store
	opts    Options
	log     zerolog.Logger
	metrics *metrics

	keys                map[string]*keyState
	totalItems          int64 // durable pending, all keys
	totalBytes          int64
	resItems, resBytes  int64
	pending             []any // ops waiting for the next commit
	flushScheduled      bool
	inflight            *commit
	waiters             []*enqueueReq
	closing             *closeReq
	closed              bool
	finished            bool
	compacting          bool
	compactCancel       context.CancelFunc
	compactWG           sync.WaitGroup
	lastCommitErrLogged time.Time
	diskTickQueued      bool            // a diskTick is on its way (disk.go)
	dl                  deadLetterState // deadletter.go
}

func newQueueActor(sys *actor.ActorSystem, st *store, opts Options, metas map[string]keyMeta, m *metrics, log zerolog.Logger) *queueActor {
	a := &queueActor{sys: sys, st: st, opts: opts, log: log, metrics: m, keys: make(map[string]*keyState, len(metas))}
	for k, meta := range metas {
		a.keys[k] = &keyState{meta: meta}
		a.totalItems += meta.pending()
		a.totalBytes += meta.bytes
		a.dl.failedBytes += meta.failedBytes
	}
	return a
}

// deliverySupervisor restarts a crashed delivery actor a few times a
// minute; past that it stops and the queue actor respawns it later, so a
// poison batch costs a pause, never a crash loop of the whole agent.
func deliverySupervisor() actor.SupervisorStrategy {
	return actor.NewOneForOneStrategy(5, time.Minute, func(any) actor.Directive { return actor.RestartDirective })
}

func (a *queueActor) Receive(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case *actor.Started:
		// Records in flight when the process stopped are pending again: the
		// ack cursor is all that was persisted. Start delivering them.
		for k, ks := range a.keys {
			if ks.meta.pending() > 0 {
				a.ensureDeliverer(ctx, k, ks)
			}
		}
		// Limits lowered since the last run apply now.
		a.checkDeadLetterLimits(ctx, true)
		a.scheduleDeadLetterTick(ctx)
	case *enqueueReq:
		a.onEnqueue(ctx, m)
	case *cancelWait:
		a.waiters = slices.DeleteFunc(a.waiters, func(r *enqueueReq) bool {
			if r == m.req {
				a.key(r.key).waiting--
				return true
			}
			return false
		})
	case *kvReq:
		if a.closed {
			m.reply <- ErrClosed
			return
		}
		a.add(ctx, m)
	case *settleReq:
		a.add(ctx, m)
	case *retryReq:
		if a.closed {
			m.reply <- retryResult{err: ErrClosed}
			return
		}
		if err := a.st.disk.err(); err != nil {
			m.reply <- retryResult{err: err} // a retry rewrites its dead letters
			return
		}
		a.add(ctx, m)
	case *flushMsg:
		a.flushScheduled = false
		if a.inflight == nil && len(a.pending) > 0 {
			a.startCommit(ctx)
		}
	case *commitDone:
		a.onCommitDone(ctx, m)
	case *statusReq:
		m.reply <- a.status()
	case *idleReq:
		a.onIdle(ctx, m)
	case *respawnReq:
		if ks := a.keys[m.key]; ks != nil {
			ks.respawnQueued = false
			if ks.meta.pending() > 0 && !a.closed {
				a.ensureDeliverer(ctx, m.key, ks)
			}
		}
	case *diskTick:
		a.onDiskTick(ctx)
	case *actor.Terminated:
		a.onTerminated(ctx, m)
	case *compactDone:
		a.compacting = false
		if m.err != nil && !errors.Is(m.err, context.Canceled) {
			a.log.Warn().Err(m.err).Msg("compacting the delivered prefix failed; will try again later")
		}
	case *closeReq:
		a.onClose(ctx, m)
	case *actor.Stopping:
		a.stopCompaction()
		a.stopDeadLetterTick()
	default:
		a.onDeadLetterMsg(ctx, m)
	}
}

func (a *queueActor) key(k string) *keyState {
	ks := a.keys[k]
	if ks == nil {
		ks = &keyState{}
		a.keys[k] = ks
	}
	return ks
}

func (a *queueActor) onEnqueue(ctx actor.Context, r *enqueueReq) {
	if a.closed {
		r.reply <- ErrClosed
		return
	}
	if err := r.ctx.Err(); err != nil {
		r.reply <- err
		return
	}
	n := int64(len(r.payloads))
	if n > a.opts.Quota.MaxKeyItems || r.bytes > a.opts.Quota.MaxKeyBytes {
		r.reply <- fmt.Errorf("a request of %d items and %d bytes is larger than the per-key quota (%d items, %d bytes); send it in parts",
			n, r.bytes, a.opts.Quota.MaxKeyItems, a.opts.Quota.MaxKeyBytes)
		return
	}
	ks := a.key(r.key)
	// A Wait producer queues behind earlier waiters of its own key so that
	// the key's order of arrival is kept even when room appears; waiters of
	// other keys do not hold it back.
	if a.fits(ks, r) && (r.policy == Refuse || ks.waiting == 0) {
		if a.admitDisk(ctx, r) {
			a.admit(ctx, ks, r)
			return
		}
		if r.policy == Refuse {
			return // answered ErrDiskFull
		}
	}
	if r.policy == Refuse || len(a.waiters) >= a.opts.MaxWaiters {
		a.metrics.refused.Inc()
		r.reply <- ErrFull
		return
	}
	a.waiters = append(a.waiters, r)
	ks.waiting++
}

func (a *queueActor) fits(ks *keyState, r *enqueueReq) bool {
	n := int64(len(r.payloads))
	q := a.opts.Quota
	return a.totalItems+a.resItems+n <= q.MaxItems &&
		a.totalBytes+a.resBytes+r.bytes <= q.MaxBytes &&
		ks.meta.pending()+ks.resItems+n <= q.MaxKeyItems &&
		ks.meta.bytes+ks.resBytes+r.bytes <= q.MaxKeyBytes
}

func (a *queueActor) admit(ctx actor.Context, ks *keyState, r *enqueueReq) {
	n := int64(len(r.payloads))
	ks.resItems += n
	ks.resBytes += r.bytes
	a.resItems += n
	a.resBytes += r.bytes
	a.add(ctx, r)
}

// add queues an op for the next commit. The first op after a commit sends
// the actor a flush message; every op that arrives before that message is
// handled joins the same batch, and while one batch syncs the next fills.
func (a *queueActor) add(ctx actor.Context, op any) {
	if a.finished {
		// The store is about to close: nothing may start a commit now. A
		// late settle is dropped, so its records are delivered again after
		// the restart, never lost.
		switch r := op.(type) {
		case *kvReq:
			r.reply <- ErrClosed
		case *retryReq:
			r.reply <- retryResult{err: ErrClosed}
		case *enqueueReq:
			a.release(a.key(r.key), r)
			r.reply <- ErrClosed
		case *purgeReq:
			r.reply <- purgeReply{err: ErrClosed}
		}
		return
	}
	if a.holdForNextCommit(op) {
		return
	}
	a.pending = append(a.pending, op)
	if a.inflight == nil && !a.flushScheduled {
		a.flushScheduled = true
		ctx.Send(ctx.Self(), &flushMsg{})
	}
}

func (a *queueActor) release(ks *keyState, r *enqueueReq) {
	n := int64(len(r.payloads))
	ks.resItems -= n
	ks.resBytes -= r.bytes
	a.resItems -= n
	a.resBytes -= r.bytes
}

// pointDeleteMax is the largest settle deleted point by point.
const pointDeleteMax = 64

// commit is one group commit: the ops it carries and the metadata of every
// key it touches as it will be once durable.
type commit struct {
	ops     []any
	metas   map[string]*keyMeta
	retried map[*retryReq]int
	settled map[*settleReq]uint64 // records settled (delivered or failed)
	// deadLetters are the dead letters this commit writes, by key: not in
	// the database yet, so a retry in the same commit must take them from
	// here.
	deadLetters map[string][]deadLetter
}

type deadLetter struct {
	seq uint64
	raw []byte
}

func (c *commit) meta(a *queueActor, k string) *keyMeta {
	if m, ok := c.metas[k]; ok {
		return m
	}
	m := a.key(k).meta
	c.metas[k] = &m
	return &m
}

// startCommit builds the waiting ops into one Pebble batch and syncs it off
// the actor's goroutine. Only one commit is in flight, and the next is built
// only after it ends, so the metadata read here is always the durable one.
func (a *queueActor) startCommit(ctx actor.Context) {
	c, b, buildErr := a.buildCommit(a.pending)
	a.pending = nil
	a.inflight = c
	self := ctx.Self()
	if buildErr != nil {
		_ = b.Close()
		a.sys.Root.Send(self, &commitDone{c: c, err: buildErr})
		return
	}
	start := time.Now()
	go func() {
		err := b.Commit(pebble.Sync)
		_ = b.Close()
		a.metrics.commitSeconds.Observe(time.Since(start).Seconds())
		a.sys.Root.Send(self, &commitDone{c: c, err: err})
	}()
}

// buildCommit builds ops, in order, into one batch with the metadata of
// every key they touch.
func (a *queueActor) buildCommit(ops []any) (*commit, *pebble.Batch, error) {
	c := &commit{ops: ops, metas: map[string]*keyMeta{}, retried: map[*retryReq]int{}, settled: map[*settleReq]uint64{},
		deadLetters: map[string][]deadLetter{}}
	b := a.st.db.NewBatch()
	now := time.Now()
	buildErr := a.buildDeadLetterOps(b, c)
	for _, op := range c.ops {
		switch r := op.(type) {
		case *enqueueReq:
			m := c.meta(a, r.key)
			// Encoded straight into the batch's memory: no copy per item
			// on the way (this is the hot path of every producer).
			for _, p := range r.payloads {
				op := b.SetDeferred(len(r.key)+10, recordHeader+len(p))
				putSeqKey(op.Key, prefixData, r.key, m.tail)
				putRecord(op.Value, r.at, p)
				_ = op.Finish()
				m.tail++
			}
			m.bytes += r.bytes
			putWith(b, r.with)
		case *kvReq:
			if r.del {
				_ = b.Delete(kvKey(r.ns, r.name), nil)
			} else {
				_ = b.Set(kvKey(r.ns, r.name), r.value, nil)
			}
		case *settleReq:
			if err := a.buildSettle(b, c, r, now); err != nil {
				buildErr = err
			}
		case *retryReq:
			if err := a.buildRetry(b, c, r); err != nil {
				buildErr = err
			}
		}
	}
	for k, m := range c.metas {
		_ = b.Set(metaKey(k), encodeMeta(*m), nil)
	}
	return c, b, buildErr
}

func (a *queueActor) buildSettle(b *pebble.Batch, c *commit, r *settleReq, now time.Time) error {
	m := c.meta(a, r.key)
	if r.through < m.head || r.through >= m.tail {
		return nil // stale: a restarted delivery actor settling what is already settled
	}
	bytes := r.bytes
	if r.from != m.head {
		var err error
		if bytes, err = a.st.rangeBytes(r.key, m.head, r.through+1); err != nil {
			return fmt.Errorf("settle %s: %w", r.key, err)
		}
	}
	// A small settle deletes point by point: a range tombstone per settle
	// (one per event for keys delivered an item at a time) makes every
	// later read rebuild the memtable's range-tombstone cache, which grows
	// quadratically (measured: 44 µs to 6 ms per item within 20,000).
	// Reads start at the ack cursor, so point tombstones below it are never
	// iterated; compaction drops them.
	if n := r.through + 1 - m.head; n <= pointDeleteMax {
		for seq := m.head; seq <= r.through; seq++ {
			_ = b.Delete(seqKey(prefixData, r.key, seq), nil)
		}
	} else {
		_ = b.DeleteRange(seqKey(prefixData, r.key, m.head), seqKey(prefixData, r.key, r.through+1), nil)
	}
	for _, f := range r.failed {
		if f.seq < m.head {
			continue
		}
		_ = b.Set(seqKey(prefixFailed, r.key, f.seq), encodeFailedInfo(failedInfo{at: now, reason: f.reason, code: f.code, attempts: f.attempts}, f.raw), nil)
		c.deadLetters[r.key] = append(c.deadLetters[r.key], deadLetter{seq: f.seq, raw: f.raw})
		m.failed++
		m.failedBytes += int64(len(f.raw))
	}
	c.settled[r] = r.through + 1 - m.head
	m.bytes -= bytes
	m.head = r.through + 1
	return nil
}

func (a *queueActor) buildRetry(b *pebble.Batch, c *commit, r *retryReq) error {
	keys := []string{r.key}
	if r.key == "" {
		keys = keys[:0]
		for k, ks := range a.keys {
			if ks.meta.failed > 0 || len(c.deadLetters[k]) > 0 {
				keys = append(keys, k)
			}
		}
		slices.Sort(keys)
	}
	for _, k := range keys {
		if a.keys[k] == nil || c.meta(a, k).failed == 0 {
			continue
		}
		m := c.meta(a, k)
		// Dead letters are the durable ones plus those this commit wrote,
		// in seq order; counters drop by what moved, never to a guess.
		var dls []deadLetter
		err := a.st.failedRecords(k, func(seq uint64, v []byte) error {
			_, _, raw, err := decodeFailed(v)
			if err != nil {
				raw = append([]byte(nil), v...) // keep it: delivery will quarantine it again with the reason
			} else {
				raw = append([]byte(nil), raw...) // v belongs to the iterator
			}
			dls = append(dls, deadLetter{seq: seq, raw: raw})
			return nil
		})
		if err != nil {
			return fmt.Errorf("retry %s: %w", k, err)
		}
		dls = append(dls, c.deadLetters[k]...)
		delete(c.deadLetters, k)
		slices.SortFunc(dls, func(x, y deadLetter) int { return cmp.Compare(x.seq, y.seq) })
		for _, dl := range dls {
			_ = b.Set(seqKey(prefixData, k, m.tail), dl.raw, nil)
			_ = b.Delete(seqKey(prefixFailed, k, dl.seq), nil)
			m.tail++
			m.bytes += int64(len(dl.raw))
			m.failed--
			m.failedBytes -= int64(len(dl.raw))
			c.retried[r]++
		}
	}
	return nil
}

func (a *queueActor) onCommitDone(ctx actor.Context, d *commitDone) {
	c := d.c
	a.inflight = nil
	if d.err != nil {
		a.commitFailed(c, d.err)
	} else {
		a.commitSucceeded(ctx, c)
	}
	a.releaseHeld(ctx)
	if len(a.pending) > 0 {
		a.startCommit(ctx)
	} else if a.closing != nil {
		a.finishClose(ctx)
	}
}

func (a *queueActor) commitFailed(c *commit, err error) {
	err = fmt.Errorf("queue write failed: %w", err)
	if time.Since(a.lastCommitErrLogged) > 10*time.Second {
		a.lastCommitErrLogged = time.Now()
		a.log.Error().Err(err).Msg("cannot write to the queue store; producers are refused until it recovers")
	}
	for _, op := range c.ops {
		switch r := op.(type) {
		case *enqueueReq:
			a.release(a.key(r.key), r)
			r.reply <- err
		case *kvReq:
			r.reply <- err
		case *retryReq:
			r.reply <- retryResult{err: err}
		case *settleReq:
			// The delivery actor moved past these records; have it go back
			// to the durable cursor so they are delivered again.
			if ks := a.keys[r.key]; ks != nil && ks.shared != nil {
				ks.shared.rewind.Store(true)
				ks.shared.notify()
			}
		default:
			a.deadLetterOpFailed(op, err)
		}
	}
}

func (a *queueActor) commitSucceeded(ctx actor.Context, c *commit) {
	for k, m := range c.metas {
		ks := a.key(k)
		a.totalItems += m.pending() - ks.meta.pending()
		a.totalBytes += m.bytes - ks.meta.bytes
		if d := m.failedBytes - ks.meta.failedBytes; d != 0 {
			a.dl.failedBytes += d
			a.dl.stuck = a.dl.stuck && d < 0 // a new dead letter may make a trim worth it again
		}
		ks.meta = *m
	}
	freed := false
	now := time.Now()
	for _, op := range c.ops {
		switch r := op.(type) {
		case *enqueueReq:
			a.release(a.key(r.key), r)
			a.metrics.enqueued.Add(float64(len(r.payloads)))
			r.reply <- nil
		case *kvReq:
			r.reply <- nil
		case *retryReq:
			r.reply <- retryResult{n: c.retried[r]}
		case *settleReq:
			n := c.settled[r]
			if n == 0 {
				continue
			}
			freed = true
			ks := a.keys[r.key]
			ok := n - uint64(len(r.failed))
			ks.delivered.add(now, int64(ok))
			ks.sinceCompact += n
			a.metrics.delivered.Add(float64(ok))
			a.metrics.failed.Add(float64(len(r.failed)))
			if ks.sinceCompact >= a.opts.CompactEvery || a.st.disk.isFull() {
				a.compactKey(ctx, r.key, ks)
			}
		default:
			a.deadLetterOpDone(op)
		}
	}
	a.checkDeadLetterLimits(ctx, false)
	for k := range c.metas {
		ks := a.keys[k]
		if ks.shared != nil {
			ks.shared.head.Store(ks.meta.head)
			ks.shared.tail.Store(ks.meta.tail)
			ks.shared.notify()
		} else if ks.meta.pending() > 0 && !a.closed {
			a.ensureDeliverer(ctx, k, ks)
		}
	}
	if freed {
		a.wakeWaiters(ctx)
	}
}

// wakeWaiters admits parked producers that now fit, oldest first. One that
// still does not fit keeps its place; those behind it on other keys go on.
func (a *queueActor) wakeWaiters(ctx actor.Context) {
	if len(a.waiters) == 0 {
		return
	}
	kept := a.waiters[:0]
	blocked := map[string]bool{}
	diskOK := a.st.disk.err() == nil
	if !diskOK {
		a.scheduleDiskTick(ctx)
	}
	for _, r := range a.waiters {
		ks := a.key(r.key)
		if r.ctx.Err() != nil {
			ks.waiting--
			r.reply <- r.ctx.Err()
			continue
		}
		if !blocked[r.key] && diskOK && a.fits(ks, r) && a.admitDisk(ctx, r) {
			ks.waiting--
			a.admit(ctx, ks, r)
			continue
		}
		blocked[r.key] = true
		kept = append(kept, r)
	}
	clear(a.waiters[len(kept):])
	a.waiters = kept
}

func (a *queueActor) ensureDeliverer(ctx actor.Context, k string, ks *keyState) {
	if ks.deliverer != nil || ks.respawnQueued {
		return
	}
	route := a.opts.Router(k)
	if route.Sink == nil {
		return
	}
	if route.MaxItems <= 0 {
		route.MaxItems = a.opts.BatchMaxItems
	}
	if route.MaxBytes <= 0 {
		route.MaxBytes = a.opts.BatchMaxBytes
	}
	if route.Linger == 0 {
		route.Linger = a.opts.Linger
	}
	sh := newDeliveryShared()
	sh.head.Store(ks.meta.head)
	sh.tail.Store(ks.meta.tail)
	cfg := deliverConfig{
		key: k, route: route, shared: sh, st: a.st, queue: ctx.Self(), sys: a.sys,
		idle: a.opts.IdleTimeout, backoffInitial: a.opts.BackoffInitial, backoffMax: a.opts.BackoffMax,
		metrics: a.metrics, log: a.log.With().Str("routing_key", a.opts.KeyLabel(k)).Logger(),
	}
	props := actor.PropsFromProducer(func() actor.Actor { return &deliverActor{cfg: cfg} })
	ks.deliverer = ctx.SpawnPrefix(props, "deliver/")
	ks.shared = sh
}

func (a *queueActor) onIdle(ctx actor.Context, r *idleReq) {
	ks := a.keys[r.key]
	if ks == nil || ks.deliverer == nil || !ks.deliverer.Equal(r.pid) {
		return
	}
	if ks.meta.tail > r.cursor || ks.resItems > 0 {
		ks.shared.notify()
		return
	}
	ctx.Stop(ks.deliverer)
	ks.deliverer, ks.shared = nil, nil
}

func (a *queueActor) onTerminated(ctx actor.Context, t *actor.Terminated) {
	for k, ks := range a.keys {
		if ks.deliverer == nil || !ks.deliverer.Equal(t.Who) {
			continue
		}
		// Not stopped by us (that clears deliverer first): its supervisor
		// gave up after repeated panics. Try again later, with a growing
		// pause, rather than at once.
		ks.deliverer, ks.shared = nil, nil
		ks.crashes++
		if a.closed {
			return
		}
		wait := min(time.Duration(ks.crashes)*10*time.Second, 5*time.Minute)
		a.log.Error().Str("routing_key", a.opts.KeyLabel(k)).Dur("retry_in_ms", wait).
			Msg("delivery keeps crashing; pausing this routing key")
		ks.respawnQueued = true
		self := ctx.Self()
		key := k
		time.AfterFunc(wait, func() { a.sys.Root.Send(self, &respawnReq{key: key}) })
		return
	}
}

func (a *queueActor) compactKey(ctx actor.Context, k string, ks *keyState) {
	if a.compacting || a.closed {
		return
	}
	ks.sinceCompact = 0
	a.compacting = true
	cctx, cancel := context.WithCancel(context.Background())
	a.compactCancel = cancel
	start, _ := keySpan(prefixData, k)
	end := seqKey(prefixData, k, ks.meta.head)
	self := ctx.Self()
	a.compactWG.Add(1)
	go func() {
		defer a.compactWG.Done()
		err := a.st.db.Compact(cctx, start, end, false)
		a.sys.Root.Send(self, &compactDone{err: err})
	}()
}

func (a *queueActor) stopCompaction() {
	if a.compactCancel != nil {
		a.compactCancel()
	}
	a.compactWG.Wait()
}

func (a *queueActor) onClose(ctx actor.Context, r *closeReq) {
	a.closed = true
	a.stopDeadLetterTick()
	a.closing = r
	for _, w := range a.waiters {
		a.key(w.key).waiting--
		w.reply <- ErrClosed
	}
	a.waiters = nil
	// Stop delivery first: a batch being sent is cancelled and stays pending.
	for _, ks := range a.keys {
		if ks.deliverer != nil {
			ctx.Stop(ks.deliverer)
			ks.deliverer, ks.shared = nil, nil
		}
	}
	if a.inflight == nil && len(a.pending) == 0 {
		a.finishClose(ctx)
	}
}

func (a *queueActor) finishClose(_ actor.Context) {
	a.finished = true
	a.stopCompaction()
	a.closing.reply <- struct{}{}
	a.closing = nil
}

func (a *queueActor) status() Status {
	s := Status{Waiting: int64(len(a.waiters))}
	now := time.Now()
	for k, ks := range a.keys {
		m := ks.meta
		kst := KeyStatus{
			Key: k, Pending: m.pending(), PendingBytes: m.bytes, Failed: m.failed, FailedBytes: m.failedBytes,
			DeliveredHour: ks.delivered.total(now),
		}
		if ks.shared != nil {
			kst.Delivering = ks.shared.inflight.Load()
			if e := ks.shared.lastErr.Load(); e != nil {
				kst.LastError, kst.LastErrorAt = e.msg, e.at
			}
		}
		if kst.Pending > 0 {
			if ks.oldestAt.IsZero() || ks.oldestSeq != m.head {
				if at, err := a.st.enqueuedAt(k, m.head); err == nil {
					ks.oldestAt, ks.oldestSeq = at, m.head
				}
			}
			if !ks.oldestAt.IsZero() {
				kst.OldestPendingS = now.Sub(ks.oldestAt).Seconds()
			}
		}
		if kst.Pending == 0 && kst.Failed == 0 && kst.DeliveredHour == 0 && kst.Delivering == 0 {
			continue
		}
		s.Keys = append(s.Keys, kst)
		s.Pending += kst.Pending
		s.PendingBytes += kst.PendingBytes
		s.Delivering += kst.Delivering
		s.Failed += kst.Failed
		s.FailedBytes += kst.FailedBytes
		s.DeliveredHour += kst.DeliveredHour
		s.OldestPendingS = max(s.OldestPendingS, kst.OldestPendingS)
	}
	slices.SortFunc(s.Keys, func(x, y KeyStatus) int {
		switch {
		case x.Key < y.Key:
			return -1
		case x.Key > y.Key:
			return 1
		}
		return 0
	})
	return s
}

// hourCounter counts events in the last hour in one-minute buckets.
type hourCounter struct {
	minutes [60]int64 // unix minute of each bucket
	counts  [60]int64
}

func (h *hourCounter) add(now time.Time, n int64) {
	m := now.Unix() / 60
	i := m % 60
	if h.minutes[i] != m {
		h.minutes[i], h.counts[i] = m, 0
	}
	h.counts[i] += n
}

func (h *hourCounter) total(now time.Time) int64 {
	m := now.Unix() / 60
	var t int64
	for i := range h.minutes {
		if m-h.minutes[i] < 60 {
			t += h.counts[i]
		}
	}
	return t
}
