package devserver_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"courier/backend/devserver"
	"courier/backend/devserver/devservertest"
)

func TestEnroll(t *testing.T) {
	f := devservertest.Start(t, devserver.Options{})
	ctx := ctxT(t)
	past := time.Now().Add(-time.Minute)
	if _, err := f.Admin.AddEnrollCode(ctx, "OLD-1", &past); err != nil {
		t.Fatal(err)
	}
	if _, err := f.Admin.AddEnrollCode(ctx, "GOOD-1", nil); err != nil {
		t.Fatal(err)
	}
	if _, err := f.Admin.AddEnrollCode(ctx, "GOOD-1", nil); err == nil {
		t.Fatal("adding an existing code: no error")
	}
	post := func(body any, mod func(*req)) answer {
		r := req{method: "POST", path: "/api/v1/agent/enroll", body: mustJSON(t, body)}
		if mod != nil {
			mod(&r)
		}
		return send(t, f, r)
	}

	a := post(enrollBody("NOPE"), nil)
	wantStatus(t, "unknown code", a, http.StatusUnauthorized)
	a.errorText(t)
	wantStatus(t, "expired code", post(enrollBody("OLD-1"), nil), http.StatusForbidden)

	missing := enrollBody("GOOD-1")
	delete(missing, "hostname")
	delete(missing, "system")
	a = post(missing, nil)
	wantStatus(t, "missing fields", a, http.StatusBadRequest)
	if msg := a.errorText(t); !strings.Contains(msg, "hostname") || !strings.Contains(msg, "system") {
		t.Errorf("missing fields: %q names neither", msg)
	}
	wantStatus(t, "text body", post(enrollBody("GOOD-1"), func(r *req) { r.contentType = "text/plain" }), http.StatusBadRequest)
	wantStatus(t, "no user agent", post(enrollBody("GOOD-1"), func(r *req) { r.ua = "-" }), http.StatusBadRequest)
	wantStatus(t, "curl", post(enrollBody("GOOD-1"), func(r *req) { r.ua = "curl/8" }), http.StatusBadRequest)

	a = post(enrollBody("GOOD-1"), func(r *req) { r.contentType = "application/json; charset=utf-8" })
	wantStatus(t, "good code", a, http.StatusCreated)
	var out map[string]string
	if err := json.Unmarshal(a.body, &out); err != nil || !strings.HasPrefix(out["agent_id"], "agt_") || len(out["api_key"]) < 32 {
		t.Fatalf("enroll answer %s", a.body)
	}
	wantStatus(t, "used code", post(enrollBody("GOOD-1"), nil), http.StatusConflict)

	agents, err := f.Admin.Agents(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(agents) != 1 || agents[0].ID != out["agent_id"] || agents[0].Hostname != "build-7" || agents[0].System.CPUs != 2 ||
		agents[0].System.GitVersion != "2.39.5" || agents[0].EnrollCode != "GOOD-1" || agents[0].UserAgent != "courier/test" {
		t.Fatalf("agents = %+v", agents)
	}
	codes, err := f.Admin.EnrollCodes(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range codes {
		if c.Code == "GOOD-1" && c.UsedBy != out["agent_id"] {
			t.Errorf("GOOD-1 used by %q", c.UsedBy)
		}
	}
	// The key is stored only as a hash.
	b, err := os.ReadFile(filepath.Join(f.Dir, "state.json"))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(b), out["api_key"]) {
		t.Error("state.json holds the API key in clear")
	}
}

func TestAuth(t *testing.T) {
	f := devservertest.Start(t, devserver.Options{})
	id, key := enroll(t, f)
	hb := mustJSON(t, map[string]any{"version": "1", "uptime_s": 3, "running": []string{}, "queue": map[string]int{}})
	post := func(k string, mod func(*req)) answer {
		r := req{method: "POST", path: "/api/v1/agent/heartbeat", key: k, body: hb}
		if mod != nil {
			mod(&r)
		}
		return send(t, f, r)
	}
	wantStatus(t, "no bearer", post("", nil), http.StatusUnauthorized)
	wantStatus(t, "basic auth", post("", func(r *req) { r.header = map[string]string{"Authorization": "Basic " + key} }), http.StatusUnauthorized)
	a := post("not-the-key", nil)
	wantStatus(t, "wrong key", a, http.StatusUnauthorized)
	if strings.Contains(string(a.body), "not-the-key") {
		t.Error("401 echoes the key")
	}
	wantStatus(t, "good key", post(key, nil), http.StatusNoContent)

	if err := f.Admin.Revoke(ctxT(t), id); err != nil {
		t.Fatal(err)
	}
	a = post(key, nil)
	wantStatus(t, "revoked", a, http.StatusUnauthorized)
	if !strings.Contains(a.errorText(t), "revoked") {
		t.Errorf("revoked: %s", a.body)
	}
	if err := f.Admin.Unrevoke(ctxT(t), id); err != nil {
		t.Fatal(err)
	}
	wantStatus(t, "restored", post(key, nil), http.StatusNoContent)
	if err := f.Admin.Revoke(ctxT(t), "agt_nope"); !errors.Is(err, devserver.ErrNotFound) {
		t.Errorf("revoke unknown agent: %v", err)
	}

	a = send(t, f, req{method: "GET", path: "/api/v1/agent/nope", key: key})
	wantStatus(t, "unknown endpoint", a, http.StatusNotFound)
	a.errorText(t)
	wantStatus(t, "wrong method", send(t, f, req{method: "GET", path: "/api/v1/agent/enroll"}), http.StatusNotFound)
}

func TestCommandsLongPoll(t *testing.T) {
	f := devservertest.Start(t, devserver.Options{})
	id, key := enroll(t, f)
	other, otherKey := enroll(t, f)
	poll := func(k, wait string) answer {
		return send(t, f, req{method: "GET", path: "/api/v1/agent/commands?wait=" + wait, key: k})
	}
	for _, w := range []string{"0", "61", "x", "1.5", ""} {
		a := poll(key, w)
		wantStatus(t, "wait="+w, a, http.StatusBadRequest)
		a.errorText(t)
	}

	start := time.Now()
	a := poll(key, "1")
	wantStatus(t, "empty poll", a, http.StatusOK)
	if d := time.Since(start); d < 900*time.Millisecond || d > 5*time.Second {
		t.Errorf("empty poll of wait=1 took %s", d)
	}
	if got := strings.TrimSpace(string(a.body)); got != `{"commands":[]}` {
		t.Errorf("empty poll = %s", got)
	}

	// A command added while the poll waits ends it early.
	done := make(chan answer, 1)
	start = time.Now()
	go func() {
		a, err := sendE(f, req{method: "GET", path: "/api/v1/agent/commands?wait=30", key: key})
		if err != nil {
			a.body = []byte(err.Error())
		}
		done <- a
	}()
	time.Sleep(200 * time.Millisecond)
	c := addCommand(t, f, id, "export")
	a = <-done
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("poll woke after %s", d)
	}
	wantStatus(t, "woken poll", a, http.StatusOK)
	var got struct {
		Commands []map[string]json.RawMessage `json:"commands"`
	}
	if err := json.Unmarshal(a.body, &got); err != nil || len(got.Commands) != 1 {
		t.Fatalf("poll = %s", a.body)
	}
	cmd := got.Commands[0]
	for _, k := range []string{"id", "type", "created_at", "params"} {
		if _, ok := cmd[k]; !ok {
			t.Errorf("command has no %q: %s", k, a.body)
		}
	}
	if string(cmd["id"]) != `"`+c.ID+`"` || string(cmd["type"]) != `"export"` || string(cmd["params"]) != `{"x":1}` {
		t.Errorf("command = %s", a.body)
	}
	if _, ok := cmd["expires_at"]; ok {
		t.Errorf("expires_at present without one: %s", a.body)
	}

	// Re-delivered until acked; other agents see nothing of it.
	wantStatus(t, "second poll", poll(key, "1"), http.StatusOK)
	if a := poll(key, "1"); !strings.Contains(string(a.body), c.ID) {
		t.Fatalf("not re-delivered: %s", a.body)
	}
	if a := poll(otherKey, "1"); strings.Contains(string(a.body), c.ID) {
		t.Fatalf("delivered to another agent: %s", a.body)
	}
	ack := func(k, cmd string) answer {
		return send(t, f, req{method: "POST", path: "/api/v1/agent/commands/" + cmd + "/ack", key: k})
	}
	wantStatus(t, "ack of another agent's command", ack(otherKey, c.ID), http.StatusNotFound)
	wantStatus(t, "ack unknown", ack(key, "cmd_nope"), http.StatusNotFound)
	wantStatus(t, "ack", ack(key, c.ID), http.StatusNoContent)
	wantStatus(t, "ack again", ack(key, c.ID), http.StatusNoContent)
	if a := poll(key, "1"); strings.Contains(string(a.body), c.ID) {
		t.Fatalf("delivered after ack: %s", a.body)
	}

	ctx := ctxT(t)
	cmds, err := f.Admin.Commands(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if len(cmds) != 1 || cmds[0].Deliveries != 3 || cmds[0].AckedAt == nil {
		t.Errorf("commands = %+v", cmds)
	}
	acks, err := f.Admin.Acks(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	if len(acks) != 1 || acks[0].CommandID != c.ID || acks[0].Repeats != 1 || acks[0].AgentID != id {
		t.Errorf("acks = %+v", acks)
	}
	if _, err := f.Admin.AddCommand(ctx, "agt_nope", devserver.NewCommand{Type: "export"}); !errors.Is(err, devserver.ErrNotFound) {
		t.Errorf("command for an unknown agent: %v", err)
	}
	if _, err := f.Admin.AddCommand(ctx, other, devserver.NewCommand{}); err == nil {
		t.Error("command without a type: no error")
	}
	exp := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	c2, err := f.Admin.AddCommand(ctx, other, devserver.NewCommand{Type: "made-up", ExpiresAt: &exp})
	if err != nil {
		t.Fatal(err)
	}
	a = poll(otherKey, "1")
	if !strings.Contains(string(a.body), `"expires_at":"2030-01-02T03:04:05Z"`) || !strings.Contains(string(a.body), `"params":{}`) ||
		!strings.Contains(string(a.body), c2.ID) {
		t.Errorf("poll = %s", a.body)
	}
}

func TestCloseEndsPolls(t *testing.T) {
	f := devservertest.Start(t, devserver.Options{})
	_, key := enroll(t, f)
	done := make(chan answer, 1)
	go func() {
		a, err := sendE(f, req{method: "GET", path: "/api/v1/agent/commands?wait=60", key: key})
		if err != nil {
			a.body = []byte(err.Error())
		}
		done <- a
	}()
	time.Sleep(200 * time.Millisecond)
	start := time.Now()
	f.Server.Close()
	a := <-done
	wantStatus(t, "poll at close", a, http.StatusOK)
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("poll ended %s after Close", d)
	}
}

func TestResults(t *testing.T) {
	f := devservertest.Start(t, devserver.Options{})
	id, key := enroll(t, f)
	_, otherKey := enroll(t, f)
	c := addCommand(t, f, id, "export")
	post := func(k, cmd string, body string) answer {
		return send(t, f, req{method: "POST", path: "/api/v1/agent/commands/" + cmd + "/result", key: k, body: []byte(body)})
	}
	for name, body := range map[string]string{
		"bad status":       `{"status":"done","finished_at":"2026-01-01T00:00:00Z"}`,
		"no finished_at":   `{"status":"succeeded"}`,
		"bad time":         `{"status":"succeeded","finished_at":"yesterday"}`,
		"start after end":  `{"status":"succeeded","started_at":"2026-01-02T00:00:00Z","finished_at":"2026-01-01T00:00:00Z"}`,
		"failed, no error": `{"status":"failed","finished_at":"2026-01-01T00:00:00Z","error":""}`,
		"output array":     `{"status":"succeeded","finished_at":"2026-01-01T00:00:00Z","output":[1]}`,
		"not json":         `{"status":`,
	} {
		a := post(key, c.ID, body)
		wantStatus(t, name, a, http.StatusBadRequest)
		a.errorText(t)
	}
	first := `{"status":"succeeded","started_at":"2026-01-01T00:00:00Z","finished_at":"2026-01-01T00:00:09Z","error":"","output":{"n":1},"extra":true}`
	wantStatus(t, "unknown command", post(key, "cmd_nope", first), http.StatusNotFound)
	wantStatus(t, "another agent's command", post(otherKey, c.ID, first), http.StatusNotFound)
	wantStatus(t, "result", post(key, c.ID, first), http.StatusNoContent)
	wantStatus(t, "repeat", post(key, c.ID, `{"status":"failed","finished_at":"2026-01-01T00:00:10Z","error":"x"}`), http.StatusNoContent)

	r, err := f.Admin.WaitResult(ctxT(t), c.ID)
	if err != nil {
		t.Fatal(err)
	}
	if r.Status != "succeeded" || r.Repeats != 1 || string(r.Output) != `{"n":1}` || r.AgentID != id ||
		!r.FinishedAt.Equal(time.Date(2026, 1, 1, 0, 0, 9, 0, time.UTC)) || r.StartedAt == nil {
		t.Errorf("result = %+v", r)
	}
	if _, err := f.Admin.Result(ctxT(t), "cmd_nope"); !errors.Is(err, devserver.ErrNotFound) {
		t.Errorf("result of unknown command: %v", err)
	}
}

func TestUploads(t *testing.T) {
	f := devservertest.Start(t, devserver.Options{MaxUploadBytes: 4096})
	id, key := enroll(t, f)
	ctx := ctxT(t)
	rec := func(seq int) string { return fmt.Sprintf(`{"seq":%d,"model":"commit","id":"c%d","data":{}}`, seq, seq) }

	cases := []struct {
		name   string
		r      req
		status int
	}{
		{"no routing key", req{header: map[string]string{"X-Batch-Id": "export/i:0123456789abcdef:1-1"}}, 400},
		{"bad routing key", req{header: map[string]string{"X-Routing-Key": "stuff/i", "X-Batch-Id": "stuff/i:0123456789abcdef:1-1"}}, 400},
		{"bare routing key", req{header: map[string]string{"X-Routing-Key": "export/", "X-Batch-Id": "export/:0123456789abcdef:1-1"}}, 400},
		{"no batch id", req{header: map[string]string{"X-Routing-Key": "export/i"}}, 400},
		{"batch id of another key", req{header: map[string]string{"X-Routing-Key": "export/i", "X-Batch-Id": "export/j:0123456789abcdef:1-1"}}, 400},
		{"batch id backwards", req{header: map[string]string{"X-Routing-Key": "export/i", "X-Batch-Id": "export/i:0123456789abcdef:2-1"}}, 400},
		{"empty command id", req{header: map[string]string{"X-Routing-Key": "export/i", "X-Batch-Id": "export/i:0123456789abcdef:1-1", "X-Command-Id": ""}}, 400},
		{"json content type", req{contentType: "application/json"}, 400},
		{"not gzip encoded", req{encoding: "-"}, 400},
		{"gzip header, plain body", req{body: []byte(rec(1) + "\n")}, 400},
		{"not an object", req{body: gz(t, `[1]`)}, 400},
		{"not json", req{body: gz(t, `{"seq":1`)}, 400},
		{"empty line", req{body: gz(t, rec(1), "", rec(2))}, 400},
		{"no seq", req{body: gz(t, `{"model":"x"}`)}, 400},
		{"first seq off", req{body: gz(t, rec(2))}, 400},
		{"last seq off", req{body: gz(t, rec(1), rec(2))}, 400},
		{"seq backwards", req{header: map[string]string{"X-Routing-Key": "export/i", "X-Batch-Id": "export/i:0123456789abcdef:1-3"}, body: gz(t, rec(1), rec(1), rec(3))}, 400},
		{"too large", req{body: gz(t, rec(1)+strings.Repeat(" ", 5000))}, 413},
		{"no bearer", req{key: "-"}, 401},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := tc.r
			r.method, r.path = "POST", "/api/v1/agent/uploads"
			if r.key == "" {
				r.key = key
			} else if r.key == "-" {
				r.key = ""
			}
			if r.header == nil {
				r.header = map[string]string{"X-Routing-Key": "export/i", "X-Batch-Id": "export/i:0123456789abcdef:1-1"}
			}
			if r.body == nil {
				r.body = gz(t, rec(1))
			}
			if r.contentType == "" {
				r.contentType = "application/x-ndjson"
			}
			switch r.encoding {
			case "":
				r.encoding = "gzip"
			case "-":
				r.encoding = ""
			}
			a := send(t, f, r)
			wantStatus(t, tc.name, a, tc.status)
			a.errorText(t)
		})
	}
	if ups, _ := f.Admin.Uploads(ctx, devserver.UploadFilter{}); len(ups) != 0 {
		t.Fatalf("refused uploads stored: %+v", ups)
	}

	a := upload(t, f, key, "export/int_1", "export/int_1:0123456789abcdef:1-2", rec(1), rec(2))
	wantStatus(t, "upload", a, http.StatusAccepted)
	a = upload(t, f, key, "export/int_1", "export/int_1:0123456789abcdef:1-2", rec(1), rec(2))
	wantStatus(t, "repeat", a, http.StatusOK)
	// A repeat is not even read.
	a = upload(t, f, key, "export/int_1", "export/int_1:0123456789abcdef:1-2", `garbage`)
	wantStatus(t, "repeat with another body", a, http.StatusOK)
	a = send(t, f, req{method: "POST", path: "/api/v1/agent/uploads", key: key, body: gz(t, rec(3)),
		contentType: "application/x-ndjson; charset=utf-8", encoding: "gzip",
		header: map[string]string{"X-Routing-Key": "export/int_1", "X-Batch-Id": "export/int_1:0123456789abcdef:3-3", "X-Command-Id": "cmd_9"}})
	wantStatus(t, "upload with command", a, http.StatusAccepted)
	wantStatus(t, "another key", upload(t, f, key, "events/abc", "events/abc:0123456789abcdef:1-1", rec(1)), http.StatusAccepted)

	ups, err := f.Admin.Uploads(ctx, devserver.UploadFilter{RoutingKey: "export/int_1"})
	if err != nil {
		t.Fatal(err)
	}
	if len(ups) != 2 || ups[0].BatchID != "export/int_1:0123456789abcdef:1-2" || ups[0].Count != 2 || ups[0].AgentID != id ||
		ups[1].CommandID != "cmd_9" || len(ups[1].Records) != 1 || string(ups[1].Records[0]) != rec(3) {
		t.Fatalf("uploads = %+v", ups)
	}
	recs, err := f.Admin.Records(ctx, devserver.UploadFilter{RoutingKey: "export/int_1"})
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 3 || string(recs[0]) != rec(1) || string(recs[2]) != rec(3) {
		t.Fatalf("records = %s", recs)
	}
	if recs, _ := f.Admin.Records(ctx, devserver.UploadFilter{CommandID: "cmd_9"}); len(recs) != 1 {
		t.Errorf("records of cmd_9 = %s", recs)
	}
	meta, err := f.Admin.Uploads(ctx, devserver.UploadFilter{NoRecords: true})
	if err != nil || len(meta) != 3 || meta[0].Records != nil {
		t.Fatalf("uploads without records = %+v, %v", meta, err)
	}
}

