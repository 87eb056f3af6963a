package queue

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Policy says what Enqueue does when a quota is reached.
type Policy int

const (
	// Wait blocks until there is room or the caller's context ends. For
	// producers that can wait, such as an export.
	Wait Policy = iota
	// Refuse answers ErrFull at once. For producers that cannot wait, such as
	// an HTTP client that should be told 429.
	Refuse
)

var (
	// ErrFull is returned by Enqueue with the Refuse policy when a quota is
	// reached. Nothing of that request was written.
	ErrFull = errors.New("queue is full")
	// ErrClosed is returned once the queue has begun shutting down.
	ErrClosed = errors.New("queue is closed")
	// ErrTooLarge is returned by a Sink when the upstream refused a batch for
	// its size; the delivery actor halves the batch and tries again.
	ErrTooLarge = errors.New("batch too large for upstream")
)

// Message is one item of a routing key's FIFO as a Sink sees it.
type Message struct {
	Key string
	// Store is the incarnation id of the store that assigned Seq: a store
	// created anew (db/ lost or quarantined) numbers from 1 again, so
	// (Store, Key, Seq) is unique where (Key, Seq) is not.
	Store      string
	Seq        uint64
	EnqueuedAt time.Time
	Payload    []byte
}

// Sink delivers a batch of one routing key's messages upstream. It returns
// nil when the whole batch was accepted. Errors are classified by the
// delivery actor: ErrTooLarge halves the batch, a PermanentError moves the
// batch to failed, a RetryAfterError waits at least that long, anything else
// is retried with exponential backoff and jitter, forever.
type Sink interface {
	Deliver(ctx context.Context, key string, batch []Message) error
}

// SinkFunc adapts a function to Sink.
type SinkFunc func(ctx context.Context, key string, batch []Message) error

// Deliver calls f.
func (f SinkFunc) Deliver(ctx context.Context, key string, batch []Message) error {
	return f(ctx, key, batch)
}

// Route tells the delivery actor of a key where its messages go and how to
// batch them. A zero MaxItems means the queue's default.
type Route struct {
	Sink     Sink
	MaxItems int
	MaxBytes int
	Linger   time.Duration
}

// Router picks the Route of a routing key. A Route with a nil Sink leaves the
// key's messages pending.
type Router func(key string) Route

// PermanentError marks a delivery failure that retrying will not fix (an
// upstream's 400): the batch goes to failed with Reason.
type PermanentError struct {
	Err error
	// Status is the upstream's HTTP status, kept with the dead letters
	// for `courier queue ls`; 0 when there was none.
	Status int
}

func (e *PermanentError) Error() string { return e.Err.Error() }
func (e *PermanentError) Unwrap() error { return e.Err }

// Permanent wraps err so that the delivery actor does not retry it.
func Permanent(err error) error { return &PermanentError{Err: err} }

// PermanentStatus is Permanent for an upstream that answered HTTP status.
func PermanentStatus(status int, err error) error { return &PermanentError{Err: err, Status: status} }

// statusOf finds the HTTP status an error carries: a PermanentError's, or
// that of an error with an HTTPStatus method (the backend client's).
func statusOf(err error) int {
	var perm *PermanentError
	if errors.As(err, &perm) && perm.Status != 0 {
		return perm.Status
	}
	var hs interface{ HTTPStatus() int }
	if errors.As(err, &hs) {
		return hs.HTTPStatus()
	}
	return 0
}

// RetryAfterError asks the delivery actor to wait at least After before the
// next attempt (an upstream's 429 or 503 with Retry-After).
type RetryAfterError struct {
	After time.Duration
	Err   error
}

func (e *RetryAfterError) Error() string {
	return fmt.Sprintf("%v (retry after %s)", e.Err, e.After)
}
func (e *RetryAfterError) Unwrap() error { return e.Err }

// KeyStatus is one routing key's counts.
type KeyStatus struct {
	Key            string  `json:"key"`
	Pending        int64   `json:"pending"`
	PendingBytes   int64   `json:"pending_bytes"`
	Delivering     int64   `json:"delivering"`
	Failed         int64   `json:"failed"`
	FailedBytes    int64   `json:"failed_bytes"`
	DeliveredHour  int64   `json:"delivered_last_hour"`
	OldestPendingS float64 `json:"oldest_pending_age_s"`
	LastError      string  `json:"last_error,omitempty"`
	// LastErrorAt is when LastError happened.
	LastErrorAt time.Time `json:"last_error_at,omitzero"`
}

// Status is a snapshot of the whole queue.
type Status struct {
	Keys           []KeyStatus `json:"keys"`
	Pending        int64       `json:"pending"`
	PendingBytes   int64       `json:"pending_bytes"`
	Delivering     int64       `json:"delivering"`
	Failed         int64       `json:"failed"`
	FailedBytes    int64       `json:"failed_bytes"`
	DeliveredHour  int64       `json:"delivered_last_hour"`
	OldestPendingS float64     `json:"oldest_pending_age_s"`
	DiskBytes      int64       `json:"disk_bytes"`
	// DiskFreeBytes is the free space on the store's filesystem at the
	// last check; -1 when it cannot be read.
	DiskFreeBytes int64 `json:"disk_free_bytes"`
	// DiskFull, when set, says why new data is refused (ErrDiskFull).
	DiskFull string `json:"disk_full,omitempty"`
	// Waiting is how many Wait producers are parked for room.
	Waiting int64 `json:"waiting"`
}
