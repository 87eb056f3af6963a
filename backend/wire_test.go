package backend_test

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/rs/zerolog"

	"courier/backend"
	"courier/internal/exporttest"
	"courier/queue"
)

// captured is one request as a raw server saw it.
type captured struct {
	method, path, query string
	header              http.Header
	body                []byte
}

// recorder is a raw HTTP server that records every request and answers
// with answer(r) (204 by default).
type recorder struct {
	*httptest.Server
	mu     sync.Mutex
	reqs   []captured
	answer func(w http.ResponseWriter, r *http.Request)
}

func newRecorder(t *testing.T, answer func(w http.ResponseWriter, r *http.Request)) *recorder {
	rec := &recorder{answer: answer}
	rec.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		rec.mu.Lock()
		rec.reqs = append(rec.reqs, captured{r.Method, r.URL.Path, r.URL.RawQuery, r.Header.Clone(), b})
		rec.mu.Unlock()
		if rec.answer != nil {
			rec.answer(w, r)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(rec.Close)
	return rec
}

func (rec *recorder) last(t *testing.T) captured {
	t.Helper()
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if len(rec.reqs) == 0 {
		t.Fatal("no request")
	}
	return rec.reqs[len(rec.reqs)-1]
}

func (rec *recorder) n() int {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	return len(rec.reqs)
}

const wireKey = "k3y-Wire-0123456789abcdefghijkl"

func wireClient(t *testing.T, url string, logs io.Writer) *backend.Client {
	t.Helper()
	if logs == nil {
		logs = io.Discard
	}
	c, err := backend.New(backend.Options{URL: url, APIKey: wireKey, UserAgent: testUA, Timeout: 5 * time.Second,
		Logger: zerolog.New(logs).Level(zerolog.DebugLevel)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.CloseIdleConnections)
	return c
}

// wantHeaders checks headers exactly: want's values, and absent ones (""
// in want) absent.
func wantHeaders(t *testing.T, what string, h http.Header, want map[string]string) {
	t.Helper()
	for k, v := range want {
		got, present := h[http.CanonicalHeaderKey(k)]
		switch {
		case v == "" && present:
			t.Errorf("%s: %s present (%q), want absent", what, k, got)
		case v != "" && (len(got) != 1 || got[0] != v):
			t.Errorf("%s: %s = %q, want %q", what, k, got, v)
		}
	}
}

func TestWireFormat(t *testing.T) {
	rec := newRecorder(t, func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.URL.Path == "/base/api/v1/agent/commands":
			_, _ = io.WriteString(w, `{"commands":[{"id":"cmd_1","type":"cancel","created_at":"2026-01-01T00:00:00Z","params":{"command_id":"cmd_0"},"future":1},{"type":"export"}]}`)
		case strings.HasSuffix(r.URL.Path, "/enroll"):
			w.WriteHeader(http.StatusCreated)
			_, _ = io.WriteString(w, `{"agent_id":"agt_1","api_key":"new-key"}`)
		default:
			w.WriteHeader(http.StatusNoContent)
		}
	})
	ctx := ctxT(t)
	c := wireClient(t, rec.URL+"/base/", nil)
	auth := map[string]string{"Authorization": "Bearer " + wireKey, "User-Agent": testUA}
	jsonHeaders := map[string]string{"Authorization": "Bearer " + wireKey, "User-Agent": testUA,
		"Content-Type": "application/json", "Content-Encoding": ""}

	// Enroll: no bearer.
	resp, err := backend.Enroll(ctx, backend.Options{URL: rec.URL + "/base", UserAgent: testUA}, enrollReq("ABC-123"))
	if err != nil || resp != (backend.EnrollResponse{AgentID: "agt_1", APIKey: "new-key"}) {
		t.Fatalf("enroll = %+v, %v", resp, err)
	}
	got := rec.last(t)
	wantHeaders(t, "enroll", got.header, map[string]string{"Authorization": "", "User-Agent": testUA, "Content-Type": "application/json"})
	if got.method != "POST" || got.path != "/base/api/v1/agent/enroll" || string(got.body) !=
		`{"enroll_code":"ABC-123","hostname":"build-7","os":"linux","arch":"amd64","version":"1.2.3","system":{"cpus":2,"memory_bytes":25769803776,"git_version":"2.39.5"}}` {
		t.Errorf("enroll request = %s %s %s", got.method, got.path, got.body)
	}

	// Polls: wait rounded up and clamped to 1..60; an id-less command is
	// dropped; unknown fields ignored.
	for _, tc := range []struct {
		wait time.Duration
		want string
	}{{0, "wait=1"}, {300 * time.Millisecond, "wait=1"}, {1500 * time.Millisecond, "wait=2"}, {30 * time.Second, "wait=30"}, {2 * time.Minute, "wait=60"}} {
		cmds, err := c.Commands(ctx, tc.wait)
		if err != nil {
			t.Fatal(err)
		}
		got := rec.last(t)
		if got.method != "GET" || got.path != "/base/api/v1/agent/commands" || got.query != tc.want || len(got.body) != 0 {
			t.Errorf("poll(%s) = %s %s?%s", tc.wait, got.method, got.path, got.query)
		}
		wantHeaders(t, "poll", got.header, auth)
		if len(cmds) != 1 || cmds[0].ID != "cmd_1" || cmds[0].Type != "cancel" || string(cmds[0].Params) != `{"command_id":"cmd_0"}` || cmds[0].ExpiresAt != nil {
			t.Errorf("commands = %+v", cmds)
		}
	}

	if err := c.Ack(ctx, "cmd_1"); err != nil {
		t.Fatal(err)
	}
	got = rec.last(t)
	if got.method != "POST" || got.path != "/base/api/v1/agent/commands/cmd_1/ack" || len(got.body) != 0 {
		t.Errorf("ack = %s %s %q", got.method, got.path, got.body)
	}
	wantHeaders(t, "ack", got.header, auth)
	if err := c.Ack(ctx, ""); backend.KindOf(err) != backend.Permanent {
		t.Errorf("ack without id: %v", err)
	}

	zone := time.FixedZone("X", -5*3600)
	if err := c.Result(ctx, "cmd_1", backend.Result{Status: "failed", StartedAt: time.Date(2026, 1, 1, 0, 0, 0, 0, zone),
		FinishedAt: time.Date(2026, 1, 1, 0, 0, 9, 500_000_000, zone), Error: "boom", Output: json.RawMessage(`{ "n" : 1 }`)}); err != nil {
		t.Fatal(err)
	}
	got = rec.last(t)
	wantHeaders(t, "result", got.header, jsonHeaders)
	if got.path != "/base/api/v1/agent/commands/cmd_1/result" || string(got.body) !=
		`{"status":"failed","started_at":"2026-01-01T05:00:00Z","finished_at":"2026-01-01T05:00:09.5Z","error":"boom","output":{"n":1}}` {
		t.Errorf("result = %s %s", got.path, got.body)
	}
	if err := c.Result(ctx, "cmd_1", backend.Result{Status: "expired"}); err != nil {
		t.Fatal(err)
	}
	if got := rec.last(t); string(got.body) != `{"status":"expired","error":""}` {
		t.Errorf("minimal result = %s", got.body)
	}

	if err := c.Progress(ctx, "cmd_1", backend.Progress{Sessions: []backend.ProgressSession{{Path: []string{"int_1", "org:acme"}, Kind: "tracking", Current: 1, Total: 2, State: "done"}}}); err != nil {
		t.Fatal(err)
	}
	got = rec.last(t)
	wantHeaders(t, "progress", got.header, jsonHeaders)
	if got.path != "/base/api/v1/agent/commands/cmd_1/progress" || string(got.body) !=
		`{"sessions":[{"path":["int_1","org:acme"],"kind":"tracking","current":1,"total":2,"state":"done"}]}` {
		t.Errorf("progress = %s %s", got.path, got.body)
	}

	if err := c.Heartbeat(ctx, backend.Heartbeat{Version: "1.2.3", UptimeS: 5}); err != nil {
		t.Fatal(err)
	}
	got = rec.last(t)
	wantHeaders(t, "heartbeat", got.header, jsonHeaders)
	if got.path != "/base/api/v1/agent/heartbeat" || string(got.body) !=
		`{"version":"1.2.3","uptime_s":5,"running":[],"queue":{"pending_items":0,"pending_bytes":0,"failed_items":0}}` {
		t.Errorf("heartbeat = %s %s", got.path, got.body)
	}

	lines := [][]byte{[]byte(`{"seq":1,"a":1}`), []byte(`{"seq":2}`)}
	for _, cmd := range []string{"cmd_9", ""} {
		if err := c.Upload(ctx, "export/int_1", "export/int_1:0123456789abcdef:1-2", cmd, lines); err != nil {
			t.Fatal(err)
		}
		got = rec.last(t)
		wantHeaders(t, "upload", got.header, map[string]string{"Authorization": "Bearer " + wireKey, "User-Agent": testUA,
			"Content-Type": "application/x-ndjson", "Content-Encoding": "gzip",
			"X-Routing-Key": "export/int_1", "X-Batch-Id": "export/int_1:0123456789abcdef:1-2", "X-Command-Id": cmd})
		if got.method != "POST" || got.path != "/base/api/v1/agent/uploads" || gunzip(t, got.body) != "{\"seq\":1,\"a\":1}\n{\"seq\":2}\n" {
			t.Errorf("upload = %s %s %q", got.method, got.path, gunzip(t, got.body))
		}
	}
	for _, bad := range [][][]byte{nil, {[]byte("{}\n{}")}, {[]byte("")}} {
		if err := c.Upload(ctx, "export/i", "export/i:0123456789abcdef:1-1", "", bad); backend.KindOf(err) != backend.Permanent {
			t.Errorf("upload of %q: %v", bad, err)
		}
	}
	if err := c.Upload(ctx, "export/i\r\nX-Evil: 1", "b", "", lines); backend.KindOf(err) != backend.Permanent {
		t.Errorf("routing key with CRLF: %v", err)
	}

	if err := c.Logs(ctx, "cmd_1", lines); err != nil {
		t.Fatal(err)
	}
	got = rec.last(t)
	wantHeaders(t, "logs", got.header, map[string]string{"Authorization": "Bearer " + wireKey, "Content-Type": "application/x-ndjson",
		"Content-Encoding": "gzip", "X-Command-Id": "cmd_1", "X-Routing-Key": "", "X-Batch-Id": ""})
	if got.path != "/base/api/v1/agent/logs" || gunzip(t, got.body) != "{\"seq\":1,\"a\":1}\n{\"seq\":2}\n" {
		t.Errorf("logs = %s %q", got.path, gunzip(t, got.body))
	}
	if err := c.Logs(ctx, "", lines); backend.KindOf(err) != backend.Permanent {
		t.Errorf("logs without command: %v", err)
	}

	// Ids are escaped into the path.
	if err := c.Ack(ctx, "cmd/1?x"); err != nil {
		t.Fatal(err)
	}
	if got := rec.last(t); got.path != "/base/api/v1/agent/commands/cmd/1?x/ack" && got.path != "/base/api/v1/agent/commands/cmd%2F1%3Fx/ack" {
		t.Errorf("escaped ack path = %q", got.path)
	}
}