func TestLogsProgressHeartbeats(t *testing.T) {
	f := devservertest.Start(t, devserver.Options{})
	id, key := enroll(t, f)
	c := addCommand(t, f, id, "export")
	ctx := ctxT(t)

	logs := func(cmd string, body []byte) answer {
		h := map[string]string{}
		if cmd != "" {
			h["X-Command-Id"] = cmd
		}
		return send(t, f, req{method: "POST", path: "/api/v1/agent/logs", key: key, body: body,
			contentType: "application/x-ndjson", encoding: "gzip", header: h})
	}
	wantStatus(t, "logs without command", logs("", gz(t, `{"level":"info"}`)), http.StatusBadRequest)
	wantStatus(t, "logs not json", logs(c.ID, gz(t, `level=info`)), http.StatusBadRequest)
	wantStatus(t, "logs", logs(c.ID, gz(t, `{"level":"info","message":"a"}`, `{"level":"warn","message":"b"}`)), http.StatusAccepted)
	lb, err := f.Admin.Logs(ctx, c.ID)
	if err != nil || len(lb) != 1 || lb[0].Count != 2 || string(lb[0].Lines[1]) != `{"level":"warn","message":"b"}` {
		t.Fatalf("logs = %+v, %v", lb, err)
	}

	progress := func(cmd, body string) answer {
		return send(t, f, req{method: "POST", path: "/api/v1/agent/commands/" + cmd + "/progress", key: key, body: []byte(body)})
	}
	for name, body := range map[string]string{
		"no sessions": `{}`,
		"bad kind":    `{"sessions":[{"path":["a"],"kind":"x","current":1,"total":2,"state":"running"}]}`,
		"bad state":   `{"sessions":[{"path":["a"],"kind":"model","current":1,"total":2,"state":"x"}]}`,
		"no path":     `{"sessions":[{"path":[],"kind":"model","current":1,"total":2,"state":"done"}]}`,
		"negative":    `{"sessions":[{"path":["a"],"kind":"model","current":-1,"total":2,"state":"done"}]}`,
	} {
		wantStatus(t, name, progress(c.ID, body), http.StatusBadRequest)
	}
	good := `{"sessions":[{"path":["int_1","repo:api","commit"],"kind":"model","current":120,"total":450,"state":"running"}]}`
	wantStatus(t, "progress of unknown command", progress("cmd_nope", good), http.StatusNotFound)
	wantStatus(t, "progress", progress(c.ID, good), http.StatusNoContent)
	wantStatus(t, "empty progress", progress(c.ID, `{"sessions":[]}`), http.StatusNoContent)
	pr, err := f.Admin.Progress(ctx, c.ID)
	if err != nil || len(pr) != 2 || pr[0].Sessions[0].Total != 450 || pr[0].Sessions[0].Path[1] != "repo:api" {
		t.Fatalf("progress = %+v, %v", pr, err)
	}

	hb := func(body string) answer {
		return send(t, f, req{method: "POST", path: "/api/v1/agent/heartbeat", key: key, body: []byte(body)})
	}
	for name, body := range map[string]string{
		"no version": `{"uptime_s":1,"queue":{}}`,
		"no uptime":  `{"version":"1","queue":{}}`,
		"no queue":   `{"version":"1","uptime_s":1}`,
		"negative":   `{"version":"1","uptime_s":1,"queue":{"pending_items":-1}}`,
	} {
		wantStatus(t, name, hb(body), http.StatusBadRequest)
	}
	wantStatus(t, "heartbeat", hb(`{"version":"0.3.0","uptime_s":61,"running":["cmd_1"],"queue":{"pending_items":3,"pending_bytes":300,"failed_items":1}}`), http.StatusNoContent)
	hbs, err := f.Admin.Heartbeats(ctx, id)
	if err != nil || len(hbs) != 1 || hbs[0].UptimeS != 61 || hbs[0].Queue.PendingBytes != 300 || hbs[0].Running[0] != "cmd_1" {
		t.Fatalf("heartbeats = %+v, %v", hbs, err)
	}
}

