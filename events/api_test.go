package events

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/rs/zerolog"

	"courier/queue"
)

// fakeQueue stands in for the durable queue in handler tests; the real queue
// is exercised end to end elsewhere.
type fakeQueue struct {
	mu         sync.Mutex
	items      map[string][][]byte
	policies   []queue.Policy
	enqueueErr error
	status     queue.Status
	statusErr  error
	retryKeys  []string
	retryN     int
	retryErr   error
}

func (q *fakeQueue) Enqueue(_ context.Context, key string, payloads [][]byte, p queue.Policy) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.policies = append(q.policies, p)
	if q.enqueueErr != nil {
		return q.enqueueErr
	}
	if q.items == nil {
		q.items = map[string][][]byte{}
	}
	q.items[key] = append(q.items[key], payloads...)
	return nil
}

func (q *fakeQueue) Status(context.Context) (queue.Status, error) {
	return q.status, q.statusErr
}

func (q *fakeQueue) Retry(_ context.Context, key string) (int, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.retryKeys = append(q.retryKeys, key)
	return q.retryN, q.retryErr
}

// The fake holds no dead letters; the routes that read them are tested
// against the real queue (queueapi_test.go).
func (q *fakeQueue) ListItems(queue.ItemQuery) (queue.ItemPage, error) {
	return queue.ItemPage{}, nil
}

func (q *fakeQueue) Item(string, uint64) (queue.Item, error) { return queue.Item{}, queue.ErrNoItem }

func (q *fakeQueue) Purge(context.Context, queue.Purge) (queue.PurgeResult, error) {
	return queue.PurgeResult{}, queue.ErrUnknownKey
}

func (q *fakeQueue) stored(key string) [][]byte {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.items[key]
}

func (q *fakeQueue) count() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	n := 0
	for _, v := range q.items {
		n += len(v)
	}
	return n
}

var testNow = time.Date(2026, 5, 4, 3, 2, 1, 0, time.UTC)

// apiServer runs the API on a real 127.0.0.1 listener.
func apiServer(t *testing.T, q Queue, mutate ...func(*APIOptions)) *httptest.Server {
	t.Helper()
	opts := APIOptions{Queue: q, Logger: zerolog.Nop(), Now: func() time.Time { return testNow }}
	for _, m := range mutate {
		m(&opts)
	}
	srv := httptest.NewServer(NewAPI(opts))
	t.Cleanup(srv.Close)
	return srv
}

type response struct {
	code   int
	header http.Header
	body   map[string]any
	raw    []byte
}

func do(t *testing.T, method, url, body string, headers ...string) response {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(headers); i += 2 {
		if headers[i+1] == "" {
			req.Header.Del(headers[i])
		} else {
			req.Header.Set(headers[i], headers[i+1])
		}
	}
	resp, err := testClient(t).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	r := response{code: resp.StatusCode, header: resp.Header, raw: raw}
	if method != http.MethodHead && resp.Header.Get("Content-Type") == "application/json" {
		if err := json.Unmarshal(raw, &r.body); err != nil {
			t.Fatalf("answer is not JSON: %s", raw)
		}
	}
	return r
}

// mustError checks the convention that every error body says, in "error",
// what to do.
func (r response) mustError(t *testing.T, code int, contains string) {
	t.Helper()
	if r.code != code {
		t.Fatalf("code = %d, want %d: %s", r.code, code, r.raw)
	}
	msg, _ := r.body["error"].(string)
	if msg == "" || !strings.Contains(msg, contains) {
		t.Fatalf("error %q does not contain %q (body %s)", msg, contains, r.raw)
	}
}

