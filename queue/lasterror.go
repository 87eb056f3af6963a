package queue

import (
	"time"

	"github.com/cockroachdb/pebble/v2"
)

// keyError is a key's last delivery error and when it happened, so that
// `courier status` can say why a key is stuck or what refused its dead
// letters. The delivery worker keeps it while it runs (deliveryShared);
// fillLastErrors covers the keys whose worker has idled out or that were
// refused before a restart.
type keyError struct {
	msg string
	at  time.Time
}

// fillLastErrors gives each key of s that has dead letters but no error
// from a running worker the reason its newest dead letter was refused,
// which is kept on disk and so survives a restart.
func (s *store) fillLastErrors(st *Status) {
	for i := range st.Keys {
		k := &st.Keys[i]
		if k.LastError != "" || k.Failed == 0 {
			continue
		}
		if at, reason, ok := s.newestFailed(k.Key); ok {
			k.LastError, k.LastErrorAt = reason, at
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
