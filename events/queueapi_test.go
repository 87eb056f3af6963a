package events

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/rs/zerolog"

	"courier/internal/redact"
	"courier/queue"
)

// TestQueueItemRoutes lists, shows and purges dead letters through the
// local API against the real queue, with routing keys redacted for a
// caller without the local token and whole for one with it.
func TestQueueItemRoutes(t *testing.T) {
	sys := actor.NewActorSystem(actor.WithLoggerFactory(func(*actor.ActorSystem) *slog.Logger {
		return slog.New(slog.NewTextHandler(io.Discard, nil))
	}))
	refuse := queue.SinkFunc(func(context.Context, string, []queue.Message) error {
		return queue.PermanentStatus(400, errors.New("PagerDuty answered 400 Bad Request: Invalid routing key"))
	})
	q, err := queue.Open(sys, queue.Options{Dir: t.TempDir(), Logger: zerolog.Nop(),
		Router: func(string) queue.Route { return queue.Route{Sink: refuse, MaxItems: 1} }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = q.Close(context.Background()); sys.Shutdown() })
	srv := httptest.NewServer(NewAPI(APIOptions{Queue: q, Logger: zerolog.Nop(), LocalToken: "local-secret"}))
	t.Cleanup(srv.Close)
	tok := []string{"Authorization", "Token local-secret"}

	keyA, keyB := strings.Repeat("A", KeyLength), strings.Repeat("B", KeyLength)
	for i, k := range []string{keyA, keyA, keyA, keyB, keyB} {
		body, _ := json.Marshal(map[string]any{"routing_key": k, "event_action": "trigger",
			"payload": map[string]any{"summary": fmt.Sprint("s", i), "source": "h", "severity": "error"}})
		if r := do(t, http.MethodPost, srv.URL+"/v2/enqueue", string(body)); r.code != http.StatusAccepted {
			t.Fatalf("enqueue: %d %s", r.code, r.raw)
		}
	}
	waitFor(t, func() bool { st, err := q.Status(t.Context()); return err == nil && st.Failed == 5 }, "5 dead letters")

	list := func(query string, headers ...string) []map[string]any {
		t.Helper()
		var out []map[string]any
		next := ""
		for range 10 {
			u := srv.URL + "/v1/queue/items?limit=2&" + query
			if next != "" {
				u += "&after=" + url.QueryEscape(next)
			}
			r := do(t, http.MethodGet, u, "", headers...)
			if r.code != http.StatusOK {
				t.Fatalf("GET %s: %d %s", u, r.code, r.raw)
			}
			var page ItemsResponse
			if err := json.Unmarshal(r.raw, &page); err != nil {
				t.Fatal(err)
			}
			for _, it := range r.body["items"].([]any) {
				out = append(out, it.(map[string]any))
			}
			if next = page.Next; next == "" {
				return out
			}
			if strings.Contains(next, keyA) || strings.Contains(next, keyB) {
				if len(headers) == 0 {
					t.Fatalf("a cursor without the token holds a whole key: %s", next)
				}
			}
		}
		t.Fatal("paging does not end")
		return nil
	}
	items := list("")
	if len(items) != 5 {
		t.Fatalf("listed %d dead letters, want 5: %v", len(items), items)
	}
	redA := "events/" + redact.Key(keyA)
	if items[0]["key"] != redA || items[0]["status_code"] != 400.0 || items[0]["attempts"] != 1.0 ||
		!strings.Contains(items[0]["reason"].(string), "Invalid routing key") || items[0]["state"] != "failed" {
		t.Fatalf("dead letter without the token: %v", items[0])
	}
	if whole := list("", tok...); whole[0]["key"] != "events/"+keyA || len(whole) != 5 {
		t.Fatalf("with the local token: %v", whole[0])
	}
	if one := list("routing_key=" + url.QueryEscape(redact.Key(keyB))); len(one) != 2 {
		t.Fatalf("one key by its redacted form: %v", one)
	}

	seqA := uint64(items[0]["seq"].(float64))
	r := do(t, http.MethodGet, fmt.Sprintf("%s/v1/queue/item?routing_key=%s&seq=%d", srv.URL, keyA, seqA), "")
	if r.code != http.StatusOK || strings.Contains(string(r.raw), keyA) || !strings.Contains(string(r.raw), redact.Key(keyA)) ||
		!strings.Contains(string(r.raw), `"summary":"s0"`) {
		t.Fatalf("show without the token: %d %s", r.code, r.raw)
	}
	r = do(t, http.MethodGet, fmt.Sprintf("%s/v1/queue/item?routing_key=%s&seq=%d", srv.URL, keyA, seqA), "", tok...)
	if r.code != http.StatusOK || !strings.Contains(string(r.raw), `"routing_key":"`+keyA+`"`) {
		t.Fatalf("show with the token: %d %s", r.code, r.raw)
	}

	bad := []struct {
		method, path, body string
		code               int
		says               string
	}{
		{"GET", "/v1/queue/items?routing_key=" + strings.Repeat("C", KeyLength), "", 404, "no routing key in the queue matches"},
		{"GET", "/v1/queue/items?state=done", "", 400, "failed or pending"},
		{"GET", "/v1/queue/items?limit=0", "", 400, "limit"},
		{"GET", "/v1/queue/items?after=nonsense", "", 400, "after"},
		{"GET", "/v1/queue/item?routing_key=" + keyA + "&seq=999", "", 404, "no item with seq 999"},
		{"GET", "/v1/queue/item?routing_key=" + keyA, "", 400, "seq"},
		{"POST", "/v1/queue/purge", `{}`, 400, `or \"all\": true`},
		{"POST", "/v1/queue/purge", `{"routing_key":"` + keyA + `","all":true}`, 400, "give one"},
		{"POST", "/v1/queue/purge", `{"all":true,"seq":1}`, 400, "seq"},
		{"POST", "/v1/queue/purge", `{"all":true,"older_than":"soon"}`, 400, "older_than"},
		{"POST", "/v1/queue/purge", `{"routing_key":"` + strings.Repeat("C", KeyLength) + `"}`, 404, "no routing key"},
		{"POST", "/v1/queue/purge", `{"key":"x"}`, 400, "unknown field"},
	}
	for _, b := range bad {
		r := do(t, b.method, srv.URL+b.path, b.body)
		if r.code != b.code || !strings.Contains(string(r.raw), b.says) {
			t.Errorf("%s %s %s: %d %s; want %d saying %q", b.method, b.path, b.body, r.code, r.raw, b.code, b.says)
		}
	}
	if st, _ := q.Status(t.Context()); st.Failed != 5 {
		t.Fatalf("bad requests dropped something: %d dead letters left", st.Failed)
	}

	r = do(t, http.MethodPost, srv.URL+"/v1/queue/purge", fmt.Sprintf(`{"routing_key":%q,"seq":%d}`, redA, seqA))
	if r.code != http.StatusOK || r.body["dropped"] != 1.0 {
		t.Fatalf("purge one: %d %s", r.code, r.raw)
	}
	r = do(t, http.MethodPost, srv.URL+"/v1/queue/purge", `{"all":true,"older_than":"0s"}`)
	if r.code != http.StatusOK || r.body["dropped"] != 4.0 || strings.Contains(string(r.raw), keyB) ||
		!strings.Contains(string(r.raw), redact.Key(keyB)) {
		t.Fatalf("purge all: %d %s", r.code, r.raw)
	}
	if st, _ := q.Status(t.Context()); st.Failed != 0 || st.FailedBytes != 0 {
		t.Fatalf("after purging: %+v", st)
	}
}
