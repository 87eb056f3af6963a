package devserver_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"courier/backend/devserver"
	"courier/backend/devserver/devservertest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// req is one raw request of the agent API; the zero value of a field means
// the agent's normal choice (User-Agent courier/test, JSON body).
type req struct {
	method, path string
	key          string // bearer; "" sends none
	body         []byte
	contentType  string // default application/json when body is set
	encoding     string
	header       map[string]string
	ua           string // default courier/test; "-" sends none
}

type answer struct {
	status int
	header http.Header
	body   []byte
}

func (a answer) errorText(t *testing.T) string {
	t.Helper()
	var e struct {
		Error string `json:"error"`
	}
	if err := json.Unmarshal(a.body, &e); err != nil || e.Error == "" {
		t.Fatalf("status %d: body %q is not {\"error\": ...}", a.status, a.body)
	}
	return e.Error
}

var client = &http.Client{Timeout: 90 * time.Second}

func send(t *testing.T, f *devservertest.Fixture, r req) answer {
	t.Helper()
	a, err := sendE(f, r)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// sendE is send for goroutines other than the test's.
func sendE(f *devservertest.Fixture, r req) (answer, error) {
	var body io.Reader
	if r.body != nil {
		body = bytes.NewReader(r.body)
	}
	hr, err := http.NewRequest(r.method, f.URL+r.path, body)
	if err != nil {
		return answer{}, err
	}
	switch r.ua {
	case "":
		hr.Header.Set("User-Agent", "courier/test")
	case "-":
		hr.Header["User-Agent"] = []string{""}
	default:
		hr.Header.Set("User-Agent", r.ua)
	}
	if r.key != "" {
		hr.Header.Set("Authorization", "Bearer "+r.key)
	}
	if r.body != nil {
		ct := r.contentType
		if ct == "" {
			ct = "application/json"
		}
		hr.Header.Set("Content-Type", ct)
	}
	if r.encoding != "" {
		hr.Header.Set("Content-Encoding", r.encoding)
	}
	for k, v := range r.header {
		hr.Header.Set(k, v)
	}
	resp, err := client.Do(hr)
	if err != nil {
		return answer{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return answer{}, err
	}
	return answer{status: resp.StatusCode, header: resp.Header, body: b}, nil
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func gz(t *testing.T, lines ...string) []byte {
	t.Helper()
	return gzE(lines...)
}

func gzE(lines ...string) []byte {
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	for _, l := range lines {
		_, _ = zw.Write([]byte(l + "\n"))
	}
	_ = zw.Close()
	return buf.Bytes()
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func enrollBody(code string) map[string]any {
	return map[string]any{"enroll_code": code, "hostname": "build-7", "os": "linux", "arch": "amd64",
		"version": "0.3.0", "system": map[string]any{"cpus": 2, "memory_bytes": 25769803776, "git_version": "2.39.5"}}
}

// enroll enrolls an agent with a fresh code and returns its id and key.
func enroll(t *testing.T, f *devservertest.Fixture) (string, string) {
	t.Helper()
	a := send(t, f, req{method: "POST", path: "/api/v1/agent/enroll", body: mustJSON(t, enrollBody(f.EnrollCode(t)))})
	if a.status != http.StatusCreated {
		t.Fatalf("enroll: %d %s", a.status, a.body)
	}
	var out struct {
		AgentID string `json:"agent_id"`
		APIKey  string `json:"api_key"`
	}
	if err := json.Unmarshal(a.body, &out); err != nil || out.AgentID == "" || out.APIKey == "" {
		t.Fatalf("enroll answer %s", a.body)
	}
	return out.AgentID, out.APIKey
}

func addCommand(t *testing.T, f *devservertest.Fixture, agent, typ string) devserver.Command {
	t.Helper()
	c, err := f.Admin.AddCommand(ctxT(t), agent, devserver.NewCommand{Type: typ, Params: json.RawMessage(`{"x":1}`)})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func upload(t *testing.T, f *devservertest.Fixture, key, routingKey, batchID string, lines ...string) answer {
	t.Helper()
	h := map[string]string{"X-Routing-Key": routingKey, "X-Batch-Id": batchID}
	return send(t, f, req{method: "POST", path: "/api/v1/agent/uploads", key: key, body: gz(t, lines...),
		contentType: "application/x-ndjson", encoding: "gzip", header: h})
}

func wantStatus(t *testing.T, what string, a answer, want int) {
	t.Helper()
	if a.status != want {
		t.Fatalf("%s: status %d, want %d (body %s)", what, a.status, want, strings.TrimSpace(string(a.body)))
	}
}