func gunzip(t *testing.T, b []byte) string {
	t.Helper()
	zr, err := gzip.NewReader(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("body is not gzip: %v", err)
	}
	out, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	return string(out)
}

// TestKeyNeverLeaks points the client at a hostile server that echoes the
// Authorization header back in every way it can.
func TestKeyNeverLeaks(t *testing.T) {
	var logs exporttest.LogBuffer
	echo := newRecorder(t, func(w http.ResponseWriter, r *http.Request) {
		a := r.Header.Get("Authorization")
		switch {
		case strings.HasSuffix(r.URL.Path, "/ack"):
			w.Header().Set("Location", "https://evil.example/"+a)
			w.WriteHeader(http.StatusTemporaryRedirect)
		case strings.HasSuffix(r.URL.Path, "/heartbeat"):
			w.WriteHeader(http.StatusBadRequest)
			_, _ = io.WriteString(w, "your header: "+a)
		case strings.HasSuffix(r.URL.Path, "/commands"):
			_, _ = io.WriteString(w, `{"commands": "`+a+`"}`)
		default:
			w.WriteHeader(http.StatusUnauthorized)
			_ = json.NewEncoder(w).Encode(map[string]string{"error": "bad key " + a})
		}
	})
	c := wireClient(t, echo.URL, &logs)
	ctx := ctxT(t)
	var errs []error
	errs = append(errs, c.Ack(ctx, "cmd_1"), c.Heartbeat(ctx, backend.Heartbeat{}), c.Result(ctx, "cmd_1", backend.Result{}),
		c.Sink().Deliver(ctx, "export/i", msgs(1, `{}`)), c.Sink().Deliver(ctx, backend.ResultsKey, msgs(1, `{"command_id":"c","result":{}}`)))
	_, err := c.Commands(ctx, time.Second)
	errs = append(errs, err)
	for i, err := range errs {
		if err == nil {
			t.Errorf("call %d: no error", i)
			continue
		}
		if strings.Contains(err.Error(), wireKey) {
			t.Errorf("call %d: error holds the key: %v", i, err)
		}
		var e *backend.Error
		if errors.As(err, &e) && (strings.Contains(e.Message, wireKey) || strings.Contains(e.Error(), wireKey)) {
			t.Errorf("call %d: *Error holds the key: %+v", i, e)
		}
	}
	if !strings.Contains(errs[0].Error(), "redirected to https://evil.example/Bearer [redacted]") || backend.KindOf(errs[0]) != backend.Retryable {
		t.Errorf("redirect: %v", errs[0])
	}
	if echo.n() != 6 {
		t.Errorf("%d requests: a redirect was followed?", echo.n())
	}
	if strings.Contains(logs.String(), wireKey) {
		t.Errorf("logs hold the key:\n%s", logs.String())
	}
	if !strings.Contains(logs.String(), `"status":401`) {
		t.Errorf("no debug lines were logged, so the check above proves little:\n%s", logs.String())
	}
}

