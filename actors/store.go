package actors

import (
	"context"
	"errors"

	"courier/queue"
)

// tokenNS is the queue store's namespace of session tokens.
const tokenNS = "tokens"

// QueueStore lets the session tree use the queue: records are appended with
// the Wait policy (an export can wait; that is its backpressure) and tokens
// are written by the same queue actor, after the records before them.
type QueueStore struct{ Q *queue.Queue }

// Append implements sessions.Store.
func (s QueueStore) Append(ctx context.Context, key string, payloads [][]byte) error {
	return s.Q.Enqueue(ctx, key, payloads, queue.Wait)
}

// PutToken implements sessions.Store.
func (s QueueStore) PutToken(ctx context.Context, path, token string) error {
	return s.Q.Put(ctx, tokenNS, path, []byte(token))
}

// Token implements sessions.Store.
func (s QueueStore) Token(path string) (string, bool, error) {
	v, err := s.Q.Get(tokenNS, path)
	if errors.Is(err, queue.ErrNotFound) {
		return "", false, nil
	}
	if err != nil {
		return "", false, err
	}
	return string(v), true, nil
}
