package cli_test

// End-to-end tests of the foundation (issue 2): the real binary, its local
// API, its durable queue and its delivery to a PagerDuty-like upstream.

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"courier/internal/redact"
)

// TestE2EKill9Durability: clients post events while service-run is killed
// with SIGKILL three times and restarted on the same root. Every event
// answered 202 reaches the upstream, in each client's order per routing key;
// an event arrives twice only because of a kill (or its client's retry).
func TestE2EKill9Durability(t *testing.T) {
	root := e2e(t)
	initRoot(t, root)
	up := newFakeUpstream(t)
	svc := startServiceRun(t, root, up)
	p := newPoster(t, svc.base)

	const (
		perClient = 150
		kills     = 3
	)
	keys := routingKeys(t, 3)
	var acks atomic.Int64
	var stop atomic.Bool
	var clients []*eventClient
	for i := range 6 {
		clients = append(clients, &eventClient{id: i, key: keys[i%len(keys)], n: perClient, p: p, acks: &acks, stop: &stop})
	}
	wait := runEventClients(clients)
	total := int64(len(clients) * perClient)
	for k := 1; k <= kills; k++ {
		// Kill part-way: after k/(kills+1) of the events were accepted.
		waitAcks(t, svc, &acks, total*int64(k)/(kills+1))
		t.Logf("kill -9 after %d of %d events were accepted", acks.Load(), total)
		svc.kill9()
		up.nextEpoch()
		svc = startServiceRun(t, root, up)
		p.setBase(svc.base)
	}
	waitOrFail(t, wait, "the clients")
	arr := waitDelivered(t, up, root, clients, true)

	arrived := 0
	for _, a := range arr {
		if _, _, ok := a.event.clientSeq(); ok && a.accepted() {
			arrived++
		}
	}
	t.Logf("%d events accepted, %d arrivals upstream (%d re-sent)", total, arrived, arrived-int(total))
	s := waitCLIStatus(t, root, "nothing pending", func(s cliQueueStatus) bool { return s.Pending == 0 })
	if s.Failed != 0 {
		t.Errorf("status: %d failed, want 0", s.Failed)
	}
	// What the queue counted as delivered stays delivered through one more
	// kill: the restarted process has nothing to send again.
	quiet := len(up.arrivals())
	svc.kill9()
	up.nextEpoch()
	startServiceRun(t, root, up)
	if s := cliStatus(t, root); s.Pending != 0 || s.Failed != 0 {
		t.Errorf("after a kill -9 with an empty queue, the restarted service has %d pending and %d failed, want 0", s.Pending, s.Failed)
	}
	if n := len(up.arrivals()); n != quiet {
		t.Errorf("the upstream got %d more requests after the queue was empty", n-quiet)
	}
}

