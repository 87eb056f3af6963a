package backend_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"courier/backend"
	"courier/backend/devserver"
	"courier/queue"
)

type queueMessage = queue.Message

// checkQueueError checks that err is what the queue's delivery actor needs
// for an answer of kind.
func checkQueueError(t *testing.T, status int, err error, kind backend.Kind, retryAfter time.Duration) {
	t.Helper()
	if err == nil {
		t.Errorf("%d: no error", status)
		return
	}
	var perm *queue.PermanentError
	var ra *queue.RetryAfterError
	isPerm, isRA, isTooLarge := errors.As(err, &perm), errors.As(err, &ra), errors.Is(err, queue.ErrTooLarge)
	switch kind {
	case backend.TooLarge:
		if !isTooLarge || isPerm || isRA {
			t.Errorf("%d: %v is not queue.ErrTooLarge alone", status, err)
		}
	case backend.Permanent:
		if !isPerm || isTooLarge || isRA {
			t.Errorf("%d: %v is not queue.Permanent alone", status, err)
		}
	case backend.Unauthorized:
		if !isRA || ra.After != backend.UnauthorizedRetry || isPerm {
			t.Errorf("%d: %v is not a RetryAfterError of %s", status, err, backend.UnauthorizedRetry)
		}
	case backend.Retryable:
		switch {
		case isPerm || isTooLarge:
			t.Errorf("%d: %v is not retryable", status, err)
		case retryAfter > 0 && (!isRA || ra.After != retryAfter):
			t.Errorf("%d: %v is not a RetryAfterError of %s", status, err, retryAfter)
		case retryAfter == 0 && isRA:
			t.Errorf("%d: %v asks to retry after %s, without a Retry-After", status, err, ra.After)
		}
	}
	var e *backend.Error
	if !errors.As(err, &e) || e.Kind != kind {
		t.Errorf("%d: %v does not carry the *backend.Error of kind %s", status, err, kind)
	}
}

func msgs(seq uint64, payloads ...string) []queue.Message {
	out := make([]queue.Message, len(payloads))
	for i, p := range payloads {
		out[i] = queue.Message{Key: "k", Store: "0123456789abcdef", Seq: seq + uint64(i), EnqueuedAt: time.Now(), Payload: []byte(p)}
	}
	return out
}