func TestTLS(t *testing.T) {
	ts := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(w, `{"commands":[]}`)
	}))
	ts.Config.ErrorLog = log.New(io.Discard, "", 0) // the refused handshake is expected
	ts.StartTLS()
	defer ts.Close()
	ca := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ts.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx := ctxT(t)
	opts := backend.Options{URL: ts.URL, APIKey: wireKey, UserAgent: testUA}

	c, err := backend.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseIdleConnections()
	_, err = c.Commands(ctx, time.Second)
	if e := asError(t, err); e.Kind != backend.Retryable || !strings.Contains(e.Message, "certificate") {
		t.Errorf("untrusted certificate: %v", err)
	}

	opts.CAFile = ca
	c2, err := backend.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	defer c2.CloseIdleConnections()
	if _, err := c2.Commands(ctx, time.Second); err != nil {
		t.Errorf("with the CA file: %v", err)
	}

	for name, content := range map[string]string{"empty.pem": "", "junk.pem": "not a certificate"} {
		p := filepath.Join(t.TempDir(), name)
		_ = os.WriteFile(p, []byte(content), 0o600)
		opts.CAFile = p
		if _, err := backend.New(opts); err == nil {
			t.Errorf("CA file %s: no error", name)
		}
	}
	opts.CAFile = filepath.Join(t.TempDir(), "missing.pem")
	if _, err := backend.New(opts); err == nil {
		t.Error("missing CA file: no error")
	}
}