// TestE2EBackpressureAndOutage: with small quotas and the upstream down
// (503, some 429 with Retry-After), clients are refused with 429 and a
// Retry-After header once the quota is reached; when the upstream recovers
// everything accepted drains, in order, and `courier status` shows pending
// going to 0.
func TestE2EBackpressureAndOutage(t *testing.T) {
	root := e2e(t)
	initRoot(t, root)
	const maxItems, maxKeyItems = 50, 20
	editConfig(t, root, map[string]any{
		"queue.max_pending_items": maxItems,
		"queue.max_key_items":     maxKeyItems,
		"queue.retry_after":       "1s",
	})
	up := newFakeUpstream(t)
	var outage atomic.Bool
	outage.Store(true)
	up.setDecide(func(_ arrival, n int) (int, http.Header) {
		if !outage.Load() {
			return http.StatusAccepted, nil
		}
		if n%3 == 2 {
			return http.StatusTooManyRequests, http.Header{"Retry-After": {"1"}}
		}
		return http.StatusServiceUnavailable, nil
	})
	svc := startServiceRun(t, root, up)
	p := newPoster(t, svc.base)

	keys := routingKeys(t, 3)
	var acks atomic.Int64
	var stop atomic.Bool
	var refused [3]atomic.Bool
	var clients []*eventClient
	for i, k := range keys {
		clients = append(clients, &eventClient{id: i, key: k, n: 40, p: p, acks: &acks, stop: &stop, honor: true,
			onAnswer: func(code int) {
				if code == http.StatusTooManyRequests {
					refused[i].Store(true)
				}
			}})
	}
	wait := runEventClients(clients)

	// Every client is refused at some point: 3 keys × 40 events exceed both
	// the per-key quota (20) and the global one (50).
	deadline := time.Now().Add(deliverDeadline)
	for !refused[0].Load() || !refused[1].Load() || !refused[2].Load() {
		if time.Now().After(deadline) {
			t.Fatalf("not every client was refused with 429 within %s", deliverDeadline)
		}
		time.Sleep(10 * time.Millisecond)
	}
	// Nothing can be delivered yet, and every client is refused, so the
	// global quota is exactly full.
	s := cliStatus(t, root)
	if s.Pending != maxItems {
		t.Errorf("status during the outage: pending %d, want %d (max_pending_items)", s.Pending, maxItems)
	}
	lastErr := false
	for _, k := range s.Keys {
		if k.Pending > maxKeyItems {
			t.Errorf("status: key %.10s… has %d pending, more than max_key_items %d", k.Key, k.Pending, maxKeyItems)
		}
		lastErr = lastErr || strings.Contains(k.LastError, "503") || strings.Contains(k.LastError, "429")
	}
	if !lastErr {
		t.Errorf("status during the outage shows no upstream error: %+v", s)
	}
	r := runCourier(t, root, "status")
	if r.code != 0 || totalPending(t, r.stdout) != maxItems {
		t.Errorf("courier status during the outage: want exit 0 and total pending %d:\n%s", maxItems, r)
	}
	// Let the upstream answer some 429s (Retry-After: 1) before it recovers.
	up.waitFor(t, "upstream 429 answers", func(arr []arrival) bool {
		n := 0
		for _, a := range arr {
			if a.status == http.StatusTooManyRequests {
				n++
			}
		}
		return n >= 2
	})
	outage.Store(false)

	waitOrFail(t, wait, "the clients")
	for _, c := range clients {
		if c.accepted != c.n {
			t.Errorf("client %d: %d of %d events accepted", c.id, c.accepted, c.n)
		}
		if len(c.after429) == 0 {
			t.Errorf("client %d: never answered 429", c.id)
		}
		for i, h := range c.after429 {
			if ra, err := strconv.Atoi(h.Get("Retry-After")); err != nil || ra < 1 {
				t.Errorf("client %d: 429 with Retry-After %q, want whole seconds >= 1", c.id, h.Get("Retry-After"))
			}
			if !strings.Contains(c.bodies429[i], "full") {
				t.Errorf("client %d: 429 body does not say the queue is full: %s", c.id, c.bodies429[i])
			}
		}
		for code, n := range c.codes {
			if code != http.StatusTooManyRequests {
				t.Errorf("client %d: %d answers %d, want only 202 and 429", c.id, n, code)
			}
		}
	}
	waitDelivered(t, up, root, clients, false)

	waitCLIStatus(t, root, "pending 0", func(s cliQueueStatus) bool { return s.Pending == 0 })
	r = runCourier(t, root, "status")
	if r.code != 0 || totalPending(t, r.stdout) != 0 {
		t.Errorf("courier status after the outage: want exit 0 and total pending 0:\n%s", r)
	}
	for _, k := range keys {
		if strings.Contains(r.stdout, k) {
			t.Errorf("courier status prints a full routing key:\n%s", r.stdout)
		}
	}
}

// totalPending reads the PENDING column of the total line of `courier status`.
func totalPending(t *testing.T, out string) int {
	t.Helper()
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) >= 2 && f[0] == "total" {
			n, err := strconv.Atoi(f[1])
			if err == nil {
				return n
			}
		}
	}
	t.Errorf("courier status printed no total line:\n%s", out)
	return -1
}

