package queue

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/rs/zerolog"
)

// store wraps the Pebble database. Reads happen from any goroutine; every
// write is built by the queue actor alone.
type store struct {
	db *pebble.DB
	// incarnation names this store's sequence space in batch ids; see
	// Message.Store.
	incarnation string
	// disk keeps the filesystem from filling under Pebble.
	disk *diskGuard
}

// openStore opens the store with the default disk limits.
func openStore(dir string, fs vfs.FS, log zerolog.Logger) (*store, error) {
	return openStoreLimits(dir, fs, log, defaultDiskReserve, defaultMinFree)
}

// openStoreLimits opens the store keeping minFree bytes free on its
// filesystem and a reserve of reserve bytes (see diskGuard).
func openStoreLimits(dir string, fs vfs.FS, log zerolog.Logger, reserve, minFree int64) (*store, error) {
	if fs == nil {
		fs = vfs.Default
	}
	if err := mkdirAllSynced(fs, dir); err != nil {
		return nil, fmt.Errorf("open queue store %s: %w", dir, err)
	}
	qlog := log.With().Str("component", "queue").Logger()
	guard := newDiskGuard(fs, dir, reserve, minFree, qlog)
	opts := &pebble.Options{
		FormatMajorVersion: pebble.FormatNewest,
		Logger:             pebbleLogger{log: log.With().Str("component", "pebble").Logger()},
		// A write that hits ENOSPC releases the reserve and is retried once:
		// Pebble cannot survive a failed WAL write.
		FS: vfs.OnDiskFull(fs, guard.onDiskFull),
	}
	db, err := pebble.Open(dir, opts)
	if err != nil {
		return nil, fmt.Errorf("open queue store %s: %w", dir, err)
	}
	s := &store{db: db, disk: guard}
	inc, err := s.get(storeNS, "incarnation")
	switch {
	case err == nil:
		s.incarnation = string(inc)
	case errors.Is(err, ErrNotFound):
		err = s.newIncarnation()
	}
	if err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("open queue store %s: incarnation: %w", dir, err)
	}
	return s, nil
}

// mkdirAllSynced creates dir and the parents it lacks, and syncs the
// parent of each one it created. Pebble does this for the folders it makes,
// but the disk reserve needs the folder first: without the syncs a crash
// loses the new folder, and the whole store with it.
func mkdirAllSynced(fs vfs.FS, dir string) error {
	var missing []string
	for d := dir; ; {
		if _, err := fs.Stat(d); err == nil {
			break
		}
		missing = append(missing, d)
		parent := fs.PathDir(d)
		if parent == d {
			break
		}
		d = parent
	}
	if err := fs.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	for i := len(missing) - 1; i >= 0; i-- {
		parent := fs.PathDir(missing[i])
		if parent == missing[i] {
			continue
		}
		f, err := fs.OpenDir(parent)
		if err != nil {
			return err
		}
		err = f.Sync()
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return fmt.Errorf("sync %s: %w", parent, err)
		}
	}
	return nil
}

// newIncarnation gives the store a new random incarnation id, durably: on
// creation, and when sequence numbers may repeat (metadata rebuilt).
func (s *store) newIncarnation() error {
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		return err
	}
	inc := hex.EncodeToString(b[:])
	if err := s.db.Set(kvKey(storeNS, "incarnation"), []byte(inc), pebble.Sync); err != nil {
		return err
	}
	s.incarnation = inc
	return nil
}

func (s *store) close() error { return s.db.Close() }

// loadMeta reads every routing key's metadata: O(keys), not O(records). A
// record that does not decode is quarantined and the key's metadata rebuilt
// from its records, so one bad record costs a log line, not a start-up.
func (s *store) loadMeta(log zerolog.Logger) (map[string]keyMeta, error) {
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: []byte{prefixMeta}, UpperBound: []byte{prefixMeta + 1}})
	if err != nil {
		return nil, err
	}
	out := make(map[string]keyMeta)
	corrupt := map[string][]byte{}
	for it.First(); it.Valid(); it.Next() {
		key := string(it.Key()[1:])
		m, err := decodeMeta(it.Value())
		if err != nil {
			log.Error().Err(err).Str("routing_key", key).
				Msg("corrupt key metadata: kept under the quarantine namespace and rebuilt from the key's records")
			corrupt[key] = append([]byte(nil), it.Value()...)
			continue
		}
		out[key] = m
	}
	if err := errors.Join(it.Error(), it.Close()); err != nil {
		return nil, err
	}
	if len(corrupt) > 0 {
		// A rebuilt tail cannot know the seqs of records already delivered
		// and deleted: new ones may reuse them, so batch ids need a new
		// incarnation to stay unique.
		if err := s.newIncarnation(); err != nil {
			return nil, fmt.Errorf("new incarnation after rebuilding metadata: %w", err)
		}
	}
	for key, raw := range corrupt {
		m, err := s.rebuildMeta(key)
		if err != nil {
			return nil, fmt.Errorf("routing key %q: rebuild corrupt metadata: %w", key, err)
		}
		b := s.db.NewBatch()
		_ = b.Set(kvKey(quarantineNS, "meta/"+key), raw, nil)
		_ = b.Set(metaKey(key), encodeMeta(m), nil)
		err = b.Commit(pebble.Sync)
		_ = b.Close()
		if err != nil {
			return nil, fmt.Errorf("routing key %q: store rebuilt metadata: %w", key, err)
		}
		out[key] = m
	}
	return out, nil
}