func TestEnqueueStoresAcceptedEvent(t *testing.T) {
	q := &fakeQueue{}
	srv := apiServer(t, q)
	body := "{\n  " + strings.TrimPrefix(trigger(`"dedup_key":"disk/build-7",`), "{")
	r := do(t, http.MethodPost, srv.URL+"/v2/enqueue", body)
	if r.code != http.StatusAccepted || r.body["status"] != "success" || r.body["message"] != "Event processed" || r.body["dedup_key"] != "disk/build-7" {
		t.Fatalf("answer %d %s", r.code, r.raw)
	}
	stored := q.stored("events/" + testKey)
	if len(stored) != 1 || q.policies[0] != queue.Refuse {
		t.Fatalf("stored %d payloads with policies %v", len(stored), q.policies)
	}
	s, err := DecodeStored(stored[0])
	if err != nil {
		t.Fatal(err)
	}
	want := trigger(`"dedup_key":"disk/build-7",`) // the body, compacted
	if s.API != APIv2 || !s.ReceivedAt.Equal(testNow) || string(s.Event) != want {
		t.Fatalf("stored %+v\n event %s\n want  %s", s, s.Event, want)
	}
}

func TestEnqueueGeneratedDedupKeyIsStored(t *testing.T) {
	q := &fakeQueue{}
	srv := apiServer(t, q)
	r := do(t, http.MethodPost, srv.URL+"/v2/enqueue", trigger(""))
	key, _ := r.body["dedup_key"].(string)
	if r.code != http.StatusAccepted || !hex32.MatchString(key) {
		t.Fatalf("answer %d %s", r.code, r.raw)
	}
	s, err := DecodeStored(q.stored(QueueKey(testKey))[0])
	if err != nil {
		t.Fatal(err)
	}
	var e Event
	if err := json.Unmarshal(s.Event, &e); err != nil || e.DedupKey != key {
		t.Fatalf("stored event %s does not carry the dedup key %s we answered", s.Event, key)
	}
}

func TestEnqueueRejectsInvalidEvents(t *testing.T) {
	q := &fakeQueue{}
	srv := apiServer(t, q)
	cases := map[string]struct {
		body string
		want []string
	}{
		"short key":        {`{"routing_key":"x","event_action":"resolve","dedup_key":"k"}`, []string{"Length of 'routing_key' is incorrect (should be 32 characters)"}},
		"bad action":       {`{"routing_key":"` + testKey + `","event_action":"close","dedup_key":"k"}`, []string{"'event_action' is invalid (must be one of trigger, acknowledge, resolve)"}},
		"ack without key":  {`{"routing_key":"` + testKey + `","event_action":"acknowledge"}`, []string{"'dedup_key' is missing or blank (required for acknowledge)"}},
		"long dedup key":   {trigger(`"dedup_key":"` + strings.Repeat("k", 256) + `",`), []string{"Length of 'dedup_key' is too long (should be at most 255 characters)"}},
		"no payload":       {`{"routing_key":"` + testKey + `","event_action":"trigger"}`, []string{"'payload' is missing or blank"}},
		"no summary":       {`{"routing_key":"` + testKey + `","event_action":"trigger","payload":{"source":"s","severity":"info"}}`, []string{"'payload.summary' is missing or blank"}},
		"long summary":     {`{"routing_key":"` + testKey + `","event_action":"trigger","payload":{"summary":"` + strings.Repeat("s", 1025) + `","source":"s","severity":"info"}}`, []string{"Length of 'payload.summary' is too long (should be at most 1024 characters)"}},
		"no source":        {`{"routing_key":"` + testKey + `","event_action":"trigger","payload":{"summary":"s","severity":"info"}}`, []string{"'payload.source' is missing or blank"}},
		"bad severity":     {`{"routing_key":"` + testKey + `","event_action":"trigger","payload":{"summary":"s","source":"s","severity":"fatal"}}`, []string{"'payload.severity' is invalid (must be one of critical, error, warning, info)"}},
		"bad timestamp":    {`{"routing_key":"` + testKey + `","event_action":"trigger","payload":{"summary":"s","source":"s","severity":"info","timestamp":"now"}}`, []string{"'payload.timestamp' is invalid (must be an ISO 8601 date and time with a time zone, such as 2015-07-17T08:42:58.315+0000)"}},
		"malformed":        {`{"routing_key"`, []string{"body is not valid JSON: unexpected end of JSON input (at byte 14)"}},
		"several problems": {`{"routing_key":"x","event_action":"trigger","payload":{"summary":"s"}}`, []string{"Length of 'routing_key' is incorrect (should be 32 characters)", "'payload.source' is missing or blank", "'payload.severity' is missing or blank"}},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			r := do(t, http.MethodPost, srv.URL+"/v2/enqueue", tc.body)
			r.mustError(t, http.StatusBadRequest, "the event is invalid: "+tc.want[0])
			if r.body["status"] != "invalid event" || r.body["message"] != "Event object is invalid" {
				t.Fatalf("not PagerDuty's shape: %s", r.raw)
			}
			var errs []string
			for _, e := range r.body["errors"].([]any) {
				errs = append(errs, e.(string))
			}
			if strings.Join(errs, "\n") != strings.Join(tc.want, "\n") {
				t.Fatalf("errors:\n got %q\nwant %q", errs, tc.want)
			}
		})
	}
	if n := q.count(); n != 0 {
		t.Fatalf("%d invalid events were stored", n)
	}

	form := do(t, http.MethodPost, srv.URL+"/v2/enqueue", "routing_key=x", "Content-Type", "application/x-www-form-urlencoded")
	form.mustError(t, http.StatusBadRequest, "the body must be JSON (Content-Type: application/json), not application/x-www-form-urlencoded")
	// A JSON body sent as a form (curl -d without -H) is read as JSON: the
	// 400 of an invalid event names its real problem, not the header.
	curl := do(t, http.MethodPost, srv.URL+"/v2/enqueue", `{"routing_key":"short","event_action":"trigger","payload":{"summary":"s","source":"h","severity":"info"}}`,
		"Content-Type", "application/x-www-form-urlencoded")
	curl.mustError(t, http.StatusBadRequest, "routing_key")
	if strings.Contains(string(curl.raw), "Content-Type") {
		t.Fatalf("a JSON body's 400 blames the content type: %s", curl.raw)
	}
}

