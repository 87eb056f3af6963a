package queue

import (
	"context"
	"errors"
	"testing"
	"time"
)

// A Wait producer parked behind a full key must not hold back Wait
// producers of other keys that have room: arrival order holds per key.
func TestFullKeyDoesNotBlockOtherKeysWaiters(t *testing.T) {
	sys := newSystem(t)
	rec := newRecorder()
	release := make(chan struct{})
	rec.fail = func(key string, _ []Message) error {
		if key == "full" {
			select {
			case <-release:
				return nil
			default:
				return &RetryAfterError{After: 5 * time.Millisecond, Err: errors.New("503")}
			}
		}
		return nil
	}
	q := openQueue(t, sys, Options{Dir: t.TempDir(), Router: routeAll(rec), Quota: Quota{MaxKeyItems: 2},
		BackoffInitial: time.Millisecond, BackoffMax: 5 * time.Millisecond})
	ctx := context.Background()
	if err := q.Enqueue(ctx, "full", payloads("f", 0, 2), Wait); err != nil {
		t.Fatal(err)
	}
	parked := make(chan error, 1)
	go func() { parked <- q.Enqueue(ctx, "full", payloads("f", 2, 1), Wait) }()
	waitFor(t, "a producer of the full key parked", func() bool {
		s, err := q.Status(ctx)
		return err == nil && s.Waiting == 1
	})
	other, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	if err := q.Enqueue(other, "other", payloads("o", 0, 1), Wait); err != nil {
		t.Fatalf("a key with room waited behind another key's full quota: %v", err)
	}
	close(release)
	if err := <-parked; err != nil {
		t.Fatal(err)
	}
	waitFor(t, "all delivered", func() bool { return rec.total() == 4 })
}
