package queue

import (
	"context"
	"sync"
	"time"

	"github.com/cockroachdb/pebble/v2"
)

// lastErrors remembers, per routing key, the last delivery error and when
// it happened, so that `courier status` can say why a key is stuck or what
// refused its dead letters. It wraps the sinks rather than the delivery
// actors, which keeps it apart from the delivery code.
type lastErrors struct {
	mu   sync.Mutex
	keys map[string]keyError
}

type keyError struct {
	msg string
	at  time.Time
}

func newLastErrors() *lastErrors { return &lastErrors{keys: map[string]keyError{}} }

// wrap records what each route's sink answers: an error replaces the key's
// last error, a success clears it. An error from a cancelled context is the
// agent stopping, not the upstream, and is not recorded.
func (l *lastErrors) wrap(r Router) Router {
	return func(key string) Route {
		rt := r(key)
		if rt.Sink == nil {
			return rt
		}
		inner := rt.Sink
		rt.Sink = SinkFunc(func(ctx context.Context, key string, batch []Message) error {
			err := inner.Deliver(ctx, key, batch)
			l.mu.Lock()
			defer l.mu.Unlock()
			switch {
			case err == nil:
				delete(l.keys, key)
			case ctx.Err() == nil:
				l.keys[key] = keyError{msg: err.Error(), at: time.Now().UTC()}
			}
			return err
		})
		return rt
	}
}

// fill sets LastError and LastErrorAt of each key in s: the last delivery
// error seen since start, else the reason the newest dead letter was
// refused (kept on disk, so it survives a restart). Keys no longer in s
// are forgotten, which bounds the map by the keys status shows.
func (l *lastErrors) fill(st *store, s *Status) {
	l.mu.Lock()
	defer l.mu.Unlock()
	shown := make(map[string]bool, len(s.Keys))
	for i := range s.Keys {
		k := &s.Keys[i]
		shown[k.Key] = true
		if e, ok := l.keys[k.Key]; ok {
			k.LastError, k.LastErrorAt = e.msg, e.at
			continue
		}
		if k.Failed == 0 {
			continue
		}
		if at, reason, ok := st.newestFailed(k.Key); ok {
			k.LastError, k.LastErrorAt = reason, at
			l.keys[k.Key] = keyError{msg: reason, at: at}
		}
	}
	for k := range l.keys {
		if !shown[k] {
			delete(l.keys, k)
		}
	}
}

// newestFailed reads the dead letter of key with the highest seq.
func (s *store) newestFailed(key string) (time.Time, string, bool) {
	lo, hi := keySpan(prefixFailed, key)
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: hi})
	if err != nil {
		return time.Time{}, "", false
	}
	defer it.Close()
	if !it.Last() {
		return time.Time{}, "", false
	}
	at, reason, _, err := decodeFailed(it.Value())
	return at, reason, err == nil
}
