package queue

import (
	"container/heap"
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/cockroachdb/pebble/v2"
)

// Dead letters have a quota of their own, separate from what is pending:
// what an upstream refused for good must never take the room (or the disk)
// that events still to be delivered need. Past Options.MaxFailedBytes the
// oldest dead letters, all keys together, are dropped; past
// Options.MaxFailedAge (when set) every older one is.

// DefaultMaxFailedBytes bounds dead letters when Options.MaxFailedBytes is
// zero: 64 MiB keeps tens of thousands of refused events (PagerDuty events
// are about 1 KiB) to look at and retry, while being a sixteenth of the
// default pending quota, so a client sending to a revoked key for days
// costs at most that much disk.
const DefaultMaxFailedBytes = 64 << 20

// ErrUnknownKey is returned for a routing key the queue holds nothing of.
var ErrUnknownKey = errors.New("no such routing key in the queue")

// ErrNoItem is returned by Item for a seq the key does not hold.
var ErrNoItem = errors.New("no such item in the queue")

// Item states.
const (
	StatePending = "pending"
	StateFailed  = "failed"
)

// Item is one record of the queue as an operator sees it.
type Item struct {
	Key        string    `json:"key"`
	Seq        uint64    `json:"seq"`
	State      string    `json:"state"`
	EnqueuedAt time.Time `json:"enqueued_at,omitzero"`
	// Size is the stored size, what quotas count.
	Size int64 `json:"size"`
	// For dead letters: when and why delivery failed, the upstream's HTTP
	// status (0 when none, e.g. a record that did not decode) and how many
	// attempts were made (0 when not recorded, dead letters of older
	// versions).
	FailedAt   time.Time `json:"failed_at,omitzero"`
	Reason     string    `json:"reason,omitempty"`
	StatusCode int       `json:"status_code,omitempty"`
	Attempts   int       `json:"attempts,omitempty"`
	// Payload is the stored payload, set by Item only.
	Payload []byte `json:"-"`
}

// ItemQuery selects a page of ListItems.
type ItemQuery struct {
	Key   string // "" = every key
	State string // StateFailed (default) or StatePending
	// After continues a listing past (AfterKey, AfterSeq), as the previous
	// page's Next says.
	AfterKey string
	AfterSeq uint64
	Limit    int // 0 = 100, at most 1000
}

// ItemPage is one page of ListItems; More says there is a next one, which
// starts after the last item.
type ItemPage struct {
	Items []Item
	More  bool
}

// ListItems lists a page of records, oldest first within a key, keys in
// byte order. It reads a snapshot of the store and never waits on the
// queue actor. A Key the queue holds nothing of is ErrUnknownKey.
func (q *Queue) ListItems(q0 ItemQuery) (ItemPage, error) {
	if q.closed.Load() {
		return ItemPage{}, ErrClosed
	}
	if q0.Limit <= 0 {
		q0.Limit = 100
	}
	q0.Limit = min(q0.Limit, 1000)
	if q0.State == "" {
		q0.State = StateFailed
	}
	if q0.State != StateFailed && q0.State != StatePending {
		return ItemPage{}, fmt.Errorf("unknown state %q: pending or failed", q0.State)
	}
	snap := q.st.db.NewSnapshot()
	defer snap.Close()
	if q0.Key != "" {
		if _, err := readMeta(snap, q0.Key); err != nil {
			return ItemPage{}, err
		}
	}
	var page ItemPage
	add := func(it Item) bool {
		if len(page.Items) == q0.Limit {
			page.More = true
			return false
		}
		page.Items = append(page.Items, it)
		return true
	}
	if q0.State == StateFailed {
		lo, hi := []byte{prefixFailed}, []byte{prefixFailed + 1}
		if q0.Key != "" {
			lo, hi = keySpan(prefixFailed, q0.Key)
		}
		if q0.AfterKey != "" {
			if from := seqKey(prefixFailed, q0.AfterKey, q0.AfterSeq); string(from) >= string(lo) {
				lo = append(from, 0) // just past it
			}
		}
		it, err := snap.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: hi})
		if err != nil {
			return ItemPage{}, err
		}
		defer it.Close()
		for it.First(); it.Valid(); it.Next() {
			k := it.Key()
			if !add(failedItem(string(k[1:len(k)-9]), seqOf(k), it.Value(), false)) {
				break
			}
		}
		return page, it.Error()
	}
	// Pending records of a key are [head, tail); reading from the head never
	// steps over the tombstones of what was delivered.
	keys := []string{q0.Key}
	if q0.Key == "" {
		var err error
		if keys, err = keysAfter(snap, q0.AfterKey); err != nil {
			return ItemPage{}, err
		}
	}
	for _, k := range keys {
		m, err := readMeta(snap, k)
		if err != nil {
			continue // gone since it was listed
		}
		from := m.head
		if k == q0.AfterKey && q0.AfterSeq+1 > from {
			from = q0.AfterSeq + 1
		}
		if k < q0.AfterKey || from >= m.tail {
			continue
		}
		it, err := snap.NewIter(&pebble.IterOptions{LowerBound: seqKey(prefixData, k, from), UpperBound: seqKey(prefixData, k, m.tail)})
		if err != nil {
			return ItemPage{}, err
		}
		full := false
		for it.First(); it.Valid(); it.Next() {
			if !add(pendingItem(k, seqOf(it.Key()), it.Value(), false)) {
				full = true
				break
			}
		}
		err = errors.Join(it.Error(), it.Close())
		if err != nil || full {
			return page, err
		}
	}
	return page, nil
}

