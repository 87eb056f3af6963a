package events

import (
	"context"
	"sync"
	"time"
)

// PagerDuty limits each integration key to about 120 events a minute,
// counted over the 60 seconds before each request, and answers 429 past it.
// The default pace keeps rate + burst within that window: after a quiet
// spell a burst of 10 goes at once, and a backlog then drains at 110 a
// minute, leaving PagerDuty's window some slack for network jitter.
const (
	PagerDutyLimitPerMinute = 120
	DefaultBurstPerKey      = 10
	DefaultRatePerKey       = PagerDutyLimitPerMinute - DefaultBurstPerKey
)

// maxIdleBuckets bounds the pacer's memory: past it, buckets that are full
// again (as good as new) are dropped.
const maxIdleBuckets = 1024

// pacer is a token bucket per routing key. Tokens are counted from the time
// each send really starts, not from when it was scheduled, so a send that
// was late never lets the next ones catch up in a burst that PagerDuty's
// sliding window would count against the key.
type pacer struct {
	interval time.Duration // one token per interval
	burst    float64
	now      func() time.Time

	mu      sync.Mutex
	buckets map[string]*bucket
}

type bucket struct {
	tokens float64
	at     time.Time
}

// newPacer returns nil (no pacing) when perMinute is 0 or less.
func newPacer(perMinute float64, burst int) *pacer {
	if perMinute <= 0 {
		return nil
	}
	return &pacer{
		interval: time.Duration(float64(time.Minute) / perMinute),
		burst:    float64(max(burst, 1)),
		now:      time.Now,
		buckets:  map[string]*bucket{},
	}
}

// wait blocks until key may send, or ctx ends.
func (p *pacer) wait(ctx context.Context, key string) error {
	if p == nil {
		return nil
	}
	for {
		d := p.take(key)
		if d == 0 {
			return nil
		}
		t := time.NewTimer(d)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
	}
}

// take spends a token of key and returns 0, or returns how long until one
// is there (without spending anything).
func (p *pacer) take(key string) time.Duration {
	p.mu.Lock()
	defer p.mu.Unlock()
	now := p.now()
	b, ok := p.buckets[key]
	if !ok {
		if len(p.buckets) >= maxIdleBuckets {
			p.sweep(now)
		}
		b = &bucket{tokens: p.burst, at: now}
		p.buckets[key] = b
	}
	p.refill(b, now)
	if b.tokens >= 1 {
		b.tokens--
		return 0
	}
	return time.Duration((1 - b.tokens) * float64(p.interval))
}

func (p *pacer) refill(b *bucket, now time.Time) {
	if elapsed := now.Sub(b.at); elapsed > 0 {
		b.tokens = min(p.burst, b.tokens+float64(elapsed)/float64(p.interval))
	}
	b.at = now
}

// sweep drops the buckets that have refilled completely.
func (p *pacer) sweep(now time.Time) {
	for k, b := range p.buckets {
		p.refill(b, now)
		if b.tokens >= p.burst {
			delete(p.buckets, k)
		}
	}
}