func TestFaults(t *testing.T) {
	f := devservertest.Start(t, devserver.Options{})
	_, key := enroll(t, f)
	ctx := ctxT(t)
	if _, err := f.Admin.SetFaults(ctx, devserver.Faults{"nope": {Status: 500, Count: 1}}); err == nil {
		t.Error("fault of an unknown endpoint: no error")
	}
	if _, err := f.Admin.SetFaults(ctx, devserver.Faults{"uploads": {Count: 1}}); err == nil {
		t.Error("fault without status or delay: no error")
	}
	got, err := f.Admin.SetFaults(ctx, devserver.Faults{
		devserver.EndpointUploads:  {Status: 503, Count: 2, RetryAfter: 7},
		devserver.EndpointCommands: {Status: 500, Count: -1, Error: "on fire"},
	})
	if err != nil || got["uploads"].Count != 2 || got["commands"].Count != -1 {
		t.Fatalf("SetFaults = %+v, %v", got, err)
	}
	for i := 0; i < 2; i++ {
		a := upload(t, f, key, "export/i", "export/i:0123456789abcdef:1-1", `{"seq":1}`)
		wantStatus(t, "faulted upload", a, http.StatusServiceUnavailable)
		if a.header.Get("Retry-After") != "7" {
			t.Errorf("Retry-After = %q", a.header.Get("Retry-After"))
		}
		a.errorText(t)
	}
	wantStatus(t, "upload after the fault", upload(t, f, key, "export/i", "export/i:0123456789abcdef:1-1", `{"seq":1}`), http.StatusAccepted)
	for i := 0; i < 3; i++ {
		a := send(t, f, req{method: "GET", path: "/api/v1/agent/commands?wait=1", key: key})
		wantStatus(t, "faulted poll", a, http.StatusInternalServerError)
		if a.errorText(t) != "on fire" {
			t.Errorf("fault error = %s", a.body)
		}
	}
	left, err := f.Admin.Faults(ctx)
	if err != nil || len(left) != 1 || left["commands"].Count != -1 {
		t.Fatalf("faults left = %+v, %v", left, err)
	}
	if err := f.Admin.ClearFaults(ctx); err != nil {
		t.Fatal(err)
	}
	wantStatus(t, "poll after clearing", send(t, f, req{method: "GET", path: "/api/v1/agent/commands?wait=1", key: key}), http.StatusOK)

	// A delay alone slows the endpoint and then answers normally.
	if _, err := f.Admin.SetFaults(ctx, devserver.Faults{"heartbeat": {DelayMS: 300, Count: 1}}); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	a := send(t, f, req{method: "POST", path: "/api/v1/agent/heartbeat", key: key, body: []byte(`{"version":"1","uptime_s":1,"queue":{}}`)})
	wantStatus(t, "delayed heartbeat", a, http.StatusNoContent)
	if d := time.Since(start); d < 300*time.Millisecond {
		t.Errorf("delayed heartbeat took %s", d)
	}

	st, err := f.Admin.Stats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.Count("uploads", 503) != 2 || st.Count("uploads", 202) != 1 || st.Count("commands", 500) != 3 ||
		st.Count("commands", 200) != 1 || st.Total("enroll") != 1 || st.Count("heartbeat", 204) != 1 {
		t.Errorf("stats = %+v", st)
	}
}