func TestSinkUploads(t *testing.T) {
	r := newRig(t, devserver.Options{})
	ctx := ctxT(t)
	sink := r.c.Sink()

	batch := msgs(5,
		`{"integration":"int_1","model":"commit","id":"git:a:1","command":"cmd_7","session":["int_1"],"data":{"sha":"1"}}`,
		`{}`,
		`{"model":"commit","id":"git:a:3","data":{}}`)
	if err := sink.Deliver(ctx, "export/int_1", batch); err != nil {
		t.Fatal(err)
	}
	ups, err := r.f.Admin.Uploads(ctx, devserver.UploadFilter{RoutingKey: "export/int_1"})
	if err != nil || len(ups) != 1 {
		t.Fatalf("uploads = %+v, %v", ups, err)
	}
	up := ups[0]
	if up.BatchID != "export/int_1:0123456789abcdef:5-7" || up.CommandID != "cmd_7" || up.Count != 3 {
		t.Errorf("upload = %+v", up)
	}

	// The lines are exactly what queue.DirSink writes for the same batch.
	dir := t.TempDir()
	if err := (queue.DirSink{Dir: dir}).Deliver(ctx, "export/int_1", batch); err != nil {
		t.Fatal(err)
	}
	files, _ := filepath.Glob(filepath.Join(dir, "int_1", "*.ndjson"))
	if len(files) != 1 {
		t.Fatalf("DirSink wrote %v", files)
	}
	want, _ := os.ReadFile(files[0])
	var got bytes.Buffer
	for _, rec := range up.Records {
		got.Write(rec)
		got.WriteByte('\n')
	}
	if got.String() != string(want) {
		t.Errorf("uploaded lines:\n%s\nDirSink's:\n%s", got.String(), want)
	}

	// Delivered again (after a crash, say): the backend answers 200 and
	// stores nothing.
	if err := sink.Deliver(ctx, "export/int_1", batch); err != nil {
		t.Fatal(err)
	}
	st, _ := r.f.Admin.Stats(ctx)
	if st.Count("uploads", 200) != 1 {
		t.Errorf("stats = %+v", st)
	}
	if recs, _ := r.f.Admin.Records(ctx, devserver.UploadFilter{RoutingKey: "export/int_1"}); len(recs) != 3 {
		t.Errorf("%d records after a repeat", len(recs))
	}

	// No "command" (or not a string): no X-Command-Id. Indented JSON is
	// compacted onto one line.
	if err := sink.Deliver(ctx, "onboard/cmd_3", msgs(1, `{"command":5,"a":1}`, "{\n  \"b\": [1,\n 2]\n}", `{ }`, `{ "c":1}`)); err != nil {
		t.Fatal(err)
	}
	ups, _ = r.f.Admin.Uploads(ctx, devserver.UploadFilter{RoutingKey: "onboard/cmd_3"})
	if len(ups) != 1 || ups[0].CommandID != "" || string(ups[0].Records[1]) != `{"seq":2,"b":[1,2]}` ||
		string(ups[0].Records[2]) != `{"seq":3}` || string(ups[0].Records[3]) != `{"seq":4,"c":1}` { // (the admin API compacts)
		t.Errorf("uploads = %+v", ups)
	}

	// A record that is not a JSON object is refused before sending.
	const pdKey = "R0UT1NGKEY0123456789abcdefghijkl"
	for _, bad := range []string{`[1]`, `"x"`, `{`, "{\n"} {
		err := sink.Deliver(ctx, "events/"+pdKey, msgs(1, `{}`, bad))
		var perm *queue.PermanentError
		if !errors.As(err, &perm) {
			t.Errorf("payload %q: %v", bad, err)
		}
		if err != nil && strings.Contains(err.Error(), pdKey) {
			t.Errorf("error holds the PagerDuty routing key: %v", err)
		}
	}
	if ups, _ := r.f.Admin.Uploads(ctx, devserver.UploadFilter{RoutingKey: "events/" + pdKey}); len(ups) != 0 {
		t.Errorf("refused batches were sent: %+v", ups)
	}
	if err := sink.Deliver(ctx, "events/rk", nil); err != nil {
		t.Errorf("empty batch: %v", err)
	}

	// The devserver refuses a routing key outside the protocol: permanent.
	err = sink.Deliver(ctx, "stuff", msgs(1, `{}`))
	checkQueueError(t, 400, err, backend.Permanent, 0)
}

func TestSinkHalvesOnTooLarge(t *testing.T) {
	r := newRig(t, devserver.Options{MaxUploadBytes: 2048})
	ctx := ctxT(t)
	big := `{"data":"` + strings.Repeat("x", 1500) + `"}`
	// Compressed, this is small; decompressed it is over the limit.
	err := r.c.Sink().Deliver(ctx, "export/i", msgs(1, big, big))
	checkQueueError(t, 413, err, backend.TooLarge, 0)
	if err := r.c.Sink().Deliver(ctx, "export/i", msgs(1, big)); err != nil {
		t.Fatalf("half the batch: %v", err)
	}
}