func TestEnqueueBodyTooLarge(t *testing.T) {
	q := &fakeQueue{}
	srv := apiServer(t, q)
	huge := trigger(`"pad":"` + strings.Repeat("x", MaxBodyBytes) + `",`)
	do(t, http.MethodPost, srv.URL+"/v2/enqueue", huge).mustError(t, http.StatusRequestEntityTooLarge, "larger than 512 KiB")

	// Without Content-Length (chunked), the limit applies while reading.
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, srv.URL+"/v1/send", io.MultiReader(strings.NewReader(huge)))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := testClient(t).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusRequestEntityTooLarge || req.ContentLength != 0 {
		t.Fatalf("chunked: %d (content length %d)", resp.StatusCode, req.ContentLength)
	}

	// Exactly at the limit is fine.
	pad := MaxBodyBytes - len(trigger(`"pad":"",`))
	exact := trigger(`"pad":"` + strings.Repeat("x", pad) + `",`)
	if r := do(t, http.MethodPost, srv.URL+"/v2/enqueue", exact); r.code != http.StatusAccepted || len(exact) != MaxBodyBytes {
		t.Fatalf("body of exactly %d bytes: %d %s", len(exact), r.code, r.raw)
	}
	if n := q.count(); n != 1 {
		t.Fatalf("stored %d events, want only the one within the limit", n)
	}
}

func TestEnqueueQueueErrors(t *testing.T) {
	cases := map[string]struct {
		err        error
		code       int
		contains   string
		retryAfter string
	}{
		"full":      {queue.ErrFull, http.StatusTooManyRequests, "queue is full", "3"},
		"wrapped":   {errors.Join(errors.New("key quota"), queue.ErrFull), http.StatusTooManyRequests, "retry after 3 s", "3"},
		"closed":    {queue.ErrClosed, http.StatusServiceUnavailable, "shutting down", "3"},
		"disk full": {errors.New("write db/000123.log: no space left on device"), http.StatusServiceUnavailable, "could not store the event, so it was not accepted: write db/000123.log: no space left on device", "3"},
		"queue disk full": {fmt.Errorf("%w: 1000 bytes free under db", queue.ErrDiskFull), http.StatusServiceUnavailable,
			"the agent's disk is full, so the event was not accepted (the disk holding the queue is full: 1000 bytes free under db); retry after 3 s", "3"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			q := &fakeQueue{enqueueErr: tc.err}
			srv := apiServer(t, q, func(o *APIOptions) { o.RetryAfter = 2500 * time.Millisecond })
			for _, path := range []string{"/v2/enqueue", "/v1/send", "/v2/change/enqueue"} {
				body := trigger("")
				switch path {
				case "/v1/send":
					body = `{"api_version":"v2","event":` + body + `}`
				case "/v2/change/enqueue":
					body = changeEvent("")
				}
				r := do(t, http.MethodPost, srv.URL+path, body)
				r.mustError(t, tc.code, tc.contains)
				if got := r.header.Get("Retry-After"); got != tc.retryAfter {
					t.Fatalf("%s: Retry-After = %q, want %q", path, got, tc.retryAfter)
				}
				if q.policies[len(q.policies)-1] != queue.Refuse {
					t.Fatalf("an HTTP client must not wait for room: policy %v", q.policies)
				}
			}
		})
	}
	// The default Retry-After is 5 s.
	srv := apiServer(t, &fakeQueue{enqueueErr: queue.ErrFull})
	if r := do(t, http.MethodPost, srv.URL+"/v2/enqueue", trigger("")); r.header.Get("Retry-After") != "5" {
		t.Fatalf("default Retry-After = %q", r.header.Get("Retry-After"))
	}
}