// Item returns one record of key, dead letter or pending, with its payload.
func (q *Queue) Item(key string, seq uint64) (Item, error) {
	if q.closed.Load() {
		return Item{}, ErrClosed
	}
	snap := q.st.db.NewSnapshot()
	defer snap.Close()
	m, err := readMeta(snap, key)
	if err != nil {
		return Item{}, err
	}
	v, closer, err := snap.Get(seqKey(prefixFailed, key, seq))
	if err == nil {
		defer closer.Close()
		return failedItem(key, seq, v, true), nil
	}
	if !errors.Is(err, pebble.ErrNotFound) {
		return Item{}, err
	}
	if seq < m.head || seq >= m.tail {
		return Item{}, ErrNoItem
	}
	v, closer, err = snap.Get(seqKey(prefixData, key, seq))
	if errors.Is(err, pebble.ErrNotFound) {
		return Item{}, ErrNoItem
	}
	if err != nil {
		return Item{}, err
	}
	defer closer.Close()
	return pendingItem(key, seq, v, true), nil
}

func failedItem(key string, seq uint64, v []byte, payload bool) Item {
	it := Item{Key: key, Seq: seq, State: StateFailed}
	fi, raw, err := decodeFailedInfo(v)
	if err != nil {
		it.Reason, it.Size = err.Error(), int64(len(v))
		return it
	}
	it.FailedAt, it.Reason, it.StatusCode, it.Attempts, it.Size = fi.at, fi.reason, fi.code, fi.attempts, int64(len(raw))
	at, p, err := decodeRecord(raw)
	if err == nil {
		it.EnqueuedAt = at
		if payload {
			it.Payload = append([]byte(nil), p...)
		}
	} else if payload {
		it.Payload = append([]byte(nil), raw...) // what there is, for whoever investigates
	}
	return it
}

func pendingItem(key string, seq uint64, v []byte, payload bool) Item {
	it := Item{Key: key, Seq: seq, State: StatePending, Size: int64(len(v))}
	at, p, err := decodeRecord(v)
	if err != nil {
		it.Reason = err.Error()
		return it
	}
	it.EnqueuedAt = at
	if payload {
		it.Payload = append([]byte(nil), p...)
	}
	return it
}

func readMeta(r pebble.Reader, key string) (keyMeta, error) {
	if err := validKey(key); err != nil {
		return keyMeta{}, err
	}
	v, closer, err := r.Get(metaKey(key))
	if errors.Is(err, pebble.ErrNotFound) {
		return keyMeta{}, ErrUnknownKey
	}
	if err != nil {
		return keyMeta{}, err
	}
	defer closer.Close()
	return decodeMeta(v)
}

// keysAfter lists the routing keys from after on (after included, its
// later seqs may remain), in byte order.
func keysAfter(r pebble.Reader, after string) ([]string, error) {
	it, err := r.NewIter(&pebble.IterOptions{LowerBound: metaKey(after), UpperBound: []byte{prefixMeta + 1}})
	if err != nil {
		return nil, err
	}
	var keys []string
	for it.First(); it.Valid(); it.Next() {
		keys = append(keys, string(it.Key()[1:]))
	}
	return keys, errors.Join(it.Error(), it.Close())
}

// Purge selects dead letters to drop: of Key ("" = every key), only Seq
// when OneSeq, only those that failed before OlderThan when it is set.
type Purge struct {
	Key       string
	OneSeq    bool
	Seq       uint64
	OlderThan time.Time
}

// PurgeResult says what a purge dropped, by key.
type PurgeResult struct {
	Dropped int
	Bytes   int64
	ByKey   map[string]int
}