// TestE2EDeadLetterAndRetry: an event the upstream refuses with 400 goes to
// failed, the key moves on, and `courier retry` re-sends it once the
// upstream takes it.
func TestE2EDeadLetterAndRetry(t *testing.T) {
	root := e2e(t)
	initRoot(t, root)
	up := newFakeUpstream(t)
	const poison = 4
	var refuse atomic.Bool
	refuse.Store(true)
	up.setDecide(func(a arrival, _ int) (int, http.Header) {
		if _, s, _ := a.event.clientSeq(); s == poison && refuse.Load() {
			return http.StatusBadRequest, nil
		}
		return http.StatusAccepted, nil
	})
	svc := startServiceRun(t, root, up)
	p := newPoster(t, svc.base)
	keys := routingKeys(t, 2)

	var acks atomic.Int64
	var stop atomic.Bool
	c := &eventClient{id: 0, key: keys[0], n: 10, p: p, acks: &acks, stop: &stop}
	other := &eventClient{id: 1, key: keys[1], n: 3, p: p, acks: &acks, stop: &stop}
	waitOrFail(t, runEventClients([]*eventClient{c, other}), "the clients")

	// Everything but the poison arrives: the key moved on past it.
	up.waitFor(t, "events after the refused one", func(arr []arrival) bool {
		got := map[int]bool{}
		for _, a := range arr {
			if cl, s, ok := a.event.clientSeq(); ok && cl == 0 && a.accepted() {
				got[s] = true
			}
		}
		return len(got) == c.n-1
	})
	s := waitCLIStatus(t, root, "one failed, none pending", func(s cliQueueStatus) bool { return s.Failed == 1 && s.Pending == 0 })
	for _, k := range s.Keys {
		want := int64(0)
		if k.Key == "events/"+keys[0] {
			want = 1
		}
		if k.Failed != want {
			t.Errorf("status: key %.11s… failed %d, want %d", k.Key, k.Failed, want)
		}
		if k.Pending != 0 {
			t.Errorf("status: key %.11s… pending %d, want 0", k.Key, k.Pending)
		}
	}
	var refusedOnce bool
	for _, a := range up.arrivals() {
		if _, s, ok := a.event.clientSeq(); ok && s == poison && a.event.RoutingKey == keys[0] {
			if a.accepted() {
				t.Errorf("event %d was accepted upstream while it refused it", poison)
			}
			refusedOnce = true
		}
	}
	if !refusedOnce {
		t.Errorf("event %d never reached the upstream", poison)
	}

	refuse.Store(false)
	r := runCourier(t, root, "retry")
	if r.code != 0 || !regexp.MustCompile(`(?m)^moved 1 failed`).MatchString(r.stdout) {
		t.Fatalf("courier retry: want exit 0 and moved 1:\n%s", r)
	}
	up.waitFor(t, "the retried event", func(arr []arrival) bool {
		for _, a := range arr {
			if cl, s, ok := a.event.clientSeq(); ok && cl == 0 && s == poison && a.accepted() {
				return true
			}
		}
		return false
	})
	s = waitCLIStatus(t, root, "nothing failed or pending", func(s cliQueueStatus) bool { return s.Failed == 0 && s.Pending == 0 })
	if r := runCourier(t, root, "retry", "-k", keys[0]); r.code != 0 || !strings.Contains(r.stdout, "moved 0 failed") {
		t.Errorf("a second courier retry: want exit 0 and moved 0:\n%s", r)
	}
	// Per key, each event arrived accepted exactly once, the retried one last.
	var order []int
	for _, a := range up.arrivals() {
		if cl, s, ok := a.event.clientSeq(); ok && cl == 0 && a.accepted() {
			order = append(order, s)
		}
	}
	want := []int{0, 1, 2, 3, 5, 6, 7, 8, 9, poison}
	if fmt.Sprint(order) != fmt.Sprint(want) {
		t.Errorf("accepted upstream in the order %v, want %v", order, want)
	}
}