func TestRestartKeepsState(t *testing.T) {
	f := devservertest.Start(t, devserver.Options{})
	id, key := enroll(t, f)
	c := addCommand(t, f, id, "export")
	done := addCommand(t, f, id, "validate-config")
	wantStatus(t, "ack", send(t, f, req{method: "POST", path: "/api/v1/agent/commands/" + done.ID + "/ack", key: key}), http.StatusNoContent)
	wantStatus(t, "result", send(t, f, req{method: "POST", path: "/api/v1/agent/commands/" + done.ID + "/result", key: key,
		body: []byte(`{"status":"succeeded","finished_at":"2026-01-01T00:00:00Z","error":""}`)}), http.StatusNoContent)
	wantStatus(t, "upload", upload(t, f, key, "export/i", "export/i:0123456789abcdef:1-1", `{"seq":1}`), http.StatusAccepted)
	code := f.EnrollCode(t)

	f = f.Restart(t)
	ctx := ctxT(t)
	a := send(t, f, req{method: "GET", path: "/api/v1/agent/commands?wait=1", key: key})
	wantStatus(t, "poll after restart", a, http.StatusOK)
	if !strings.Contains(string(a.body), c.ID) || strings.Contains(string(a.body), done.ID) {
		t.Errorf("poll after restart = %s", a.body)
	}
	wantStatus(t, "repeat upload after restart", upload(t, f, key, "export/i", "export/i:0123456789abcdef:1-1", `{"seq":1}`), http.StatusOK)
	wantStatus(t, "next upload", upload(t, f, key, "export/i", "export/i:0123456789abcdef:2-2", `{"seq":2}`), http.StatusAccepted)
	if recs, err := f.Admin.Records(ctx, devserver.UploadFilter{RoutingKey: "export/i"}); err != nil || len(recs) != 2 {
		t.Errorf("records after restart = %s, %v", recs, err)
	}
	if r, err := f.Admin.Result(ctx, done.ID); err != nil || r.Status != "succeeded" {
		t.Errorf("result after restart = %+v, %v", r, err)
	}
	wantStatus(t, "enroll with a code made before the restart",
		send(t, f, req{method: "POST", path: "/api/v1/agent/enroll", body: mustJSON(t, enrollBody(code))}), http.StatusCreated)
	// Ids keep counting rather than repeat.
	c3 := addCommand(t, f, id, "export")
	if c3.ID == c.ID || c3.ID == done.ID {
		t.Errorf("command id %s repeats after restart", c3.ID)
	}
}

