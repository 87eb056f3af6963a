package events

import (
	"context"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"courier/queue"
)

// fakeClock is a hand-moved clock for the pacer.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func TestPacerTokenBucket(t *testing.T) {
	clock := &fakeClock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	p := newPacer(120, 3) // one token every 500 ms, 3 at once
	p.now = clock.now
	for i := range 3 {
		if d := p.take("a"); d != 0 {
			t.Fatalf("take %d of the burst: wait %v", i, d)
		}
	}
	if d := p.take("a"); d != 500*time.Millisecond {
		t.Fatalf("past the burst: wait %v, want 500ms", d)
	}
	// Another key has its own bucket.
	if d := p.take("b"); d != 0 {
		t.Fatalf("key b waits %v for a's tokens", d)
	}
	clock.add(200 * time.Millisecond)
	if d := p.take("a"); d != 300*time.Millisecond {
		t.Fatalf("part-way: wait %v, want 300ms", d)
	}
	clock.add(300 * time.Millisecond)
	if d := p.take("a"); d != 0 {
		t.Fatalf("after a full interval: wait %v", d)
	}
	// A long quiet spell refills to the burst, not beyond.
	clock.add(time.Hour)
	for i := range 3 {
		if d := p.take("a"); d != 0 {
			t.Fatalf("take %d after a quiet hour: wait %v", i, d)
		}
	}
	if d := p.take("a"); d == 0 {
		t.Fatal("the bucket held more than its burst")
	}
}

func TestPacerOff(t *testing.T) {
	if p := newPacer(0, 10); p != nil {
		t.Fatalf("rate 0 must turn pacing off, got %+v", p)
	}
	var p *pacer
	if err := p.wait(t.Context(), "k"); err != nil {
		t.Fatalf("a nil pacer waits: %v", err)
	}
}

func TestPacerWaitEndsWithContext(t *testing.T) {
	clock := &fakeClock{t: time.Now()}
	p := newPacer(1, 1) // one a minute
	p.now = clock.now
	if err := p.wait(t.Context(), "k"); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := p.wait(ctx, "k"); !errors.Is(err, context.Canceled) {
		t.Fatalf("wait with a cancelled context = %v", err)
	}
}

func TestPacerForgetsIdleKeys(t *testing.T) {
	clock := &fakeClock{t: time.Now()}
	p := newPacer(60, 1)
	p.now = clock.now
	for i := range maxIdleBuckets {
		p.take(fmt.Sprint("k", i))
	}
	clock.add(2 * time.Second) // every bucket is full again
	p.take("new")
	if n := len(p.buckets); n != 1 {
		t.Fatalf("%d buckets kept, want only the new one", n)
	}
}

// The sink takes a token before each request: with the bucket empty and no
// time passing, the next event is not sent.
func TestSinkPacesEachRoutingKey(t *testing.T) {
	pd := newFakePagerDuty(t)
	s := mustSink(t, PagerDutyOptions{URL: pd.URL + "/v2/enqueue", Client: testClient(t), Logger: zerolog.Nop(), RatePerMinute: 60, BurstPerKey: 2})
	clock := &fakeClock{t: time.Now()}
	s.pace.now = clock.now
	var msgs []queue.Message
	for i := range 3 {
		m, _ := storedMessage(t, uint64(i+1), ParseV2, trigger(""))
		msgs = append(msgs, m)
	}
	if err := s.Deliver(t.Context(), QueueKey(testKey), msgs[:2]); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	if err := s.Deliver(ctx, QueueKey(testKey), msgs[2:]); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("third event past a burst of 2: %v", err)
	}
	if n := len(pd.requests()); n != 2 {
		t.Fatalf("PagerDuty got %d requests, want 2", n)
	}
	clock.add(time.Second)
	if err := s.Deliver(t.Context(), QueueKey(testKey), msgs[2:]); err != nil {
		t.Fatal(err)
	}
	if n := len(pd.requests()); n != 3 {
		t.Fatalf("PagerDuty got %d requests, want 3", n)
	}
}

// An endpoint behind a private CA (a TLS-inspecting proxy) is trusted
// through events.ca_file, and only then.
func TestSinkCAFile(t *testing.T) {
	var mu sync.Mutex
	var got int
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		got++
		mu.Unlock()
		w.WriteHeader(http.StatusAccepted)
	}))
	defer srv.Close()
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	m, _ := storedMessage(t, 1, ParseV2, trigger(""))

	untrusted := mustSink(t, PagerDutyOptions{URL: srv.URL + "/v2/enqueue", Logger: zerolog.Nop()})
	defer untrusted.client.CloseIdleConnections()
	err := untrusted.Deliver(t.Context(), QueueKey(testKey), []queue.Message{m})
	var perm *queue.PermanentError
	if err == nil || errors.As(err, &perm) || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("unknown CA: %v (want a retryable certificate error)", err)
	}

	trusted := mustSink(t, PagerDutyOptions{URL: srv.URL + "/v2/enqueue", CAFile: caFile, Logger: zerolog.Nop()})
	defer trusted.client.CloseIdleConnections()
	if err := trusted.Deliver(t.Context(), QueueKey(testKey), []queue.Message{m}); err != nil {
		t.Fatalf("with ca_file: %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if got != 1 {
		t.Fatalf("upstream got %d requests, want 1", got)
	}

	empty := filepath.Join(t.TempDir(), "empty.pem")
	_ = os.WriteFile(empty, []byte("not a certificate"), 0o600)
	for _, f := range []string{empty, filepath.Join(t.TempDir(), "missing.pem")} {
		if _, err := NewPagerDutySink(PagerDutyOptions{CAFile: f}); err == nil || !strings.Contains(err.Error(), "events.ca_file") {
			t.Fatalf("CA file %s: %v", f, err)
		}
	}
}
