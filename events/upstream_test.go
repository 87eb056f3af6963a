package events

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"courier/queue"
)

// fakePagerDuty is a real HTTP server that records what it receives and
// answers from a script, one answer per request (the last one repeats).
type fakePagerDuty struct {
	*httptest.Server
	mu       sync.Mutex
	received []receivedRequest
	answers  []answer
}

type receivedRequest struct {
	path, contentType, userAgent string
	body                         []byte
}

type answer struct {
	code   int
	header map[string]string
	body   string
}

func newFakePagerDuty(t *testing.T, answers ...answer) *fakePagerDuty {
	t.Helper()
	pd := &fakePagerDuty{answers: answers}
	pd.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		pd.mu.Lock()
		pd.received = append(pd.received, receivedRequest{r.URL.Path, r.Header.Get("Content-Type"), r.Header.Get("User-Agent"), body})
		a := answer{code: http.StatusAccepted, body: `{"status":"success","message":"Event processed","dedup_key":"x"}`}
		if n := len(pd.received); len(pd.answers) > 0 {
			a = pd.answers[min(n, len(pd.answers))-1]
		}
		pd.mu.Unlock()
		for k, v := range a.header {
			w.Header().Set(k, v)
		}
		w.WriteHeader(a.code)
		_, _ = io.WriteString(w, a.body)
	}))
	t.Cleanup(pd.Close)
	return pd
}

func (pd *fakePagerDuty) requests() []receivedRequest {
	pd.mu.Lock()
	defer pd.mu.Unlock()
	return slices.Clone(pd.received)
}

// testClient has its own transport so that its idle connections can be
// closed before goleak looks.
func testClient(t *testing.T) *http.Client {
	t.Helper()
	tr := http.DefaultTransport.(*http.Transport).Clone()
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 5 * time.Second}
}

// mustSink is NewPagerDutySink for options that cannot fail.
func mustSink(t *testing.T, opts PagerDutyOptions) *pagerDutySink {
	t.Helper()
	s, err := NewPagerDutySink(opts)
	if err != nil {
		t.Fatalf("NewPagerDutySink: %v", err)
	}
	return s.(*pagerDutySink)
}

func newTestSink(t *testing.T, pd *fakePagerDuty) queue.Sink {
	client := testClient(t)
	// As the default client does.
	client.CheckRedirect = mustSink(t, PagerDutyOptions{}).client.CheckRedirect
	return mustSink(t, PagerDutyOptions{
		URL:       pd.URL + "/v2/enqueue",
		V1URL:     pd.URL + "/v1/create_event.json",
		Client:    client,
		UserAgent: "courier/test",
		Logger:    zerolog.Nop(),
	})
}

// storedMessage parses body with parse and wraps it as the queue would.
func storedMessage(t *testing.T, seq uint64, parse func([]byte) (Accepted, []string), body string) (queue.Message, Accepted) {
	t.Helper()
	a, errs := parse([]byte(body))
	if errs != nil {
		t.Fatalf("test event invalid: %q", errs)
	}
	payload, err := EncodeStored(a.Stored(time.Now()))
	if err != nil {
		t.Fatal(err)
	}
	return queue.Message{Key: a.QueueKey(), Seq: seq, EnqueuedAt: time.Now(), Payload: payload}, a
}

func TestSinkDeliversEachEventAsAccepted(t *testing.T) {
	pd := newFakePagerDuty(t)
	sink := newTestSink(t, pd)
	m1, a1 := storedMessage(t, 1, ParseV2, trigger(`"dedup_key":"one","client":"<b>&co</b>","unknown":[1,2],`))
	m2, a2 := storedMessage(t, 2, ParseV2, `{"routing_key":"`+testKey+`","event_action":"resolve","dedup_key":"one"}`)
	if err := sink.Deliver(t.Context(), QueueKey(testKey), []queue.Message{m1, m2}); err != nil {
		t.Fatalf("Deliver: %v", err)
	}
	got := pd.requests()
	if len(got) != 2 {
		t.Fatalf("PagerDuty got %d requests, want one per event", len(got))
	}
	for i, a := range []Accepted{a1, a2} {
		r := got[i]
		if r.path != "/v2/enqueue" || r.contentType != "application/json" || r.userAgent != "courier/test" {
			t.Errorf("request %d: %+v", i, r)
		}
		if string(r.body) != string(a.Event) {
			t.Errorf("request %d body:\n got %s\nwant %s", i, r.body, a.Event)
		}
	}
}