func TestAdmin(t *testing.T) {
	f := devservertest.Start(t, devserver.Options{})
	a := send(t, f, req{method: "POST", path: "/admin/enroll-codes", body: []byte(`{"cod":"x"}`)})
	wantStatus(t, "unknown field", a, http.StatusBadRequest)
	a.errorText(t)
	wantStatus(t, "bad code", send(t, f, req{method: "POST", path: "/admin/enroll-codes", body: []byte(`{"code":"a b"}`)}), http.StatusBadRequest)
	a = send(t, f, req{method: "POST", path: "/admin/enroll-codes"})
	wantStatus(t, "random code", a, http.StatusCreated)
	var code devserver.EnrollCode
	if err := json.Unmarshal(a.body, &code); err != nil || len(code.Code) != 9 || code.Code[4] != '-' {
		t.Errorf("random code = %s", a.body)
	}
	wantStatus(t, "unknown admin endpoint", send(t, f, req{method: "GET", path: "/admin/nope"}), http.StatusNotFound)
	a = send(t, f, req{method: "GET", path: "/"})
	wantStatus(t, "index", a, http.StatusOK)
	if !strings.Contains(string(a.body), "/admin/faults") {
		t.Errorf("index = %s", a.body)
	}
	wantStatus(t, "unknown path", send(t, f, req{method: "GET", path: "/nope"}), http.StatusNotFound)
}