func TestSendEndpoint(t *testing.T) {
	q := &fakeQueue{}
	srv := apiServer(t, q)
	v1 := `{"service_key":"` + testKeyV1 + `","event_type":"resolve","incident_key":"i-1"}`
	body, _ := json.Marshal(SendRequest{APIVersion: APIv1, Event: json.RawMessage(v1)})
	r := do(t, http.MethodPost, srv.URL+"/v1/send", string(body))
	if r.code != http.StatusAccepted || r.body["dedup_key"] != "i-1" {
		t.Fatalf("answer %d %s", r.code, r.raw)
	}
	s, err := DecodeStored(q.stored(QueueKey(testKeyV1))[0])
	if err != nil || s.API != APIv1 || string(s.Event) != v1 {
		t.Fatalf("stored %+v %v", s, err)
	}

	r = do(t, http.MethodPost, srv.URL+"/v1/send", `{"api_version":"v3","event":{}}`)
	r.mustError(t, http.StatusBadRequest, "'api_version' is invalid (must be one of v2, v1, change)")
}

// pdClientEvent has the shape of the event struct of the common PagerDuty Go
// clients, which POST it with plain net/http: a client pointed at the agent
// instead of PagerDuty must work unchanged.
type pdClientEvent struct {
	RoutingKey string           `json:"routing_key"`
	Action     string           `json:"event_action"`
	DedupKey   string           `json:"dedup_key,omitempty"`
	Images     []any            `json:"images,omitempty"`
	Links      []any            `json:"links,omitempty"`
	Client     string           `json:"client,omitempty"`
	ClientURL  string           `json:"client_url,omitempty"`
	Payload    *pdClientPayload `json:"payload,omitempty"`
}

type pdClientPayload struct {
	Summary   string `json:"summary"`
	Source    string `json:"source"`
	Severity  string `json:"severity"`
	Timestamp string `json:"timestamp,omitempty"`
	Component string `json:"component,omitempty"`
	Group     string `json:"group,omitempty"`
	Class     string `json:"class,omitempty"`
	Details   any    `json:"custom_details,omitempty"`
}

type pdClientResponse struct {
	Status   string   `json:"status"`
	Message  string   `json:"message"`
	DedupKey string   `json:"dedup_key"`
	Errors   []string `json:"errors"`
}