// rebuildMeta scans key's pending and failed records. The tail is past the
// highest seq still stored; seqs of records already delivered and deleted
// cannot be recovered, which is why batch ids also carry the store's
// incarnation.
func (s *store) rebuildMeta(key string) (keyMeta, error) {
	var m keyMeta
	lo, hi := keySpan(prefixData, key)
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: hi})
	if err != nil {
		return m, err
	}
	first := true
	for it.First(); it.Valid(); it.Next() {
		seq := seqOf(it.Key())
		if first {
			m.head, first = seq, false
		}
		m.tail = seq + 1
		m.bytes += int64(len(it.Value()))
	}
	if err := errors.Join(it.Error(), it.Close()); err != nil {
		return m, err
	}
	err = s.failedRecords(key, func(seq uint64, v []byte) error {
		m.failed++
		if _, _, raw, err := decodeFailed(v); err == nil {
			m.failedBytes += int64(len(raw))
		} else {
			m.failedBytes += int64(len(v))
		}
		if seq+1 > m.tail {
			m.tail = seq + 1
		}
		return nil
	})
	if first {
		m.head = m.tail // nothing pending
	}
	return m, err
}

// rawRecord is a record as stored, decoded or not: a record that fails to
// decode still has to be settled (moved to failed) by its seq.
type rawRecord struct {
	msg Message
	raw []byte
	err error // why the record did not decode
}

// read returns records of key in [from, to), at most maxItems and, past the
// first record, at most maxBytes. to must be the durable tail: Pebble shows a
// batch to readers before its fsync returns.
func (s *store) read(key string, from, to uint64, maxItems, maxBytes int) ([]rawRecord, error) {
	it, err := s.db.NewIter(&pebble.IterOptions{
		LowerBound: seqKey(prefixData, key, from),
		UpperBound: seqKey(prefixData, key, to),
	})
	if err != nil {
		return nil, err
	}
	defer it.Close()
	var out []rawRecord
	size := 0
	for it.First(); it.Valid() && len(out) < maxItems; it.Next() {
		v := it.Value()
		if len(out) > 0 && size+len(v) > maxBytes {
			break
		}
		size += len(v)
		raw := append([]byte(nil), v...)
		r := rawRecord{raw: raw, msg: Message{Key: key, Store: s.incarnation, Seq: seqOf(it.Key())}}
		r.msg.EnqueuedAt, r.msg.Payload, r.err = decodeRecord(raw)
		out = append(out, r)
	}
	return out, it.Error()
}

// enqueuedAt returns when the record at seq was enqueued.
func (s *store) enqueuedAt(key string, seq uint64) (time.Time, error) {
	v, closer, err := s.db.Get(seqKey(prefixData, key, seq))
	if err != nil {
		return time.Time{}, err
	}
	defer closer.Close()
	at, _, err := decodeRecord(v)
	return at, err
}

// rangeBytes sums the stored size of key's records in [from, to).
func (s *store) rangeBytes(key string, from, to uint64) (int64, error) {
	it, err := s.db.NewIter(&pebble.IterOptions{
		LowerBound: seqKey(prefixData, key, from),
		UpperBound: seqKey(prefixData, key, to),
	})
	if err != nil {
		return 0, err
	}
	defer it.Close()
	var n int64
	for it.First(); it.Valid(); it.Next() {
		n += int64(len(it.Value()))
	}
	return n, it.Error()
}

// failedRecords calls fn for each dead letter of key, oldest first.
func (s *store) failedRecords(key string, fn func(seq uint64, v []byte) error) error {
	lo, hi := keySpan(prefixFailed, key)
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: hi})
	if err != nil {
		return err
	}
	defer it.Close()
	for it.First(); it.Valid(); it.Next() {
		if err := fn(seqOf(it.Key()), it.Value()); err != nil {
			return err
		}
	}
	return it.Error()
}

func (s *store) get(ns, name string) ([]byte, error) {
	v, closer, err := s.db.Get(kvKey(ns, name))
	if errors.Is(err, pebble.ErrNotFound) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, err
	}
	defer closer.Close()
	return append([]byte(nil), v...), nil
}

func (s *store) scanKV(ns string, fn func(name string, v []byte) error) error {
	lo := kvKey(ns, "")
	hi := append(append([]byte{prefixKV}, ns...), 1)
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: hi})
	if err != nil {
		return err
	}
	defer it.Close()
	for it.First(); it.Valid(); it.Next() {
		if err := fn(string(it.Key()[len(lo):]), it.Value()); err != nil {
			return err
		}
	}
	return it.Error()
}

func (s *store) diskBytes() int64 { return int64(s.db.Metrics().DiskSpaceUsage()) }

// pebbleLogger routes Pebble's own logging into zerolog so nothing of it
// reaches stdout.
type pebbleLogger struct{ log zerolog.Logger }

func (l pebbleLogger) Infof(format string, args ...any)  { l.log.Debug().Msgf(format, args...) }
func (l pebbleLogger) Errorf(format string, args ...any) { l.log.Error().Msgf(format, args...) }

// Fatalf is called when Pebble cannot go on (a failed WAL write leaves its
// commit pipeline broken); the process stops so that systemd starts it on a
// store reopened from what was synced. A full disk ends here only when the
// reserve (diskGuard) was not enough, so the message says what to do.
func (l pebbleLogger) Fatalf(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	for _, a := range args {
		if err, ok := a.(error); ok && vfs.IsNoSpaceError(err) {
			msg += "; the disk is full past the queue's reserve: free space on this filesystem (or raise queue.min_free_bytes and queue.disk_reserve_bytes)"
		}
	}
	l.log.WithLevel(zerolog.FatalLevel).Msg(msg)
	panic(msg)
}

// quarantineNS is the namespace where unreadable metadata is kept, by
// "meta/<routing key>", for whoever investigates.
const quarantineNS = "quarantine"

// storeNS holds facts about the store itself ("incarnation").
const storeNS = "store"