func TestSinkResults(t *testing.T) {
	r := newRig(t, devserver.Options{})
	ctx := ctxT(t)
	sink := r.c.Sink()
	a, b := r.command(t, "export"), r.command(t, "cancel")
	fin := time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)
	payload := func(id string, res backend.Result) string {
		p, err := backend.EncodeResult(id, res)
		if err != nil {
			t.Fatal(err)
		}
		return string(p)
	}
	okA := payload(a.ID, backend.Result{Status: backend.StatusSucceeded, StartedAt: fin.Add(-time.Second), FinishedAt: fin, Output: json.RawMessage(`{"valid":true}`)})
	okB := payload(b.ID, backend.Result{Status: backend.StatusCancelled, FinishedAt: fin})
	unknown := payload("cmd_nope", backend.Result{Status: backend.StatusSucceeded, FinishedAt: fin})

	err := sink.Deliver(ctx, backend.ResultsKey, msgs(1, okA, unknown, `{"x":1}`, okB))
	var perm *queue.PermanentError
	if !errors.As(err, &perm) || !strings.Contains(err.Error(), "cmd_nope") || !strings.Contains(err.Error(), "message 3") ||
		!strings.Contains(err.Error(), "2 of 4") {
		t.Fatalf("batch with refused results: %v", err)
	}
	// The refusals did not stop the others.
	for _, id := range []string{a.ID, b.ID} {
		if _, err := r.f.Admin.Result(ctx, id); err != nil {
			t.Errorf("result of %s: %v", id, err)
		}
	}
	ra, _ := r.f.Admin.Result(ctx, a.ID)
	if ra.Status != "succeeded" || string(ra.Output) != `{"valid":true}` || ra.StartedAt == nil || !ra.FinishedAt.Equal(fin) {
		t.Errorf("result of a = %+v", ra)
	}

	// A retryable answer stops the batch; it is sent again whole, and what
	// was accepted is a no-op.
	r.fault(t, devserver.EndpointResults, devserver.Fault{Status: 503, RetryAfter: 9})
	err = sink.Deliver(ctx, backend.ResultsKey, msgs(1, okA, okB))
	checkQueueError(t, 503, err, backend.Retryable, 9*time.Second)
	if err := sink.Deliver(ctx, backend.ResultsKey, msgs(1, okA, okB)); err != nil {
		t.Fatal(err)
	}
	res, _ := r.f.Admin.Results(ctx, r.agentID)
	if len(res) != 2 || res[0].Repeats != 1 || res[1].Repeats != 1 {
		t.Errorf("results = %+v", res)
	}

	r.fault(t, devserver.EndpointResults, devserver.Fault{Status: 401})
	checkQueueError(t, 401, sink.Deliver(ctx, backend.ResultsKey, msgs(1, okA)), backend.Unauthorized, 0)
}

func TestUnauthorizedLogsOncePerMinute(t *testing.T) {
	r := newRig(t, devserver.Options{})
	ctx := ctxT(t)
	clock := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	backend.SetNow(r.c, func() time.Time { return clock })
	if err := r.f.Admin.Revoke(ctx, r.agentID); err != nil {
		t.Fatal(err)
	}
	const line = "the backend refused the API key (401); delivery paused, nothing is dropped; re-enroll with courier enroll"
	sink := r.c.Sink()
	for i := 0; i < 3; i++ {
		err := sink.Deliver(ctx, "export/i", msgs(1, `{}`))
		checkQueueError(t, 401, err, backend.Unauthorized, 0)
		r.noKey(t, err)
	}
	_, err := r.c.Commands(ctx, time.Second)
	if backend.KindOf(err) != backend.Unauthorized {
		t.Errorf("poll while revoked: %v", err)
	}
	if n := r.logs.Count(line); n != 1 {
		t.Fatalf("%d lines about the 401 within a minute, want 1:\n%s", n, r.logs)
	}
	if !strings.Contains(r.logs.String(), `"level":"error"`) {
		t.Errorf("the 401 line is not an error:\n%s", r.logs)
	}
	clock = clock.Add(61 * time.Second)
	_ = sink.Deliver(ctx, "export/i", msgs(1, `{}`))
	if n := r.logs.Count(line); n != 2 {
		t.Fatalf("%d lines about the 401 after a minute, want 2", n)
	}

	// Restored: delivery resumes; nothing was lost on the way.
	if err := r.f.Admin.Unrevoke(ctx, r.agentID); err != nil {
		t.Fatal(err)
	}
	if err := sink.Deliver(ctx, "export/i", msgs(1, `{}`)); err != nil {
		t.Fatal(err)
	}
}

// A store re-created under the same enrolment numbers its records from 1
// again; its batches must not be taken for the old store's and dropped.
func TestBatchIDsDifferAcrossStores(t *testing.T) {
	r := newRig(t, devserver.Options{})
	ctx := ctxT(t)
	sink := r.c.Sink()
	old := msgs(1, `{"id":"old"}`)
	old[0].Store = "0123456789abcdef"
	if err := sink.Deliver(ctx, "export/int_1", old); err != nil {
		t.Fatal(err)
	}
	fresh := msgs(1, `{"id":"new"}`)
	fresh[0].Store = "fedcba9876543210"
	if err := sink.Deliver(ctx, "export/int_1", fresh); err != nil {
		t.Fatal(err)
	}
	recs, err := r.f.Admin.Records(ctx, devserver.UploadFilter{RoutingKey: "export/int_1"})
	if err != nil || len(recs) != 2 {
		t.Fatalf("the second store's batch was dropped as a duplicate: %d records, %v", len(recs), err)
	}
}