func TestPagerDutyClientWorksUnchanged(t *testing.T) {
	q := &fakeQueue{}
	srv := apiServer(t, q)
	client := testClient(t)
	send := func(e pdClientEvent, contentType string) (int, pdClientResponse) {
		b, err := json.Marshal(e)
		if err != nil {
			t.Fatal(err)
		}
		req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, srv.URL+"/v2/enqueue", bytes.NewReader(b))
		if err != nil {
			t.Fatal(err)
		}
		if contentType != "" {
			req.Header.Set("Content-Type", contentType)
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var out pdClientResponse
		if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
			t.Fatal(err)
		}
		return resp.StatusCode, out
	}

	code, out := send(pdClientEvent{
		RoutingKey: testKey,
		Action:     "trigger",
		Client:     "nightly-backup",
		Payload: &pdClientPayload{
			Summary:   "backup failed",
			Source:    "db-3",
			Severity:  "error",
			Timestamp: time.Now().Format(time.RFC3339),
			Details:   map[string]any{"exit": 2},
		},
	}, "application/json")
	if code != http.StatusAccepted || out.Status != "success" || !hex32.MatchString(out.DedupKey) {
		t.Fatalf("trigger: %d %+v", code, out)
	}
	// The dedup key from the answer resolves the incident; PagerDuty's
	// leniency about Content-Type is kept.
	for _, ct := range []string{"", "application/json; charset=utf-8", "text/plain"} {
		code, res := send(pdClientEvent{RoutingKey: testKey, Action: "resolve", DedupKey: out.DedupKey}, ct)
		if code != http.StatusAccepted || res.DedupKey != out.DedupKey {
			t.Fatalf("resolve with Content-Type %q: %d %+v", ct, code, res)
		}
	}
	code, res := send(pdClientEvent{RoutingKey: testKey, Action: "trigger"}, "application/json")
	if code != http.StatusBadRequest || res.Status != "invalid event" || len(res.Errors) != 1 {
		t.Fatalf("invalid: %d %+v", code, res)
	}
	if n := len(q.stored(QueueKey(testKey))); n != 4 {
		t.Fatalf("stored %d events, want 4", n)
	}
}

func TestToken(t *testing.T) {
	q := &fakeQueue{}
	srv := apiServer(t, q, func(o *APIOptions) {
		o.Token = "s3cret-token"
		o.Metrics = http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "# metrics\n") })
	})
	paths := []struct{ method, path, body string }{
		{http.MethodPost, "/v2/enqueue", trigger("")},
		{http.MethodPost, "/v1/send", `{"event":` + trigger("") + `}`},
		{http.MethodGet, "/v1/queue/status", ""},
		{http.MethodPost, "/v1/queue/retry", "{}"},
		{http.MethodGet, "/readyz", ""},
		{http.MethodGet, "/metrics", ""},
		{http.MethodGet, "/no/such/path", ""},
	}
	for _, p := range paths {
		for _, auth := range []string{"", "Token wrong", "Token s3cret-token2", "Token s3cret-toke", "Bearer s3cret-token", "s3cret-token"} {
			r := do(t, p.method, srv.URL+p.path, p.body, "Authorization", auth)
			r.mustError(t, http.StatusUnauthorized, "Authorization: Token")
			if r.header.Get("WWW-Authenticate") != "Token" {
				t.Fatalf("%s with %q: no WWW-Authenticate", p.path, auth)
			}
		}
		r := do(t, p.method, srv.URL+p.path, p.body, "Authorization", "Token s3cret-token")
		if r.code == http.StatusUnauthorized {
			t.Fatalf("%s refused the right token: %s", p.path, r.raw)
		}
	}
	if r := do(t, http.MethodPost, srv.URL+"/v2/enqueue", trigger(""), "Authorization", "token s3cret-token"); r.code != http.StatusAccepted {
		t.Fatalf("the scheme is case-insensitive: %d %s", r.code, r.raw)
	}
	if r := do(t, http.MethodGet, srv.URL+"/livez", ""); r.code != http.StatusOK {
		t.Fatalf("livez needs no token: %d", r.code)
	}
	if n := q.count(); n != 3 {
		t.Fatalf("stored %d events, want 3 (two with the token, one with a lower-case scheme)", n)
	}
}

