package events

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/rs/zerolog"

	"courier/queue"
)

// TestRoutingKeysValidatedStrictly: a key that is not printable ASCII
// without "/" gets 400 naming the character, never a 503 that clients
// retry forever; PagerDuty's own keys pass.
func TestRoutingKeysValidatedStrictly(t *testing.T) {
	q := realQueue(t)
	srv := apiServer(t, q)
	base := testKey[:31]
	for name, c := range map[string]struct{ key, want string }{
		"NUL":         {base + `\u0000`, "contains the control character U+0000 at byte 31"},
		"slash":       {"R0ut1ngK3yR0ut1ngK3yR0ut1ng/3y01", `contains "/" at byte 27`},
		"space":       {base + " ", "contains a space at byte 31"},
		"tab":         {base + `\t`, "control character U+0009"},
		"DEL":         {base + `\u007f`, "control character U+007F"},
		"non-ASCII":   {base + "é", "non-ASCII character U+00E9"},
		"v1 with NUL": {base + `\u0000`, "'service_key' contains"},
	} {
		body := `{"routing_key":"` + c.key + `","event_action":"resolve","dedup_key":"d"}`
		path := "/v2/enqueue"
		if strings.HasPrefix(name, "v1") {
			path = "/v1/send"
			body = `{"api_version":"v1","event":{"service_key":"` + c.key + `","event_type":"resolve","incident_key":"d"}}`
		}
		r := do(t, http.MethodPost, srv.URL+path, body)
		r.mustError(t, http.StatusBadRequest, c.want)
		if r.header.Get("Retry-After") != "" {
			t.Errorf("%s: 400 with Retry-After", name)
		}
	}
	if n := pending(t, q); n != 0 {
		t.Fatalf("%d invalid keys were stored", n)
	}
}

// TestEveryAcceptedKeyIsAddressableByRetry sends events with keys made of
// every printable ASCII character PagerDuty could issue, has them refused
// upstream, and retries each by the key the client used.
func TestEveryAcceptedKeyIsAddressableByRetry(t *testing.T) {
	sys := actor.NewActorSystem(actor.WithLoggerFactory(func(*actor.ActorSystem) *slog.Logger {
		return slog.New(slog.NewTextHandler(io.Discard, nil))
	}))
	refuse := queue.SinkFunc(func(context.Context, string, []queue.Message) error {
		return queue.Permanent(errors.New("PagerDuty answered 400"))
	})
	q, err := queue.Open(sys, queue.Options{Dir: t.TempDir(), Logger: zerolog.Nop(),
		Router: func(string) queue.Route { return queue.Route{Sink: refuse, MaxItems: 1} }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = q.Close(context.Background()); sys.Shutdown() })
	srv := httptest.NewServer(NewAPI(APIOptions{Queue: q, Logger: zerolog.Nop()}))
	t.Cleanup(srv.Close)

	var printable []byte
	for c := byte('!'); c <= '~'; c++ {
		if c != '/' {
			printable = append(printable, c)
		}
	}
	var keys []string
	for i := 0; i < len(printable); i += KeyLength {
		k := string(printable[i:min(i+KeyLength, len(printable))])
		keys = append(keys, k+strings.Repeat("x", KeyLength-len(k)))
	}
	for _, k := range keys {
		body, _ := json.Marshal(map[string]any{"routing_key": k, "event_action": "resolve", "dedup_key": "d"})
		if r := do(t, http.MethodPost, srv.URL+"/v2/enqueue", string(body)); r.code != http.StatusAccepted {
			t.Fatalf("key %q: %d %s", k, r.code, r.raw)
		}
	}
	waitFor(t, func() bool {
		st, err := q.Status(t.Context())
		return err == nil && st.Failed == int64(len(keys))
	}, "the events to be refused upstream")
	for _, k := range keys {
		body, _ := json.Marshal(RetryRequest{RoutingKey: k})
		r := do(t, http.MethodPost, srv.URL+"/v1/queue/retry", string(body))
		if r.code != http.StatusOK || r.body["retried"] != 1.0 {
			t.Fatalf("retry -k %q: %d %s, want 1 retried", k, r.code, r.raw)
		}
	}
}

// waitFor polls cond until it holds or the test's deadline passes.
func waitFor(t *testing.T, cond func() bool, what string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-ctx.Done():
			t.Fatalf("gave up waiting for %s", what)
		case <-tick.C:
		}
	}
}