func TestSinkSendsV1ToV1URL(t *testing.T) {
	pd := newFakePagerDuty(t, answer{code: http.StatusOK, body: `{"status":"success","message":"Event processed","incident_key":"i"}`})
	sink := newTestSink(t, pd)
	m, a := storedMessage(t, 1, ParseV1, `{"service_key":"`+testKeyV1+`","event_type":"trigger","description":"d"}`)
	if err := sink.Deliver(t.Context(), QueueKey(testKeyV1), []queue.Message{m}); err != nil {
		t.Fatalf("Deliver: %v", err)
	}
	got := pd.requests()
	if len(got) != 1 || got[0].path != "/v1/create_event.json" || string(got[0].body) != string(a.Event) {
		t.Fatalf("requests = %+v", got)
	}
}

func TestV1URLFollowsURL(t *testing.T) {
	for v2, want := range map[string]string{
		"":                                  DefaultV1URL,
		DefaultURL:                          DefaultV1URL,
		"http://127.0.0.1:9000/v2/enqueue":  "http://127.0.0.1:9000/generic/2010-04-15/create_event.json",
		"https://proxy/pd/v2/enqueue/?x=1":  "https://proxy/pd/generic/2010-04-15/create_event.json",
		"http://relay.internal:8080/custom": "http://relay.internal:8080/custom/generic/2010-04-15/create_event.json",
	} {
		s := mustSink(t, PagerDutyOptions{URL: v2})
		if s.v1URL != want {
			t.Errorf("URL %q: v1 URL = %q, want %q", v2, s.v1URL, want)
		}
	}
}

func TestChangeURLFollowsURL(t *testing.T) {
	for v2, want := range map[string]string{
		"":                                  DefaultChangeURL,
		DefaultURL:                          DefaultChangeURL,
		"http://127.0.0.1:9000/v2/enqueue":  "http://127.0.0.1:9000/v2/change/enqueue",
		"https://proxy/pd/v2/enqueue/?x=1":  "https://proxy/pd/v2/change/enqueue",
		"http://relay.internal:8080/custom": "http://relay.internal:8080/custom/v2/change/enqueue",
	} {
		s := mustSink(t, PagerDutyOptions{URL: v2})
		if s.changeURL != want {
			t.Errorf("URL %q: change URL = %q, want %q", v2, s.changeURL, want)
		}
	}
	s := mustSink(t, PagerDutyOptions{URL: "http://127.0.0.1:9000/v2/enqueue", ChangeURL: "http://127.0.0.1:9001/changes"})
	if s.changeURL != "http://127.0.0.1:9001/changes" {
		t.Errorf("an explicit change URL was replaced by %q", s.changeURL)
	}
}

// A key's change events go to the change endpoint, between its alerts, in
// the order they were accepted.
func TestSinkSendsChangeEventsInOrderWithAlerts(t *testing.T) {
	pd := newFakePagerDuty(t)
	sink := mustSink(t, PagerDutyOptions{URL: pd.URL + "/v2/enqueue", Client: testClient(t), Logger: zerolog.Nop()})
	m1, a1 := storedMessage(t, 1, ParseV2, trigger(`"dedup_key":"one",`))
	m2, a2 := storedMessage(t, 2, ParseChange, `{"routing_key":"`+testKey+`","payload":{"summary":"deployed v2"},"links":[{"href":"https://ci.example.com/7"}]}`)
	m3, a3 := storedMessage(t, 3, ParseV2, `{"routing_key":"`+testKey+`","event_action":"resolve","dedup_key":"one"}`)
	for _, m := range []queue.Message{m1, m2, m3} {
		if err := sink.Deliver(t.Context(), QueueKey(testKey), []queue.Message{m}); err != nil {
			t.Fatalf("Deliver: %v", err)
		}
	}
	got := pd.requests()
	want := []struct {
		path string
		a    Accepted
	}{{"/v2/enqueue", a1}, {"/v2/change/enqueue", a2}, {"/v2/enqueue", a3}}
	if len(got) != len(want) {
		t.Fatalf("PagerDuty got %d requests, want %d", len(got), len(want))
	}
	for i, w := range want {
		if got[i].path != w.path || string(got[i].body) != string(w.a.Event) {
			t.Errorf("request %d: %s %s, want %s %s", i, got[i].path, got[i].body, w.path, w.a.Event)
		}
	}
}