// TestE2ECLIWithoutService: send, status and retry need a running
// service-run and say so in one line with exit 69; with one running, send
// refuses an invalid event with PagerDuty's error and delivers a valid one
// with its custom details.
func TestE2ECLIWithoutService(t *testing.T) {
	root := e2e(t)
	initRoot(t, root)
	keys := routingKeys(t, 1)
	commands := [][]string{
		{"send", "-k", keys[0], "-t", "trigger", "-d", "disk full", "-s", "host1"},
		{"status"},
		{"status", "--json"},
		{"retry"},
	}
	notRunning := func(when string) {
		t.Helper()
		for _, args := range commands {
			r := runCourier(t, root, args...)
			lines := strings.Split(strings.TrimSpace(r.stderr), "\n")
			if r.code != 69 || len(lines) != 1 || !strings.Contains(lines[0], "no service-run is running") {
				t.Errorf("%s: courier %s: want exit 69 and one line saying no service-run is running:\n%s", when, strings.Join(args, " "), r)
			}
			if r.stdout != "" {
				t.Errorf("%s: courier %s printed to stdout: %q", when, args[0], r.stdout)
			}
		}
	}
	notRunning("never started")

	up := newFakeUpstream(t)
	svc := startServiceRun(t, root, up)
	// Invalid: resolve needs a dedup key.
	r := runCourier(t, root, "send", "-k", keys[0], "-t", "resolve")
	if r.code == 0 || r.code == 69 || !strings.Contains(r.stderr, "'dedup_key' is missing or blank (required for resolve)") {
		t.Errorf("courier send -t resolve without -y: want a non-zero exit with PagerDuty's error:\n%s", r)
	}
	r = runCourier(t, root, "send", "-k", "short", "-t", "trigger", "-d", "x")
	if r.code == 0 || !strings.Contains(r.stderr, "routing_key") {
		t.Errorf("courier send with a short routing key: want a non-zero exit naming routing_key:\n%s", r)
	}
	// Valid, v2 and v1.
	r = runCourier(t, root, "send", "-k", keys[0], "-t", "trigger", "-d", "disk full", "-s", "host1", "-e", "critical",
		"-f", "region=eu", "-f", "mount=/var/lib")
	if r.code != 0 || !strings.Contains(r.stdout, "success") {
		t.Fatalf("courier send: want exit 0:\n%s", r)
	}
	r = runCourier(t, root, "send", "--api-version", "v1", "-k", keys[0], "-t", "trigger", "-d", "old client", "-f", "via=v1")
	if r.code != 0 {
		t.Fatalf("courier send --api-version v1: want exit 0:\n%s", r)
	}
	// A v1 event that never arrives went to events.v1_url (PagerDuty's, in
	// the config init wrote) instead of following --events-url.
	arr := up.waitFor(t, "the sent v2 and v1 events", func(arr []arrival) bool { return len(arr) >= 2 })
	if len(arr) != 2 {
		t.Fatalf("upstream got %d requests, want 2: %+v", len(arr), arr)
	}
	v2, v1 := arr[0], arr[1]
	e := v2.event
	if v2.path != "/v2/enqueue" || e.RoutingKey != keys[0] || e.EventAction != "trigger" || e.Payload.Summary != "disk full" ||
		e.Payload.Source != "host1" || e.Payload.Severity != "critical" || e.DedupKey == "" {
		t.Errorf("upstream got %s %+v, want the v2 trigger as sent", v2.path, e)
	}
	if want := map[string]any{"region": "eu", "mount": "/var/lib"}; fmt.Sprint(e.Payload.CustomDetails) != fmt.Sprint(want) {
		t.Errorf("custom_details %v, want %v", e.Payload.CustomDetails, want)
	}
	if v1.path != "/generic/2010-04-15/create_event.json" || v1.event.ServiceKey != keys[0] ||
		v1.event.Description != "old client" || fmt.Sprint(v1.event.Details) != "map[via:v1]" {
		t.Errorf("upstream got %s %+v, want the v1 event at the v1 path of --events-url", v1.path, v1.event)
	}

	// A killed service leaves run/service.json behind; nothing answers there.
	svc.kill9()
	notRunning("after kill -9")
}

// TestE2ESIGTERM: SIGTERM while clients post makes service-run exit 0 in
// time, and every event answered 202 before is delivered after a restart.
func TestE2ESIGTERM(t *testing.T) {
	root := e2e(t)
	initRoot(t, root)
	up := newFakeUpstream(t)
	up.setDelay(50 * time.Millisecond) // a backlog builds up, and requests are in flight at the stop
	svc := startServiceRun(t, root, up)
	p := newPoster(t, svc.base)

	keys := routingKeys(t, 3)
	var acks atomic.Int64
	var stop, abandon atomic.Bool
	var clients []*eventClient
	for i := range 6 {
		clients = append(clients, &eventClient{id: i, key: keys[i%len(keys)], n: 1000, p: p, acks: &acks, stop: &stop, abandon: &abandon})
	}
	wait := runEventClients(clients)
	waitAcks(t, svc, &acks, 100)
	sent := time.Now()
	if code := svc.terminate(); code != 0 {
		t.Fatalf("service-run exited %d after SIGTERM, want 0:\n%s", code, tailLines(svc.output(), 40))
	}
	took := time.Since(sent) // reported, not asserted: terminate's deadline bounds it
	stop.Store(true)
	abandon.Store(true)
	waitOrFail(t, wait, "the clients")
	if !strings.Contains(svc.output(), "service-run stopped") {
		t.Errorf("service-run did not log that it stopped:\n%s", tailLines(svc.output(), 20))
	}
	if _, err := os.Stat(filepath.Join(root, "run", "service.json")); !os.IsNotExist(err) {
		t.Errorf("run/service.json is still there after a clean stop (%v)", err)
	}
	accepted := acks.Load()
	before := 0
	for _, a := range up.arrivals() {
		if a.accepted() {
			before++
		}
	}
	t.Logf("stopped in %s with %d events accepted, %d delivered", took.Round(time.Millisecond), accepted, before)

	up.setDelay(0)
	up.nextEpoch()
	startServiceRun(t, root, up)
	waitDelivered(t, up, root, clients, true)
	waitCLIStatus(t, root, "nothing pending", func(s cliQueueStatus) bool { return s.Pending == 0 })
}

