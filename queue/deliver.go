package queue

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/cenkalti/backoff/v4"
	"github.com/rs/zerolog"
)

// deliveryShared is what the queue actor and one key's delivery worker
// share: the durable window [head, tail) and a doorbell. Atomics rather than
// messages because the worker blocks in a select, not in Receive.
type deliveryShared struct {
	head     atomic.Uint64
	tail     atomic.Uint64
	rewind   atomic.Bool
	inflight atomic.Int64
	lastErr  atomic.Pointer[keyError] // the last delivery error, until a batch is accepted
	poke     chan struct{}
}

func newDeliveryShared() *deliveryShared { return &deliveryShared{poke: make(chan struct{}, 1)} }

func (s *deliveryShared) notify() {
	select {
	case s.poke <- struct{}{}:
	default:
	}
}

type deliverConfig struct {
	key            string
	route          Route
	shared         *deliveryShared
	st             *store
	queue          *actor.PID
	sys            *actor.ActorSystem
	idle           time.Duration
	backoffInitial time.Duration
	backoffMax     time.Duration
	metrics        *metrics
	log            zerolog.Logger
}

// workerPanic carries a panic from the worker goroutine into Receive, where
// re-panicking hands it to the supervisor instead of killing the process.
type workerPanic struct {
	value any
	stack []byte
}

// deliverActor sends one key's records upstream, one batch at a time, in
// order. The sending runs in a worker goroutine because it blocks for as
// long as the upstream is down.
type deliverActor struct {
	cfg    deliverConfig
	cancel context.CancelFunc
	done   chan struct{}
}

func (d *deliverActor) Receive(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case *actor.Started:
		wctx, cancel := context.WithCancel(context.Background())
		d.cancel, d.done = cancel, make(chan struct{})
		w := &worker{deliverConfig: d.cfg, self: ctx.Self()}
		go func() {
			defer close(d.done)
			defer func() {
				if v := recover(); v != nil {
					d.cfg.sys.Root.Send(w.self, &workerPanic{value: v, stack: debug.Stack()})
				}
			}()
			w.run(wctx)
		}()
	case *actor.Stopping, *actor.Restarting:
		d.stopWorker()
	case *workerPanic:
		d.cfg.log.Error().Str("panic", fmt.Sprint(m.value)).Bytes("stack", m.stack).Msg("delivery panicked; restarting it")
		panic(m.value)
	}
}

func (d *deliverActor) stopWorker() {
	if d.cancel == nil {
		return
	}
	d.cancel()
	select {
	case <-d.done:
	case <-time.After(10 * time.Second):
		d.cfg.log.Error().Msg("delivery worker did not stop within 10s of being cancelled")
	}
	d.cancel = nil
}

type worker struct {
	deliverConfig
	self     *actor.PID
	maxItems int
}

func (w *worker) run(ctx context.Context) {
	sh := w.shared
	w.maxItems = w.route.MaxItems
	cursor := sh.head.Load()
	idle := time.NewTimer(w.idle)
	defer idle.Stop()
	var lingerUntil time.Time
	for ctx.Err() == nil {
		if sh.rewind.Swap(false) || cursor < sh.head.Load() {
			cursor = sh.head.Load()
		}
		tail := sh.tail.Load()
		if cursor >= tail {
			lingerUntil = time.Time{}
			select {
			case <-ctx.Done():
				return
			case <-sh.poke:
			case <-idle.C:
				w.sys.Root.Send(w.queue, &idleReq{key: w.key, cursor: cursor, pid: w.self})
				idle.Reset(w.idle)
			}
			continue
		}
		resetTimer(idle, w.idle)
		// Linger: a batch that is not full waits a little for company, so a
		// burst goes up in one request rather than many.
		if w.route.Linger > 0 && tail-cursor < uint64(w.maxItems) {
			if lingerUntil.IsZero() {
				lingerUntil = time.Now().Add(w.route.Linger)
			}
			if wait := time.Until(lingerUntil); wait > 0 {
				t := time.NewTimer(wait)
				select {
				case <-ctx.Done():
				case <-sh.poke:
				case <-t.C:
				}
				t.Stop()
				continue
			}
		}
		lingerUntil = time.Time{}
		recs, err := w.st.read(w.key, cursor, tail, w.maxItems, w.route.MaxBytes)
		if err != nil {
			w.log.Error().Err(err).Msg("cannot read the queue store; retrying")
			if !sleep(ctx, time.Second) {
				return
			}
			continue
		}
		if len(recs) == 0 {
			// Everything below tail must exist; a hole means the store lost
			// records. Skip past it loudly rather than spin.
			w.log.Error().Uint64("from", cursor).Uint64("to", tail).Msg("queue records missing; skipping the gap")
			w.settle(cursor, tail-1, 0, nil)
			cursor = tail
			continue
		}
		if recs[0].err != nil {
			r := recs[0]
			w.log.Error().Err(r.err).Uint64("seq", r.msg.Seq).Msg("quarantining an undecodable record to failed")
			w.settle(r.msg.Seq, r.msg.Seq, int64(len(r.raw)), []failedRec{{seq: r.msg.Seq, raw: r.raw, reason: r.err.Error(), attempts: 0}})
			cursor = r.msg.Seq + 1
			continue
		}
		good := recs
		for i, r := range recs {
			if r.err != nil {
				good = recs[:i]
				break
			}
		}
		next, ok := w.deliver(ctx, good)
		if !ok {
			return
		}
		cursor = next
	}
}