func TestGarbledAnswer(t *testing.T) {
	rec := newRecorder(t, func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, `<html>proxy</html>`) })
	_, err := wireClient(t, rec.URL, nil).Commands(ctxT(t), time.Second)
	if e := asError(t, err); e.Kind != backend.Retryable || e.Status != 200 {
		t.Errorf("HTML answer to a poll: %+v", e)
	}
	bad := newRecorder(t, func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusCreated)
		_, _ = io.WriteString(w, `{"agent_id":"agt_1"}`)
	})
	_, err = backend.Enroll(ctxT(t), backend.Options{URL: bad.URL}, enrollReq("x"))
	if backend.KindOf(err) != backend.Permanent || !strings.Contains(err.Error(), "api_key") {
		t.Errorf("enroll answer without a key: %v", err)
	}
	// An error answer that is not {"error"}: its text, or the status.
	text := newRecorder(t, func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Retry-After", time.Now().Add(90*time.Second).UTC().Format(http.TimeFormat))
		w.WriteHeader(http.StatusBadGateway)
		_, _ = io.WriteString(w, "  upstream down \n")
	})
	e := asError(t, wireClient(t, text.URL, nil).Ack(ctxT(t), "c"))
	if e.Message != "upstream down" || e.RetryAfter < 80*time.Second || e.RetryAfter > 90*time.Second {
		t.Errorf("text answer: %+v", e)
	}
}