func TestQueueStatus(t *testing.T) {
	st := queue.Status{
		Keys: []queue.KeyStatus{{
			Key: "events/" + testKey, Pending: 3, PendingBytes: 900, Failed: 1, FailedBytes: 300,
			DeliveredHour: 12, OldestPendingS: 4.5, LastError: "PagerDuty answered 503",
		}},
		Pending: 3, PendingBytes: 900, Failed: 1, FailedBytes: 300, DeliveredHour: 12, OldestPendingS: 4.5, DiskBytes: 1 << 20,
	}
	const token = "local-token-0123456789"
	srv := apiServer(t, &fakeQueue{status: st}, func(o *APIOptions) { o.LocalToken = token })
	// Without the token the key is redacted; with it, whole.
	r := do(t, http.MethodGet, srv.URL+"/v1/queue/status", "")
	if r.code != http.StatusOK {
		t.Fatalf("status: %d %s", r.code, r.raw)
	}
	if bytes.Contains(r.raw, []byte(testKey)) || !bytes.Contains(r.raw, []byte(`"events/`+RedactKey(testKey)+`"`)) {
		t.Fatalf("status without the token should show the key as %s: %s", RedactKey(testKey), r.raw)
	}
	r = do(t, http.MethodGet, srv.URL+"/v1/queue/status", "", "Authorization", "Token "+token)
	var got queue.Status
	if err := json.Unmarshal(r.raw, &got); err != nil {
		t.Fatal(err)
	}
	if got.DiskBytes != st.DiskBytes || len(got.Keys) != 1 || got.Keys[0] != st.Keys[0] || got.OldestPendingS != 4.5 {
		t.Fatalf("status = %+v", got)
	}
	for _, field := range []string{`"pending":3`, `"failed":1`, `"delivered_last_hour":12`, `"oldest_pending_age_s":4.5`, `"disk_bytes":1048576`} {
		if !bytes.Contains(r.raw, []byte(field)) {
			t.Fatalf("status JSON %s lacks %s", r.raw, field)
		}
	}

	empty := apiServer(t, &fakeQueue{})
	if r := do(t, http.MethodGet, empty.URL+"/v1/queue/status", ""); !bytes.Contains(r.raw, []byte(`"keys":[]`)) {
		t.Fatalf("an empty queue's keys should be [], got %s", r.raw)
	}
	broken := apiServer(t, &fakeQueue{statusErr: errors.New("pebble: closed")})
	do(t, http.MethodGet, broken.URL+"/v1/queue/status", "").mustError(t, http.StatusInternalServerError, "could not read the queue's status: pebble: closed")
}

func TestQueueRetry(t *testing.T) {
	q := &fakeQueue{retryN: 4}
	srv := apiServer(t, q)
	for body, wantKey := range map[string]string{
		`{"routing_key":"` + testKey + `"}`: "events/" + testKey,
		`{"routing_key":"export/int_1"}`:    "export/int_1",
		`{}`:                                "",
		``:                                  "",
	} {
		r := do(t, http.MethodPost, srv.URL+"/v1/queue/retry", body)
		if r.code != http.StatusOK || string(r.raw) != "{\"retried\":4}\n" {
			t.Fatalf("retry %s: %d %s", body, r.code, r.raw)
		}
		if got := q.retryKeys[len(q.retryKeys)-1]; got != wantKey {
			t.Fatalf("retry %s: queue key %q, want %q", body, got, wantKey)
		}
	}
	do(t, http.MethodPost, srv.URL+"/v1/queue/retry", `{"routing_key":`).mustError(t, http.StatusBadRequest, `send {"routing_key": "..."} or {}`)

	closed := apiServer(t, &fakeQueue{retryErr: queue.ErrClosed})
	r := do(t, http.MethodPost, closed.URL+"/v1/queue/retry", `{}`)
	r.mustError(t, http.StatusServiceUnavailable, "shutting down")
	if r.header.Get("Retry-After") == "" {
		t.Fatal("503 without Retry-After")
	}

	full := apiServer(t, &fakeQueue{retryErr: fmt.Errorf("%w: 10 bytes free under db", queue.ErrDiskFull)})
	r = do(t, http.MethodPost, full.URL+"/v1/queue/retry", `{}`)
	r.mustError(t, http.StatusServiceUnavailable, "could not retry the failed items: the disk holding the queue is full: 10 bytes free under db")
	if r.header.Get("Retry-After") == "" {
		t.Fatal("503 without Retry-After")
	}
}

