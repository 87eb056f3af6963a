package queue

import (
	"context"
	"errors"

	"github.com/cockroachdb/pebble/v2"
)

// KV is a key write committed with the records of an EnqueueWith.
type KV struct {
	NS, Name string
	Value    []byte
}

// EnqueueWith appends payloads to key's FIFO, as Enqueue does (same
// quotas, policy and order), and writes kvs in the same Pebble batch: after
// a crash either the records and the writes are all there or none is. The
// agent stores a command's result and its journal's "done" this way, so
// that no crash leaves one without the other.
func (q *Queue) EnqueueWith(ctx context.Context, key string, payloads [][]byte, p Policy, kvs ...KV) error {
	if len(kvs) == 0 {
		return q.Enqueue(ctx, key, payloads, p)
	}
	if len(payloads) == 0 {
		return errors.New("queue: EnqueueWith needs records; use Put for key writes alone")
	}
	return q.enqueue(ctx, key, payloads, p, kvs)
}

// putWith adds an enqueue's key writes to its commit's batch.
func putWith(b *pebble.Batch, kvs []KV) {
	for _, kv := range kvs {
		_ = b.Set(kvKey(kv.NS, kv.Name), kv.Value, nil)
	}
}
