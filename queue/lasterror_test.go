package queue

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"
)

// TestStatusShowsLastErrorWithTime: a key whose batch was refused for good
// shows why and when, also after a restart; a key being retried shows the
// upstream's last answer.
func TestStatusShowsLastErrorWithTime(t *testing.T) {
	dir := t.TempDir()
	sys := newSystem(t)
	before := time.Now().UTC().Add(-time.Second)
	refuse := newRecorder()
	refuse.fail = func(key string, _ []Message) error {
		if key == "refused" {
			return Permanent(errors.New("PagerDuty answered 400 Bad Request: Event object is invalid"))
		}
		return &RetryAfterError{After: time.Hour, Err: errors.New("PagerDuty answered 503 Service Unavailable")}
	}
	q, err := Open(sys, Options{Dir: dir, Logger: testLogger(t), Router: routeAll(refuse)})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for _, k := range []string{"refused", "retrying"} {
		if err := q.Enqueue(ctx, k, [][]byte{[]byte("e1")}, Wait); err != nil {
			t.Fatal(err)
		}
	}
	byKey := func(q *Queue) map[string]KeyStatus {
		s, err := q.Status(ctx)
		if err != nil {
			t.Fatal(err)
		}
		m := map[string]KeyStatus{}
		for _, k := range s.Keys {
			m[k.Key] = k
		}
		return m
	}
	waitFor(t, "both keys to show an error", func() bool {
		m := byKey(q)
		return m["refused"].Failed == 1 && m["refused"].LastError != "" && m["retrying"].LastError != ""
	})
	m := byKey(q)
	check := func(k KeyStatus, want string) {
		t.Helper()
		if !strings.Contains(k.LastError, want) || k.LastErrorAt.Before(before) || k.LastErrorAt.After(time.Now().Add(time.Second)) {
			t.Errorf("%s: last error %q at %v, want %q since %v", k.Key, k.LastError, k.LastErrorAt, want, before)
		}
	}
	check(m["refused"], "400 Bad Request")
	check(m["retrying"], "503 Service Unavailable")
	refusedAt := m["refused"].LastErrorAt
	if err := q.Close(ctx); err != nil {
		t.Fatal(err)
	}

	// After a restart, the refusal is read back from the dead letter.
	q2 := openQueue(t, sys, Options{Dir: dir})
	k := byKey(q2)["refused"]
	check(k, "400 Bad Request")
	// The dead letter is dated when it was written, just after the sink
	// answered.
	if d := k.LastErrorAt.Sub(refusedAt); d < -time.Second || d > time.Second {
		t.Errorf("after a restart the refusal is dated %v, want %v", k.LastErrorAt, refusedAt)
	}
}