func TestSinkClassifiesAnswers(t *testing.T) {
	invalid := `{"status":"invalid event","message":"Event object is invalid","errors":["Length of 'routing_key' is incorrect (should be 32 characters)","'payload.summary' is missing for ` + testKey + `"]}`
	cases := map[string]struct {
		answer    answer
		permanent bool
		after     time.Duration // > 0: a RetryAfterError is expected
		contains  string
	}{
		"400 is permanent": {
			answer:    answer{code: 400, body: invalid},
			permanent: true,
			contains:  "PagerDuty answered 400 Bad Request: Event object is invalid: Length of 'routing_key' is incorrect (should be 32 characters); 'payload.summary' is missing for R0ut…",
		},
		"413 is permanent": {
			answer:    answer{code: 413, body: "Request Entity Too Large"},
			permanent: true,
			contains:  "413 Request Entity Too Large: Request Entity Too Large",
		},
		"429 with Retry-After seconds": {
			answer:   answer{code: 429, header: map[string]string{"Retry-After": "7"}, body: `{"status":"throttle event","message":"Requests for this service are arriving too quickly."}`},
			after:    7 * time.Second,
			contains: "429 Too Many Requests: Requests for this service are arriving too quickly.",
		},
		"503 with Retry-After in an hour and more": {
			answer: answer{code: 503, header: map[string]string{"Retry-After": "86400"}},
			after:  time.Hour,
		},
		"503 without Retry-After is a plain retry": {
			answer:   answer{code: 503, body: "<html>upstream down</html>"},
			contains: "503 Service Unavailable: <html>upstream down</html>",
		},
		"500 is retried": {answer: answer{code: 500}, contains: "(empty body)"},
		"404 from a wrong URL is retried, not dropped": {answer: answer{code: 404}},
		"a redirect is reported, not followed": {
			answer:   answer{code: 301, header: map[string]string{"Location": "https://elsewhere.example/v2/enqueue"}},
			contains: "301 Moved Permanently: redirected to https://elsewhere.example/v2/enqueue",
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			pd := newFakePagerDuty(t, tc.answer)
			m, _ := storedMessage(t, 1, ParseV2, trigger(""))
			err := newTestSink(t, pd).Deliver(t.Context(), QueueKey(testKey), []queue.Message{m})
			if err == nil {
				t.Fatal("Deliver succeeded")
			}
			var perm *queue.PermanentError
			if errors.As(err, &perm) != tc.permanent {
				t.Fatalf("permanent = %v, want %v: %v", !tc.permanent, tc.permanent, err)
			}
			if errors.Is(err, queue.ErrTooLarge) {
				t.Fatalf("ErrTooLarge would make the queue halve a batch of one: %v", err)
			}
			var ra *queue.RetryAfterError
			if errors.As(err, &ra) != (tc.after > 0) || (ra != nil && ra.After != tc.after) {
				t.Fatalf("retry after = %+v, want %v: %v", ra, tc.after, err)
			}
			if !strings.Contains(err.Error(), tc.contains) {
				t.Fatalf("error %q lacks %q", err, tc.contains)
			}
			if strings.Contains(err.Error(), testKey) {
				t.Fatalf("error carries the full routing key: %v", err)
			}
		})
	}
}

func TestSinkRetryAfterHTTPDate(t *testing.T) {
	at := time.Now().Add(30 * time.Second).UTC().Format(http.TimeFormat)
	pd := newFakePagerDuty(t, answer{code: 429, header: map[string]string{"Retry-After": at}})
	m, _ := storedMessage(t, 1, ParseV2, trigger(""))
	err := newTestSink(t, pd).Deliver(t.Context(), QueueKey(testKey), []queue.Message{m})
	var ra *queue.RetryAfterError
	if !errors.As(err, &ra) || ra.After < 28*time.Second || ra.After > 30*time.Second {
		t.Fatalf("err = %v (%+v), want a retry after about 30 s", err, ra)
	}
}