func TestNewNeedsDir(t *testing.T) {
	if _, err := devserver.New(devserver.Options{}); err == nil {
		t.Error("New without Dir: no error")
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "state.json"), []byte(`{"version":99}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := devserver.New(devserver.Options{Dir: dir}); err == nil {
		t.Error("New on a state of another version: no error")
	}
}

// TestServe runs the devserver as dev-backend does: Serve on a listener
// until ctx ends; a pending long poll must not hold the shutdown up.
func TestServe(t *testing.T) {
	s, err := devserver.New(devserver.Options{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	code, err := s.AddEnrollCode("SERVE-1", nil)
	if err != nil || code.Code != "SERVE-1" {
		t.Fatalf("AddEnrollCode = %+v, %v", code, err)
	}
	if _, err := s.AddEnrollCode("SERVE-1", nil); !errors.Is(err, devserver.ErrCodeExists) {
		t.Errorf("second AddEnrollCode: %v", err)
	}
	if codes := s.EnrollCodes(); len(codes) != 1 || codes[0].Code != "SERVE-1" {
		t.Errorf("EnrollCodes = %+v", codes)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	served := make(chan error, 1)
	go func() { served <- s.Serve(ctx, ln) }()

	f := &devservertest.Fixture{URL: "http://" + ln.Addr().String()}
	a := send(t, f, req{method: "POST", path: "/api/v1/agent/enroll", body: mustJSON(t, enrollBody("SERVE-1"))})
	wantStatus(t, "enroll", a, http.StatusCreated)
	var out map[string]string
	_ = json.Unmarshal(a.body, &out)
	polled := make(chan answer, 1)
	go func() {
		a, err := sendE(f, req{method: "GET", path: "/api/v1/agent/commands?wait=60", key: out["api_key"]})
		if err != nil {
			a.body = []byte(err.Error())
		}
		polled <- a
	}()
	time.Sleep(200 * time.Millisecond)
	start := time.Now()
	cancel()
	if err := <-served; err != nil {
		t.Errorf("Serve = %v", err)
	}
	wantStatus(t, "poll at shutdown", <-polled, http.StatusOK)
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("shutdown took %s", d)
	}
	client.CloseIdleConnections()
}

func TestWaitRecords(t *testing.T) {
	f := devservertest.Start(t, devserver.Options{})
	_, key := enroll(t, f)
	go func() {
		time.Sleep(100 * time.Millisecond)
		h := map[string]string{"X-Routing-Key": "export/w", "X-Batch-Id": "export/w:0123456789abcdef:1-2"}
		_, _ = sendE(f, req{method: "POST", path: "/api/v1/agent/uploads", key: key, body: gzE(`{"seq":1}`, `{"seq":2}`),
			contentType: "application/x-ndjson", encoding: "gzip", header: h})
	}()
	recs, err := f.Admin.WaitRecords(ctxT(t), devserver.UploadFilter{RoutingKey: "export/w"}, 2)
	if err != nil || len(recs) != 2 {
		t.Fatalf("WaitRecords = %s, %v", recs, err)
	}
	short, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if _, err := f.Admin.WaitRecords(short, devserver.UploadFilter{RoutingKey: "export/w"}, 3); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("WaitRecords past its deadline: %v", err)
	}
	if _, err := f.Admin.WaitResult(short, "cmd_1"); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("WaitResult past its deadline: %v", err)
	}
}
