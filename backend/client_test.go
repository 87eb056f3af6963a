package backend_test

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"courier/backend"
	"courier/backend/devserver"
	"courier/backend/devserver/devservertest"
)

func TestEnroll(t *testing.T) {
	f := devservertest.Start(t, devserver.Options{})
	ctx := ctxT(t)
	opts := backend.Options{URL: f.URL, UserAgent: testUA, Timeout: 5 * time.Second}
	past := time.Now().Add(-time.Hour)
	if _, err := f.Admin.AddEnrollCode(ctx, "OLD", &past); err != nil {
		t.Fatal(err)
	}
	code := f.EnrollCode(t)
	resp, err := backend.Enroll(ctx, opts, enrollReq(code))
	if err != nil {
		t.Fatal(err)
	}
	agents, err := f.Admin.Agents(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := devserver.Agent{ID: resp.AgentID, EnrollCode: code, Hostname: "build-7", OS: "linux", Arch: "amd64", Version: "1.2.3",
		UserAgent: testUA, System: devserver.System{CPUs: 2, MemoryBytes: 25769803776, GitVersion: "2.39.5"}}
	got := agents[0]
	got.EnrolledAt, got.LastSeen = time.Time{}, nil
	if len(agents) != 1 || got != want {
		t.Fatalf("agent = %+v\nwant    %+v", got, want)
	}

	noReason := enrollReq(f.EnrollCode(t))
	noReason.Hostname = ""
	for _, tc := range []struct {
		name   string
		req    backend.EnrollRequest
		status int
		msg    string
	}{
		{"unknown", enrollReq("NOPE"), 401, "not known"},
		{"expired", enrollReq("OLD"), 403, "expired"},
		{"used", enrollReq(code), 409, "used already"},
		{"invalid", noReason, 400, "hostname"},
	} {
		_, err := backend.Enroll(ctx, opts, tc.req)
		var e *backend.Error
		if !errors.As(err, &e) {
			t.Fatalf("%s: %v is not an *Error", tc.name, err)
		}
		if e.Kind != backend.Permanent || backend.KindOf(err) != backend.Permanent || e.Status != tc.status || !strings.Contains(e.Message, tc.msg) {
			t.Errorf("%s: %+v; want Permanent %d with %q", tc.name, e, tc.status, tc.msg)
		}
		if !strings.Contains(err.Error(), "POST /api/v1/agent/enroll") {
			t.Errorf("%s: %q does not name the request", tc.name, err)
		}
	}

	if _, err := f.Admin.SetFaults(ctx, devserver.Faults{"enroll": {Status: 503, Count: 1, RetryAfter: 4}}); err != nil {
		t.Fatal(err)
	}
	_, err = backend.Enroll(ctx, opts, enrollReq(f.EnrollCode(t)))
	var e *backend.Error
	if !errors.As(err, &e) || e.Kind != backend.Retryable || e.RetryAfter != 4*time.Second {
		t.Errorf("enroll at 503: %+v", err)
	}
}

func TestCommandFlow(t *testing.T) {
	r := newRig(t, devserver.Options{})
	ctx := ctxT(t)
	exp := time.Date(2030, 5, 6, 7, 8, 9, 0, time.UTC)
	added, err := r.f.Admin.AddCommand(ctx, r.agentID, devserver.NewCommand{Type: backend.CommandExport,
		Params: json.RawMessage(`{"integrations":[{"id":"int_1","type":"git"}],"reprocess_historical":true}`), ExpiresAt: &exp})
	if err != nil {
		t.Fatal(err)
	}

	for i := 0; i < 2; i++ { // re-delivered until acked
		cmds, err := r.c.Commands(ctx, time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if len(cmds) != 1 {
			t.Fatalf("poll %d: %+v", i, cmds)
		}
		c := cmds[0]
		if c.ID != added.ID || c.Type != "export" || !c.CreatedAt.Equal(added.CreatedAt) || c.ExpiresAt == nil || !c.ExpiresAt.Equal(exp) ||
			string(c.Params) != `{"integrations":[{"id":"int_1","type":"git"}],"reprocess_historical":true}` {
			t.Fatalf("command = %+v (%s)", c, c.Params)
		}
	}
	if err := r.c.Ack(ctx, added.ID); err != nil {
		t.Fatal(err)
	}
	if cmds, err := r.c.Commands(ctx, time.Second); err != nil || len(cmds) != 0 {
		t.Fatalf("poll after ack = %+v, %v", cmds, err)
	}

	prog := backend.Progress{Sessions: []backend.ProgressSession{{Path: []string{"int_1", "repo:api", "commit"}, Kind: backend.SessionModel,
		Current: 120, Total: 450, State: backend.StateRunning}}}
	if err := r.c.Progress(ctx, added.ID, prog); err != nil {
		t.Fatal(err)
	}
	if err := r.c.Progress(ctx, added.ID, backend.Progress{}); err != nil {
		t.Fatalf("empty progress: %v", err)
	}
	pr, err := r.f.Admin.Progress(ctx, added.ID)
	if err != nil || len(pr) != 2 || len(pr[0].Sessions) != 1 || pr[0].Sessions[0].Total != 450 || pr[0].Sessions[0].Kind != "model" || len(pr[1].Sessions) != 0 {
		t.Fatalf("progress = %+v, %v", pr, err)
	}

	lines := [][]byte{[]byte(`{"level":"info","command":"` + added.ID + `","message":"start"}`), []byte(`{"level":"info","message":"end"}`)}
	if err := r.c.Logs(ctx, added.ID, lines); err != nil {
		t.Fatal(err)
	}
	lb, err := r.f.Admin.Logs(ctx, added.ID)
	if err != nil || len(lb) != 1 || lb[0].Count != 2 || string(lb[0].Lines[1]) != string(lines[1]) {
		t.Fatalf("logs = %+v, %v", lb, err)
	}

	zone := time.FixedZone("CEST", 2*3600)
	res := backend.Result{Status: backend.StatusSucceeded, StartedAt: time.Date(2026, 1, 1, 2, 0, 0, 0, zone),
		FinishedAt: time.Date(2026, 1, 1, 2, 0, 9, 0, zone), Output: json.RawMessage(`{"integrations":[]}`)}
	if err := r.c.Result(ctx, added.ID, res); err != nil {
		t.Fatal(err)
	}
	if err := r.c.Result(ctx, added.ID, backend.Result{Status: backend.StatusFailed, FinishedAt: time.Now(), Error: "late"}); err != nil {
		t.Fatalf("repeated result: %v", err)
	}
	got, err := r.f.Admin.Result(ctx, added.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.Status != "succeeded" || got.Repeats != 1 || string(got.Output) != `{"integrations":[]}` ||
		!strings.Contains(string(got.Body), `"started_at":"2026-01-01T00:00:00Z","finished_at":"2026-01-01T00:00:09Z"`) {
		t.Fatalf("result = %+v (%s)", got, got.Body)
	}

	if err := r.c.Heartbeat(ctx, backend.Heartbeat{Version: "1.2.3", UptimeS: 61,
		Queue: backend.QueueStats{PendingItems: 3, PendingBytes: 300, FailedItems: 1}}); err != nil {
		t.Fatal(err)
	}
	hbs, err := r.f.Admin.Heartbeats(ctx, r.agentID)
	if err != nil || len(hbs) != 1 || hbs[0].UptimeS != 61 || hbs[0].Queue != (devserver.HeartbeatQueue{PendingItems: 3, PendingBytes: 300, FailedItems: 1}) ||
		hbs[0].Running == nil || len(hbs[0].Running) != 0 {
		t.Fatalf("heartbeats = %+v, %v", hbs, err)
	}

	recs := [][]byte{[]byte(`{"seq":1,"model":"commit","id":"a"}`), []byte(`{"seq":2,"model":"commit","id":"b"}`)}
	if err := r.c.Upload(ctx, "export/int_1", "export/int_1:0123456789abcdef:1-2", added.ID, recs); err != nil {
		t.Fatal(err)
	}
	if err := r.c.Upload(ctx, "events/abc", "events/abc:0123456789abcdef:1-1", "", recs[:1]); err != nil {
		t.Fatal(err)
	}
	ups, err := r.f.Admin.Uploads(ctx, devserver.UploadFilter{})
	if err != nil || len(ups) != 2 || ups[0].CommandID != added.ID || ups[1].CommandID != "" || ups[0].Count != 2 ||
		string(ups[0].Records[1]) != string(recs[1]) || ups[1].RoutingKey != "events/abc" {
		t.Fatalf("uploads = %+v, %v", ups, err)
	}
}

func TestPoll(t *testing.T) {
	r := newRig(t, devserver.Options{})
	ctx := ctxT(t)
	// The request's timeout is the wait plus Options.Timeout: a quiet poll
	// longer than Timeout is not cut short.
	short := r.opts
	short.Timeout = 300 * time.Millisecond
	c, err := backend.New(short)
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseIdleConnections()
	start := time.Now()
	cmds, err := c.Commands(ctx, 1500*time.Millisecond) // rounds up to 2 s
	if err != nil || len(cmds) != 0 {
		t.Fatalf("quiet poll = %+v, %v", cmds, err)
	}
	if d := time.Since(start); d < 1900*time.Millisecond || d > 6*time.Second {
		t.Errorf("quiet poll of 1.5 s took %s", d)
	}

	// A command added during the poll ends it early.
	type polled struct {
		cmds []backend.Command
		err  error
	}
	done := make(chan polled, 1)
	start = time.Now()
	go func() {
		cmds, err := r.c.Commands(ctx, time.Hour) // clamped to 60 s
		done <- polled{cmds, err}
	}()
	time.Sleep(200 * time.Millisecond)
	want := r.command(t, backend.CommandValidateConfig)
	p := <-done
	if p.err != nil || len(p.cmds) != 1 || p.cmds[0].ID != want.ID || string(p.cmds[0].Params) != "{}" {
		t.Fatalf("woken poll = %+v, %v", p.cmds, p.err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("woken poll took %s", d)
	}

	// The caller's cancellation ends a poll, and says so.
	cctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancel()
	if err := r.c.Ack(ctx, want.ID); err != nil {
		t.Fatal(err)
	}
	_, err = r.c.Commands(cctx, 30*time.Second)
	if !errors.Is(err, context.DeadlineExceeded) || backend.KindOf(err) != backend.Retryable {
		t.Errorf("poll past the caller's deadline: %v", err)
	}
}

// TestClassification runs the error table against the devserver's faults:
// every status, through the direct call (Kind) and through the Sink (the
// queue's errors).
func TestClassification(t *testing.T) {
	r := newRig(t, devserver.Options{})
	ctx := ctxT(t)
	cases := []struct {
		status     int
		retryAfter int
		kind       backend.Kind
	}{
		{400, 0, backend.Permanent},
		{401, 0, backend.Unauthorized},
		{403, 0, backend.Permanent},
		{404, 0, backend.Permanent},
		{408, 0, backend.Retryable},
		{409, 0, backend.Permanent},
		{413, 0, backend.TooLarge},
		{422, 0, backend.Permanent},
		{429, 3, backend.Retryable},
		{429, 0, backend.Retryable},
		{500, 0, backend.Retryable},
		{502, 0, backend.Retryable},
		{503, 2, backend.Retryable},
		{503, 0, backend.Retryable},
		{504, 0, backend.Retryable},
	}
	sink := r.c.Sink()
	for _, tc := range cases {
		msg := "fault " + http.StatusText(tc.status)
		r.fault(t, devserver.EndpointUploads, devserver.Fault{Status: tc.status, RetryAfter: tc.retryAfter, Error: msg})
		err := r.c.Upload(ctx, "export/i", "export/i:0123456789abcdef:1-1", "", [][]byte{[]byte(`{"seq":1}`)})
		var e *backend.Error
		if !errors.As(err, &e) {
			t.Fatalf("%d: %v is not an *Error", tc.status, err)
		}
		if e.Kind != tc.kind || backend.KindOf(err) != tc.kind || e.Status != tc.status || e.Message != msg ||
			e.RetryAfter != time.Duration(tc.retryAfter)*time.Second {
			t.Errorf("%d: %+v, want kind %s, retry after %ds", tc.status, e, tc.kind, tc.retryAfter)
		}
		r.noKey(t, err)

		// The same answer through the queue's sink.
		r.fault(t, devserver.EndpointUploads, devserver.Fault{Status: tc.status, RetryAfter: tc.retryAfter, Error: msg})
		err = sink.Deliver(ctx, "export/i", []queueMessage{{Seq: 1, Payload: []byte(`{}`)}})
		checkQueueError(t, tc.status, err, tc.kind, time.Duration(tc.retryAfter)*time.Second)
	}

	// Polls and results go through the same table.
	r.fault(t, devserver.EndpointCommands, devserver.Fault{Status: 503, RetryAfter: 5})
	_, err := r.c.Commands(ctx, time.Second)
	if e := asError(t, err); e.Kind != backend.Retryable || e.RetryAfter != 5*time.Second {
		t.Errorf("poll at 503: %+v", e)
	}
	r.fault(t, devserver.EndpointResults, devserver.Fault{Status: 422})
	if err := r.c.Result(ctx, "cmd_1", backend.Result{Status: "succeeded", FinishedAt: time.Now()}); backend.KindOf(err) != backend.Permanent {
		t.Errorf("result at 422: %v", err)
	}
	// A Retry-After too far away is capped.
	r.fault(t, devserver.EndpointAck, devserver.Fault{Status: 429, RetryAfter: 86400})
	if e := asError(t, r.c.Ack(ctx, "cmd_1")); e.RetryAfter != backend.MaxRetryAfter {
		t.Errorf("Retry-After of a day: %s", e.RetryAfter)
	}
	// Unknown command: the devserver's 404 is permanent.
	if err := r.c.Ack(ctx, "cmd_nope"); backend.KindOf(err) != backend.Permanent {
		t.Errorf("ack of an unknown command: %v", err)
	}
}

func TestNetworkErrors(t *testing.T) {
	r := newRig(t, devserver.Options{})
	ctx := ctxT(t)

	// No answer in time: retryable, and says so.
	quick := r.opts
	quick.Timeout = 200 * time.Millisecond
	c, err := backend.New(quick)
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseIdleConnections()
	r.fault(t, devserver.EndpointHeartbeat, devserver.Fault{DelayMS: 2000})
	err = c.Heartbeat(ctx, backend.Heartbeat{Version: "1"})
	e := asError(t, err)
	if e.Kind != backend.Retryable || e.Status != 0 || !strings.Contains(e.Message, "no answer within 200ms") || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("timeout: %+v", e)
	}
	checkQueueError(t, 0, queueErrorOf(r, ctx, c), backend.Retryable, 0)

	// Nobody listening: retryable.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	gone := r.opts
	gone.URL = "http://" + addr
	c2, err := backend.New(gone)
	if err != nil {
		t.Fatal(err)
	}
	err = c2.Ack(ctx, "cmd_1")
	e = asError(t, err)
	if e.Kind != backend.Retryable || e.Status != 0 || e.Err == nil || !strings.Contains(e.Message, "refused") ||
		!strings.HasPrefix(err.Error(), "POST /api/v1/agent/commands/cmd_1/ack: ") {
		t.Errorf("connection refused: %+v (%v)", e, err)
	}
	err = c2.Sink().Deliver(ctx, "export/i", []queueMessage{{Seq: 1, Payload: []byte(`{}`)}})
	checkQueueError(t, 0, err, backend.Retryable, 0)
}

func queueErrorOf(r *rig, ctx context.Context, c *backend.Client) error {
	_, _ = r.f.Admin.SetFaults(ctx, devserver.Faults{devserver.EndpointUploads: {DelayMS: 2000, Count: 1}})
	return c.Sink().Deliver(ctx, "export/i", []queueMessage{{Seq: 1, Payload: []byte(`{}`)}})
}

func asError(t *testing.T, err error) *backend.Error {
	t.Helper()
	var e *backend.Error
	if !errors.As(err, &e) {
		t.Fatalf("%v (%T) is not an *Error", err, err)
	}
	return e
}

func TestNew(t *testing.T) {
	const key = "sekrit-key-123"
	if _, err := backend.New(backend.Options{URL: "http://127.0.0.1:1"}); err == nil {
		t.Error("New without an API key: no error")
	}
	for _, u := range []string{"", "ftp://x", "http://", "http://user:pw@x", "http://x/?q=1", "::"} {
		if _, err := backend.New(backend.Options{URL: u, APIKey: key}); err == nil {
			t.Errorf("URL %q: no error", u)
		} else if strings.Contains(err.Error(), key) {
			t.Errorf("URL %q: error holds the key", u)
		}
	}
	for _, k := range []string{"bad\nkey", "bad key"} {
		_, err := backend.New(backend.Options{URL: "http://x", APIKey: k})
		if err == nil || strings.Contains(err.Error(), k) {
			t.Errorf("key %q: %v", k, err)
		}
	}
	if _, err := backend.New(backend.Options{URL: "http://x", APIKey: key, UserAgent: "courier/1\n"}); err == nil {
		t.Error("user agent with a newline: no error")
	}
}

func TestKindString(t *testing.T) {
	for k, want := range map[backend.Kind]string{backend.Retryable: "retryable", backend.Permanent: "permanent",
		backend.Unauthorized: "unauthorized", backend.TooLarge: "too large", backend.Kind(9): "Kind(9)"} {
		if k.String() != want {
			t.Errorf("%d = %q", int(k), k.String())
		}
	}
	if backend.KindOf(errors.New("x")) != backend.Retryable {
		t.Error("KindOf(plain error) is not Retryable")
	}
}