func TestForBackoff(t *testing.T) {
	if backend.ForBackoff(nil) != nil {
		t.Error("ForBackoff(nil) != nil")
	}
	for kind, permanent := range map[backend.Kind]bool{backend.Permanent: true, backend.TooLarge: true, backend.Retryable: false, backend.Unauthorized: false} {
		err := backend.ForBackoff(&backend.Error{Kind: kind, Message: "x"})
		var p *backoff.PermanentError
		if errors.As(err, &p) != permanent {
			t.Errorf("%s: backoff.Permanent = %v", kind, !permanent)
		}
		var e *backend.Error
		if !errors.As(err, &e) || e.Kind != kind {
			t.Errorf("%s: the *Error is lost", kind)
		}
	}
	// backoff.Retry stops at once on a permanent error.
	calls := 0
	err := backoff.Retry(func() error {
		calls++
		return backend.ForBackoff(&backend.Error{Kind: backend.Permanent, Message: "no"})
	}, backoff.WithMaxRetries(backoff.NewConstantBackOff(time.Millisecond), 5))
	if calls != 1 || backend.KindOf(err) != backend.Permanent {
		t.Errorf("backoff.Retry: %d calls, %v", calls, err)
	}
}

func TestEncodeResult(t *testing.T) {
	p, err := backend.EncodeResult("cmd_1", backend.Result{Status: "succeeded", FinishedAt: time.Date(2026, 1, 1, 1, 0, 0, 0, time.FixedZone("", 3600))})
	if err != nil {
		t.Fatal(err)
	}
	if string(p) != `{"command_id":"cmd_1","result":{"status":"succeeded","finished_at":"2026-01-01T00:00:00Z","error":""}}` {
		t.Errorf("EncodeResult = %s", p)
	}
	if _, err := backend.EncodeResult("c", backend.Result{Output: json.RawMessage(`{`)}); err == nil {
		t.Error("invalid output: no error")
	}
	if got := backend.BatchID("export/int_1", "0123456789abcdef", 5, 7); got != "export/int_1:0123456789abcdef:5-7" {
		t.Errorf("BatchID = %q", got)
	}
	var _ queue.Sink = (&backend.Client{}).Sink()
}