func TestRetryAfterParsing(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	for h, want := range map[string]time.Duration{
		"0":                             0,
		" 12 ":                          12 * time.Second,
		"99999999999":                   time.Hour,
		"Sun, 01 Mar 2026 12:00:45 GMT": 45 * time.Second,
		"Sun, 01 Mar 2026 11:00:00 GMT": 0, // in the past: retry now
	} {
		if got, ok := retryAfter(h, now); !ok || got != want {
			t.Errorf("retryAfter(%q) = %v, %v; want %v", h, got, ok, want)
		}
	}
	for _, h := range []string{"", "-5", "soon", "1.5"} {
		if got, ok := retryAfter(h, now); ok {
			t.Errorf("retryAfter(%q) = %v, want no value", h, got)
		}
	}
}

func TestSinkStopsAtFirstFailure(t *testing.T) {
	pd := newFakePagerDuty(t,
		answer{code: 202},
		answer{code: 400, body: `{"status":"invalid event","message":"Event object is invalid","errors":["nope"]}`},
		answer{code: 202},
	)
	var batch []queue.Message
	for i, dedup := range []string{"a", "b", "c"} {
		m, _ := storedMessage(t, uint64(i+1), ParseV2, trigger(`"dedup_key":"`+dedup+`",`))
		batch = append(batch, m)
	}
	err := newTestSink(t, pd).Deliver(t.Context(), QueueKey(testKey), batch)
	var perm *queue.PermanentError
	if !errors.As(err, &perm) {
		t.Fatalf("err = %v, want permanent", err)
	}
	got := pd.requests()
	if len(got) != 2 || !strings.Contains(string(got[1].body), `"dedup_key":"b"`) {
		t.Fatalf("requests = %d (%+v); the event after the failure must not be sent", len(got), got)
	}
}

func TestSinkCorruptStoredEvent(t *testing.T) {
	pd := newFakePagerDuty(t)
	for name, payload := range map[string]string{
		"not JSON":    `{"api":"v2","event":`,
		"unknown api": `{"api":"v7","event":{}}`,
	} {
		err := newTestSink(t, pd).Deliver(t.Context(), QueueKey(testKey), []queue.Message{{Seq: 9, Payload: []byte(payload)}})
		var perm *queue.PermanentError
		if !errors.As(err, &perm) || !strings.Contains(err.Error(), "corrupt stored event (seq 9)") {
			t.Errorf("%s: err = %v", name, err)
		}
	}
	if n := len(pd.requests()); n != 0 {
		t.Fatalf("%d corrupt events were sent", n)
	}
}

func TestSinkConnectionRefusedIsRetryable(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close() // nothing listens there any more
	sink := mustSink(t, PagerDutyOptions{URL: "http://" + addr + "/v2/enqueue", Client: testClient(t)})
	m, _ := storedMessage(t, 1, ParseV2, trigger(""))
	err = sink.Deliver(t.Context(), QueueKey(testKey), []queue.Message{m})
	var perm *queue.PermanentError
	var ra *queue.RetryAfterError
	if err == nil || errors.As(err, &perm) || errors.As(err, &ra) {
		t.Fatalf("err = %v, want a plain retryable error", err)
	}
	if !strings.Contains(err.Error(), "connection refused") {
		t.Fatalf("err = %v, want it to say connection refused", err)
	}
}

func TestSinkTimeoutIsRetryable(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer srv.Close()
	defer close(release)
	client := testClient(t)
	client.Timeout = 100 * time.Millisecond
	sink := mustSink(t, PagerDutyOptions{URL: srv.URL, Client: client})
	m, _ := storedMessage(t, 1, ParseV2, trigger(""))
	err := sink.Deliver(t.Context(), QueueKey(testKey), []queue.Message{m})
	var perm *queue.PermanentError
	if err == nil || errors.As(err, &perm) {
		t.Fatalf("err = %v, want a retryable error", err)
	}

	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := sink.Deliver(ctx, QueueKey(testKey), []queue.Message{m}); !errors.Is(err, context.Canceled) || errors.As(err, &perm) {
		t.Fatalf("cancelled: err = %v", err)
	}
}

func TestRedactKey(t *testing.T) {
	for in, want := range map[string]string{
		"":                  "",
		"abc":               "…",
		"abcd":              "…",
		testKey:             "R0ut…",
		"éèêëàâ":            "éèêë…",
		"events/" + testKey: "even…",
	} {
		got := RedactKey(in)
		if !strings.HasPrefix(got, want) || (in != "" && len(got) != len(want)+8) {
			t.Errorf("RedactKey(%q) = %q, want %q and 8 hex digits of a hash", in, got, want)
		}
	}
}