// Purge drops dead letters durably and returns what it dropped. A Key the
// queue holds nothing of is ErrUnknownKey; a Seq that is not a dead letter
// of Key is ErrNoItem. Pending records are never purged: they are what
// courier promised to deliver.
func (q *Queue) Purge(ctx context.Context, p Purge) (PurgeResult, error) {
	if q.closed.Load() {
		return PurgeResult{}, ErrClosed
	}
	if p.OneSeq && p.Key == "" {
		return PurgeResult{}, errors.New("purge: a seq needs its routing key")
	}
	r := &purgeReq{p: p, reply: make(chan purgeReply, 1)}
	q.sys.Root.Send(q.pid, r)
	select {
	case res := <-r.reply:
		return res.res, res.err
	case <-ctx.Done():
		return PurgeResult{}, ctx.Err()
	}
}

type (
	purgeReq struct {
		p     Purge
		reply chan purgeReply
		res   PurgeResult
		err   error // found while building: answered after the commit
	}
	purgeReply struct {
		res PurgeResult
		err error
	}
	// trimReq enforces the dead-letter limits in the next commit.
	trimReq struct {
		byKey map[string]*trimCount
	}
	trimCount struct{ bytes, age int }
	// deadLetterTick checks the age limit.
	deadLetterTick struct{}
)

// deadLetterState is the queue actor's view of the dead-letter limits.
type deadLetterState struct {
	failedBytes int64 // durable, all keys
	trimQueued  bool
	// stuck is set when a trim freed nothing while still over: it is not
	// queued again until a dead letter is added, so a counter that
	// disagrees with the records cannot make the actor commit forever.
	stuck bool
	timer *time.Timer
	// held are ops kept out of a commit that already has a retry (or, for
	// a retry, a purge or trim): the dead-letter ops read dead letters
	// from the database at the start of a commit and retry reads them
	// from it too, so in one batch both would take the same records.
	held []any
}

// onDeadLetterMsg handles the messages of this file; false when m is not one.
func (a *queueActor) onDeadLetterMsg(ctx actor.Context, m any) bool {
	switch r := m.(type) {
	case *purgeReq:
		if a.closed {
			r.reply <- purgeReply{err: ErrClosed}
			return true
		}
		if r.p.Key != "" {
			if ks := a.keys[r.p.Key]; ks == nil {
				r.reply <- purgeReply{err: ErrUnknownKey}
				return true
			}
		}
		a.add(ctx, r)
	case *deadLetterTick:
		a.checkDeadLetterLimits(ctx, true)
		a.scheduleDeadLetterTick(ctx)
	default:
		return false
	}
	return true
}

// holdForNextCommit keeps op for the next commit when the one being
// gathered would hold both a retry and a purge or trim.
func (a *queueActor) holdForNextCommit(op any) bool {
	isDL := func(o any) bool {
		switch o.(type) {
		case *purgeReq, *trimReq:
			return true
		}
		return false
	}
	_, isRetry := op.(*retryReq)
	if !isRetry && !isDL(op) {
		return false
	}
	for _, p := range a.pending {
		_, pRetry := p.(*retryReq)
		if (isRetry && isDL(p)) || (isDL(op) && pRetry) {
			a.dl.held = append(a.dl.held, op)
			return true
		}
	}
	return false
}

// releaseHeld gathers the held ops into the next commit.
func (a *queueActor) releaseHeld(ctx actor.Context) {
	held := a.dl.held
	a.dl.held = nil
	for _, op := range held {
		a.add(ctx, op)
	}
}

// scheduleDeadLetterTick arms the age check: a tenth of the age limit, at
// most a minute, so a dead letter outlives the limit by little.
func (a *queueActor) scheduleDeadLetterTick(ctx actor.Context) {
	if a.opts.MaxFailedAge <= 0 || a.closed {
		return
	}
	every := min(a.opts.MaxFailedAge/10, time.Minute)
	every = max(every, time.Second)
	if a.opts.ageCheckEvery > 0 {
		every = a.opts.ageCheckEvery
	}
	self := ctx.Self()
	a.dl.timer = time.AfterFunc(every, func() { a.sys.Root.Send(self, &deadLetterTick{}) })
}

func (a *queueActor) stopDeadLetterTick() {
	if a.dl.timer != nil {
		a.dl.timer.Stop()
	}
}

