package cli_test

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"
)

// BenchmarkPacedDrain: a backlog of COURIER_BENCH_PACE_EVENTS events
// (default 1,000) on one routing key, against an upstream that enforces
// PagerDuty's limit as documented, COURIER_BENCH_PACE_LIMIT events (default
// 120) in the 60 s before each request, answering 429 past it without
// ingesting. service-run paces with burst = limit/12 and rate = limit -
// burst, the defaults' proportions (110 + 10 at 120). It reports the drain
// time, the 429s and any loss; it asserts only that nothing was lost or
// reordered. The full default size takes about 9 minutes.
func BenchmarkPacedDrain(b *testing.B) {
	limit := benchEnvInt(b, "COURIER_BENCH_PACE_LIMIT", 120)
	n := benchEnvInt(b, "COURIER_BENCH_PACE_EVENTS", 1000)
	burst := max(1, limit/12)
	rate := limit - burst
	for range b.N {
		root := b.TempDir() + "/root"
		initRoot(b, root)
		editConfig(b, root, map[string]any{"events.rate_per_key": rate, "events.burst_per_key": burst})
		up := newFakeUpstream(b)
		var window []time.Time
		up.setDecide(func(a arrival, _ int) (int, http.Header) {
			now := time.Now()
			for len(window) > 0 && !window[0].After(now.Add(-time.Minute)) {
				window = window[1:]
			}
			if len(window) >= limit {
				return http.StatusTooManyRequests, http.Header{"Retry-After": {"1"}}
			}
			window = append(window, now)
			return http.StatusAccepted, nil
		})
		startServiceRun(b, root, up)
		info, err := readServiceJSON(root)
		if err != nil {
			b.Fatal(err)
		}
		base := "http://" + loopback(info.Listen)
		key := routingKeys(b, 1)[0]
		start := time.Now()
		for i := range n {
			body := fmt.Sprintf(`{"routing_key":%q,"event_action":"trigger","dedup_key":"e%d","payload":{"summary":"event %d","source":"bench","severity":"info","custom_details":{"seq":%d}}}`, key, i, i, i)
			resp, err := http.Post(base+"/v2/enqueue", "application/json", strings.NewReader(body))
			if err != nil {
				b.Fatal(err)
			}
			_ = resp.Body.Close()
			if resp.StatusCode != http.StatusAccepted {
				b.Fatalf("enqueue %d: %d", i, resp.StatusCode)
			}
		}
		enqueued := time.Since(start)
		var arr []arrival
		for deadline := time.Now().Add(time.Duration(n/rate+5) * 2 * time.Minute); ; {
			arr = up.arrivals()
			ok := 0
			for _, x := range arr {
				if x.accepted() {
					ok++
				}
			}
			if ok >= n {
				break
			}
			if time.Now().After(deadline) {
				b.Fatalf("only %d of %d events accepted upstream by the deadline", ok, n)
			}
			time.Sleep(100 * time.Millisecond)
		}
		drained := time.Since(start)
		throttled, next := 0, 0
		for _, x := range arr {
			if !x.accepted() {
				throttled++
				continue
			}
			if x.event.DedupKey != fmt.Sprintf("e%d", next) {
				b.Fatalf("accepted out of order: got %s, want e%d", x.event.DedupKey, next)
			}
			next++
		}
		if next != n {
			b.Fatalf("accepted %d events, want %d", next, n)
		}
		b.ReportMetric(drained.Seconds(), "s_drain")
		b.ReportMetric(enqueued.Seconds(), "s_enqueue")
		b.ReportMetric(float64(throttled), "429s")
		b.ReportMetric(float64(n)/drained.Minutes(), "events/min")
		b.Logf("limit %d/min, pace %d/min + burst %d: %d events drained in %s (enqueued in %s), %d answered 429, none lost or reordered",
			limit, rate, burst, n, drained.Round(time.Second), enqueued.Round(time.Millisecond), throttled)
	}
}