// TestE2ENonLoopbackNeedsToken: off loopback, service-run refuses to start
// without local_token, and with it every request must carry it.
func TestE2ENonLoopbackNeedsToken(t *testing.T) {
	root := e2e(t)
	initRoot(t, root)
	token := readConfigValue(t, root, "local_token")
	if len(token) < 16 {
		t.Fatalf("init wrote local_token %q", token)
	}
	up := newFakeUpstream(t)
	editConfig(t, root, map[string]any{"local_token": nil})
	svc := spawnServiceRun(t, root, "--listen", "0.0.0.0:0", "--events-url", up.url())
	if code := svc.wait(); code == 0 || !strings.Contains(svc.output(), "local_token") {
		t.Fatalf("service-run on 0.0.0.0 without local_token: want a non-zero exit naming local_token, got %d:\n%s", code, svc.output())
	}
	if _, err := os.Stat(filepath.Join(root, "run", "service.json")); !os.IsNotExist(err) {
		t.Errorf("a service-run that refused to start wrote run/service.json (%v)", err)
	}

	editConfig(t, root, map[string]any{"local_token": token})
	svc = spawnServiceRun(t, root, "--listen", "0.0.0.0:0", "--events-url", up.url())
	svc.token = token
	svc.waitReady()
	key := routingKeys(t, 1)[0]
	p := newPoster(t, svc.base)
	code, hdr, _, err := p.post("/v2/enqueue", triggerEvent(key, 0, 0), nil)
	if err != nil || code != http.StatusUnauthorized || !strings.Contains(hdr.Get("WWW-Authenticate"), "Token") {
		t.Errorf("POST without a token: got %d %v (%v), want 401 with WWW-Authenticate", code, hdr, err)
	}
	code, _, _, err = p.post("/v2/enqueue", triggerEvent(key, 0, 0), http.Header{"Authorization": {"Token wrong-" + token}})
	if err != nil || code != http.StatusUnauthorized {
		t.Errorf("POST with a wrong token: got %d (%v), want 401", code, err)
	}
	if code, _, err := p.get("/livez"); err != nil || code != http.StatusOK {
		t.Errorf("GET /livez without a token: got %d (%v), want 200", code, err)
	}
	p.token = token
	code, _, body, err := p.post("/v2/enqueue", triggerEvent(key, 0, 1), nil)
	if err != nil || code != http.StatusAccepted {
		t.Errorf("POST with the token: got %d %s (%v), want 202", code, body, err)
	}
	// The CLI finds the token in config.yaml and reaches the wildcard
	// address through loopback.
	if r := runCourier(t, root, "send", "-k", key, "-t", "trigger", "-d", "from the cli", "-s", "e2e"); r.code != 0 {
		t.Errorf("courier send to a service on 0.0.0.0: %s", r)
	}
	up.waitFor(t, "both accepted events", func(arr []arrival) bool { return len(arr) >= 2 })
	for _, a := range up.arrivals() {
		if _, s, ok := a.event.clientSeq(); ok && s == 0 {
			t.Errorf("the event refused with 401 reached the upstream")
		}
	}
}