// deliver sends recs until they are accepted or failed for good, and
// returns the cursor past what it settled. false means ctx ended.
func (w *worker) deliver(ctx context.Context, recs []rawRecord) (uint64, bool) {
	bo := backoff.NewExponentialBackOff()
	bo.InitialInterval = w.backoffInitial
	bo.MaxInterval = w.backoffMax
	bo.MaxElapsedTime = 0 // never give up: the default 15 minutes would drop data
	bo.Reset()
	msgs := make([]Message, len(recs))
	for i, r := range recs {
		msgs[i] = r.msg
	}
	attempt := 0
	for {
		w.shared.inflight.Store(int64(len(msgs)))
		start := time.Now()
		err := w.call(ctx, msgs)
		w.metrics.upstreamSeconds.Observe(time.Since(start).Seconds())
		w.shared.inflight.Store(0)
		last := msgs[len(msgs)-1].Seq
		var perm *PermanentError
		switch {
		case err == nil:
			w.shared.lastErr.Store(nil)
			now := time.Now()
			var bytes int64
			for _, r := range recs[:len(msgs)] {
				bytes += int64(len(r.raw))
				w.metrics.latency.Observe(now.Sub(r.msg.EnqueuedAt).Seconds())
			}
			w.settle(msgs[0].Seq, last, bytes, nil)
			if attempt > 0 {
				w.log.Info().Int("attempts", attempt+1).Msg("upstream accepted the batch after retrying")
			}
			return last + 1, true
		case ctx.Err() != nil:
			return 0, false
		case errors.Is(err, ErrTooLarge) && len(msgs) > 1:
			msgs = msgs[:len(msgs)/2]
			w.maxItems = max(1, len(msgs))
			w.log.Warn().Int("items", len(msgs)).Msg("upstream said the batch is too large; halving it")
			continue
		case errors.As(err, &perm) || errors.Is(err, ErrTooLarge):
			reason, code := err.Error(), statusOf(err)
			failed := make([]failedRec, len(msgs))
			var bytes int64
			for i, r := range recs[:len(msgs)] {
				failed[i] = failedRec{seq: r.msg.Seq, raw: r.raw, reason: reason, code: code, attempts: attempt + 1}
				bytes += int64(len(r.raw))
			}
			w.shared.lastErr.Store(&keyError{msg: reason, at: time.Now().UTC()})
			w.log.Error().Err(err).Int("items", len(msgs)).Msg("upstream refused the batch for good; moved to failed (see `courier status`, re-send with `courier retry`)")
			w.settle(msgs[0].Seq, last, bytes, failed)
			return last + 1, true
		}
		attempt++
		w.metrics.retries.Inc()
		w.shared.lastErr.Store(&keyError{msg: err.Error(), at: time.Now().UTC()})
		wait := bo.NextBackOff()
		var ra *RetryAfterError
		if errors.As(err, &ra) && ra.After > wait {
			wait = ra.After
		}
		ev := w.log.Warn()
		if attempt > 3 {
			ev = w.log.Debug() // the first few say it; status and metrics carry the rest
		}
		ev.Err(err).Int("attempt", attempt).Dur("retry_in_ms", wait).Msg("upstream delivery failed; will retry")
		if !sleep(ctx, wait) {
			return 0, false
		}
	}
}

func (w *worker) call(ctx context.Context, msgs []Message) error {
	return w.route.Sink.Deliver(ctx, w.key, msgs)
}

func (w *worker) settle(from, through uint64, bytes int64, failed []failedRec) {
	w.sys.Root.Send(w.queue, &settleReq{key: w.key, from: from, through: through, bytes: bytes, failed: failed})
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

func resetTimer(t *time.Timer, d time.Duration) {
	t.Stop()
	t.Reset(d)
}