// checkDeadLetterLimits queues a trim when dead letters are over their
// quota, or, when age is set, may be past the age limit.
func (a *queueActor) checkDeadLetterLimits(ctx actor.Context, age bool) {
	if a.closed || a.finished || a.dl.trimQueued {
		return
	}
	over := a.dl.failedBytes > a.opts.MaxFailedBytes && !a.dl.stuck
	if !over && !(age && a.opts.MaxFailedAge > 0 && a.dl.failedBytes > 0) {
		return
	}
	a.dl.trimQueued = true
	a.add(ctx, &trimReq{byKey: map[string]*trimCount{}})
}

// peekMeta is the metadata of k as this commit has it so far, without
// making the commit rewrite it.
func (c *commit) peekMeta(a *queueActor, k string) keyMeta {
	if m, ok := c.metas[k]; ok {
		return *m
	}
	if ks := a.keys[k]; ks != nil {
		return ks.meta
	}
	return keyMeta{}
}

// buildDeadLetterOps builds purges and trims first in the commit: before
// any other op the database holds exactly the metadata's dead letters, so
// they can be read from it. gone tracks what they delete here.
func (a *queueActor) buildDeadLetterOps(b *pebble.Batch, c *commit) error {
	gone := map[string]map[uint64]bool{}
	var freed int64
	drop := func(k string, seq uint64, size int64) {
		if gone[k] == nil {
			gone[k] = map[uint64]bool{}
		}
		gone[k][seq] = true
		_ = b.Delete(seqKey(prefixFailed, k, seq), nil)
		m := c.meta(a, k)
		m.failed--
		m.failedBytes -= size
		freed += size
	}
	var errs []error
	for _, op := range c.ops {
		r, ok := op.(*purgeReq)
		if !ok {
			continue
		}
		r.res = PurgeResult{ByKey: map[string]int{}}
		keys := []string{r.p.Key}
		if r.p.Key == "" {
			keys = a.failedKeys(c)
		}
		for _, k := range keys {
			err := a.scanFailed(k, gone[k], func(seq uint64, at time.Time, size int64) bool {
				if r.p.OneSeq && seq != r.p.Seq {
					return seq < r.p.Seq
				}
				if !r.p.OlderThan.IsZero() && !at.Before(r.p.OlderThan) {
					return false // later ones failed later still
				}
				drop(k, seq, size)
				r.res.Dropped++
				r.res.Bytes += size
				r.res.ByKey[k]++
				return !r.p.OneSeq
			})
			if err != nil {
				errs = append(errs, fmt.Errorf("purge %s: %w", k, err))
			}
		}
		if r.p.OneSeq && r.res.Dropped == 0 {
			r.err = ErrNoItem
		}
	}
	for _, op := range c.ops {
		if r, ok := op.(*trimReq); ok {
			if err := a.buildTrim(c, r, a.dl.failedBytes-freed, gone, drop); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

// failedKeys lists the keys with dead letters, in byte order.
func (a *queueActor) failedKeys(c *commit) []string {
	var keys []string
	for k := range a.keys {
		if c.peekMeta(a, k).failed > 0 {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	return keys
}

// scanFailed calls fn with key's dead letters, oldest first, skipping gone,
// until fn returns false.
func (a *queueActor) scanFailed(key string, gone map[uint64]bool, fn func(seq uint64, at time.Time, size int64) bool) error {
	lo, hi := keySpan(prefixFailed, key)
	it, err := a.st.db.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: hi})
	if err != nil {
		return err
	}
	for it.First(); it.Valid(); it.Next() {
		seq := seqOf(it.Key())
		if gone[seq] {
			continue
		}
		at, size := failedAtSize(it.Value())
		if !fn(seq, at, size) {
			break
		}
	}
	return errors.Join(it.Error(), it.Close())
}

// failedAtSize is what the limits need of a dead letter: when it failed
// (zero, so dropped first, when it does not decode) and its size as the
// counters have it.
func failedAtSize(v []byte) (time.Time, int64) {
	fi, raw, err := decodeFailedInfo(v)
	if err != nil {
		return time.Time{}, int64(len(v))
	}
	return fi.at, int64(len(raw))
}

// buildTrim drops dead letters older than the age limit, then the oldest,
// all keys together, until they fit their quota. Within a key dead letters
// are in the order they failed, so the oldest overall is the oldest of
// some key's first: a heap of each key's first gives them in order.
func (a *queueActor) buildTrim(c *commit, r *trimReq, total int64, gone map[string]map[uint64]bool,
	drop func(k string, seq uint64, size int64)) error {
	count := func(k string) *trimCount {
		if r.byKey[k] == nil {
			r.byKey[k] = &trimCount{}
		}
		return r.byKey[k]
	}
	var cutoff time.Time
	if a.opts.MaxFailedAge > 0 {
		cutoff = a.opts.clock().Add(-a.opts.MaxFailedAge)
	}
	var h firstHeap
	for _, k := range a.failedKeys(c) {
		found := false
		err := a.scanFailed(k, gone[k], func(seq uint64, at time.Time, size int64) bool {
			found = true
			if !cutoff.IsZero() && at.Before(cutoff) {
				drop(k, seq, size)
				total -= size
				count(k).age++
				return true
			}
			h = append(h, keyFirst{key: k, seq: seq, at: at})
			return false
		})
		if err != nil {
			return fmt.Errorf("trim dead letters of %s: %w", k, err)
		}
		if m := c.peekMeta(a, k); !found && (m.failed != 0 || m.failedBytes != 0) {
			// The counters disagree with the records: the records win.
			a.log.Warn().Str("routing_key", a.opts.KeyLabel(k)).Int64("counted", m.failed).
				Msg("dead-letter counters of a key with none on disk; set to zero")
			total -= m.failedBytes
			mm := c.meta(a, k)
			mm.failed, mm.failedBytes = 0, 0
		}
	}
	heap.Init(&h)
	for total > a.opts.MaxFailedBytes && h.Len() > 0 {
		f := heap.Pop(&h).(keyFirst)
		var next *keyFirst
		err := a.scanFailed(f.key, gone[f.key], func(seq uint64, at time.Time, size int64) bool {
			if seq < f.seq {
				return true
			}
			if total <= a.opts.MaxFailedBytes || (h.Len() > 0 && at.After(h[0].at)) {
				next = &keyFirst{key: f.key, seq: seq, at: at}
				return false
			}
			drop(f.key, seq, size)
			total -= size
			count(f.key).bytes++
			return true
		})
		if err != nil {
			return fmt.Errorf("trim dead letters of %s: %w", f.key, err)
		}
		if next != nil {
			heap.Push(&h, *next)
		}
	}
	return nil
}

type keyFirst struct {
	key string
	seq uint64
	at  time.Time
}

type firstHeap []keyFirst

func (h firstHeap) Len() int { return len(h) }
func (h firstHeap) Less(i, j int) bool {
	if !h[i].at.Equal(h[j].at) {
		return h[i].at.Before(h[j].at)
	}
	return h[i].key < h[j].key
}
func (h firstHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *firstHeap) Push(x any)   { *h = append(*h, x.(keyFirst)) }
func (h *firstHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

// deadLetterOpFailed answers an op of this file whose commit failed.
func (a *queueActor) deadLetterOpFailed(op any, err error) {
	switch r := op.(type) {
	case *purgeReq:
		r.reply <- purgeReply{err: err}
	case *trimReq:
		a.dl.trimQueued = false // the next commit or tick tries again
	}
}

// deadLetterOpDone answers, counts and logs an op of this file once its
// commit is durable.
func (a *queueActor) deadLetterOpDone(op any) {
	switch r := op.(type) {
	case *purgeReq:
		if r.err != nil {
			r.reply <- purgeReply{err: r.err}
			return
		}
		a.metrics.deadDropped.WithLabelValues("purge").Add(float64(r.res.Dropped))
		for _, k := range sortedKeys(r.res.ByKey) {
			a.log.Info().Str("routing_key", a.opts.KeyLabel(k)).Int("dropped", r.res.ByKey[k]).
				Msg("dead letters purged by an operator")
		}
		r.reply <- purgeReply{res: r.res}
	case *trimReq:
		a.dl.trimQueued = false
		total := 0
		for _, k := range sortedKeysOf(r.byKey) {
			n := r.byKey[k]
			total += n.bytes + n.age
			if n.bytes > 0 {
				a.metrics.deadDropped.WithLabelValues("quota").Add(float64(n.bytes))
				a.log.Warn().Str("routing_key", a.opts.KeyLabel(k)).Int("dropped", n.bytes).
					Int64("max_failed_bytes", a.opts.MaxFailedBytes).
					Msg("dead letters over queue.max_failed_bytes; dropped the oldest")
			}
			if n.age > 0 {
				a.metrics.deadDropped.WithLabelValues("age").Add(float64(n.age))
				a.log.Warn().Str("routing_key", a.opts.KeyLabel(k)).Int("dropped", n.age).
					Str("max_failed_age", a.opts.MaxFailedAge.String()).
					Msg("dead letters older than queue.max_failed_age; dropped")
			}
		}
		a.dl.stuck = total == 0 && a.dl.failedBytes > a.opts.MaxFailedBytes
	}
}

func sortedKeys(m map[string]int) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

func sortedKeysOf(m map[string]*trimCount) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