func TestHealth(t *testing.T) {
	var mu sync.Mutex
	var readyErr error = errors.New("queue store is not open yet")
	srv := apiServer(t, &fakeQueue{}, func(o *APIOptions) {
		o.Ready = func() error { mu.Lock(); defer mu.Unlock(); return readyErr }
	})
	if r := do(t, http.MethodGet, srv.URL+"/livez", ""); r.code != http.StatusOK {
		t.Fatalf("livez: %d", r.code)
	}
	do(t, http.MethodGet, srv.URL+"/readyz", "").mustError(t, http.StatusServiceUnavailable, "not ready: queue store is not open yet")
	mu.Lock()
	readyErr = nil
	mu.Unlock()
	if r := do(t, http.MethodGet, srv.URL+"/readyz", ""); r.code != http.StatusOK || r.body["status"] != "ready" {
		t.Fatalf("readyz: %d %s", r.code, r.raw)
	}
	if r := do(t, http.MethodHead, srv.URL+"/livez", ""); r.code != http.StatusOK || len(r.raw) != 0 {
		t.Fatalf("HEAD livez: %d %q", r.code, r.raw)
	}
	// No Ready func: ready.
	if r := do(t, http.MethodGet, apiServer(t, &fakeQueue{}).URL+"/readyz", ""); r.code != http.StatusOK {
		t.Fatalf("readyz without a Ready func: %d", r.code)
	}
}

func TestMethodsAndPaths(t *testing.T) {
	srv := apiServer(t, &fakeQueue{})
	for path, allow := range map[string]string{
		"/v2/enqueue":      "POST",
		"/v1/send":         "POST",
		"/v1/queue/retry":  "POST",
		"/v1/queue/status": "GET, HEAD",
		"/livez":           "GET, HEAD",
		"/readyz":          "GET, HEAD",
		"/metrics":         "GET, HEAD",
	} {
		method := http.MethodPut
		if allow == "POST" {
			method = http.MethodGet
		}
		r := do(t, method, srv.URL+path, "")
		r.mustError(t, http.StatusMethodNotAllowed, "use ")
		if r.header.Get("Allow") != allow {
			t.Fatalf("%s: Allow = %q, want %q", path, r.header.Get("Allow"), allow)
		}
	}
	do(t, http.MethodPost, srv.URL+"/v2/enqueue/extra", "{}").mustError(t, http.StatusNotFound, "no such endpoint /v2/enqueue/extra")
	do(t, http.MethodGet, srv.URL+"/metrics", "").mustError(t, http.StatusNotFound, "metrics are not served")
}

func TestMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	srv := apiServer(t, &fakeQueue{}, func(o *APIOptions) {
		o.Registerer = reg
		o.Metrics = promhttp.HandlerFor(reg, promhttp.HandlerOpts{})
	})
	do(t, http.MethodPost, srv.URL+"/v2/enqueue", trigger(""))
	do(t, http.MethodPost, srv.URL+"/v2/enqueue", trigger(""))
	do(t, http.MethodPost, srv.URL+"/v2/enqueue", "{}")
	do(t, http.MethodGet, srv.URL+"/nope/1", "")
	do(t, http.MethodGet, srv.URL+"/nope/2", "")

	r := do(t, http.MethodGet, srv.URL+"/metrics", "")
	if r.code != http.StatusOK {
		t.Fatalf("metrics: %d", r.code)
	}
	for _, line := range []string{
		`courier_local_api_requests_total{code="202",path="/v2/enqueue"} 2`,
		`courier_local_api_requests_total{code="400",path="/v2/enqueue"} 1`,
		`courier_local_api_requests_total{code="404",path="other"} 2`,
	} {
		if !bytes.Contains(r.raw, []byte(line)) {
			t.Fatalf("metrics lack %s:\n%s", line, r.raw)
		}
	}

	// A second API on the same registry (a restart of the HTTP server in the
	// same process) shares the counter instead of panicking.
	api2 := NewAPI(APIOptions{Queue: &fakeQueue{}, Registerer: reg, Logger: zerolog.Nop()})
	rec := httptest.NewRecorder()
	api2.ServeHTTP(rec, httptest.NewRequestWithContext(t.Context(), http.MethodGet, "http://127.0.0.1/livez", nil))
	r = do(t, http.MethodGet, srv.URL+"/metrics", "")
	if line := `courier_local_api_requests_total{code="200",path="/livez"} 1`; !bytes.Contains(r.raw, []byte(line)) {
		t.Fatalf("metrics lack %s:\n%s", line, r.raw)
	}
}