// TestE2EMetrics: GET /metrics exposes the queue's counters, depth by state
// and delivery latency, with routing keys redacted.
func TestE2EMetrics(t *testing.T) {
	root := e2e(t)
	initRoot(t, root)
	up := newFakeUpstream(t)
	up.setDecide(func(a arrival, _ int) (int, http.Header) {
		if _, s, _ := a.event.clientSeq(); s == 2 {
			return http.StatusBadRequest, nil // one failed item, so that state shows
		}
		return http.StatusAccepted, nil
	})
	svc := startServiceRun(t, root, up)
	p := newPoster(t, svc.base)
	keys := routingKeys(t, 2)
	var acks atomic.Int64
	var stop atomic.Bool
	clients := []*eventClient{
		{id: 0, key: keys[0], n: 5, p: p, acks: &acks, stop: &stop},
		{id: 1, key: keys[1], n: 5, p: p, acks: &acks, stop: &stop},
	}
	waitOrFail(t, runEventClients(clients), "the clients")
	waitCLIStatus(t, root, "all delivered or failed", func(s cliQueueStatus) bool { return s.Pending == 0 && s.Failed == 2 })

	code, body, err := p.get("/metrics")
	if err != nil || code != http.StatusOK {
		t.Fatalf("GET /metrics: %d (%v)", code, err)
	}
	text := string(body)
	value := func(series string) float64 {
		t.Helper()
		m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(series) + ` ([0-9.e+-]+)$`).FindStringSubmatch(text)
		if m == nil {
			t.Errorf("metrics have no %s", series)
			return -1
		}
		v, _ := strconv.ParseFloat(m[1], 64)
		return v
	}
	if v := value("courier_queue_enqueued_total"); v != 10 {
		t.Errorf("courier_queue_enqueued_total %v, want 10", v)
	}
	if v := value("courier_queue_delivered_total"); v != 8 {
		t.Errorf("courier_queue_delivered_total %v, want 8", v)
	}
	if v := value("courier_queue_delivery_latency_seconds_count"); v != 8 {
		t.Errorf("courier_queue_delivery_latency_seconds_count %v, want 8", v)
	}
	for _, name := range []string{"# TYPE courier_queue_delivery_latency_seconds histogram", "courier_queue_delivery_latency_seconds_bucket{le="} {
		if !strings.Contains(text, name) {
			t.Errorf("metrics have no %s", name)
		}
	}
	for _, k := range keys {
		if strings.Contains(text, k) || strings.Contains(text, k[:8]) {
			t.Errorf("metrics show the routing key %s", k)
		}
		label := `routing_key="` + redact.QueueKey("events/"+k) + `"`
		for _, state := range []string{"pending", "delivering", "failed"} {
			series := fmt.Sprintf(`courier_queue_items{%s,state="%s"}`, label, state)
			want := 0.0
			if state == "failed" {
				want = 1
			}
			if v := value(series); v != want {
				t.Errorf("%s = %v, want %v", series, v, want)
			}
		}
	}
}

// TestE2EInit: init writes config.yaml with mode 0600 and will not
// overwrite it without --force.
func TestE2EInit(t *testing.T) {
	root := e2e(t)
	r := runCourier(t, root, "init")
	if r.code != 0 {
		t.Fatalf("courier init: %s", r)
	}
	path := filepath.Join(root, "config.yaml")
	info, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if info.Mode().Perm() != 0o600 {
		t.Errorf("config.yaml has mode %04o, want 0600", info.Mode().Perm())
	}
	first, _ := os.ReadFile(path)
	r = runCourier(t, root, "init")
	if r.code == 0 || !strings.Contains(r.stderr, "--force") {
		t.Errorf("a second courier init: want a non-zero exit that mentions --force:\n%s", r)
	}
	if again, _ := os.ReadFile(path); string(again) != string(first) {
		t.Errorf("a refused init changed config.yaml")
	}
	token := readConfigValue(t, root, "local_token")
	if r := runCourier(t, root, "init", "--force"); r.code != 0 {
		t.Fatalf("courier init --force: %s", r)
	}
	if info, err := os.Stat(path); err != nil || info.Mode().Perm() != 0o600 {
		t.Errorf("config.yaml after init --force: %v %v, want mode 0600", info, err)
	}
	if readConfigValue(t, root, "local_token") == token {
		t.Errorf("init --force kept the old local_token")
	}
}

// waitAcks waits until the clients were answered 202 n times.
func waitAcks(t *testing.T, svc *serviceRun, acks *atomic.Int64, n int64) {
	t.Helper()
	deadline := time.Now().Add(deliverDeadline)
	for acks.Load() < n {
		if svc.exited() {
			t.Fatalf("service-run exited on its own:\n%s", tailLines(svc.output(), 40))
		}
		if time.Now().After(deadline) {
			t.Fatalf("only %d of %d events were accepted within %s", acks.Load(), n, deliverDeadline)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// waitOrFail waits for wait() within the delivery deadline.
func waitOrFail(t *testing.T, wait func(), what string) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		wait()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(deliverDeadline):
		t.Fatalf("%s did not finish within %s", what, deliverDeadline)
	}
}
