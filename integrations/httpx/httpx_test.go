package httpx

import (
	"bytes"
	"context"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// newTransport builds a transport with fast retries, closed at the end.
func newTransport(t *testing.T, o Options) *Transport {
	t.Helper()
	if o.BackoffInitial == 0 {
		o.BackoffInitial = time.Millisecond
	}
	tr, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(tr.CloseIdleConnections)
	return tr
}

// server is an httptest server answering with the handler for each call in
// turn (the last one repeats), counting calls.
type server struct {
	*httptest.Server
	calls atomic.Int32
}

func newServer(t *testing.T, handlers ...http.HandlerFunc) *server {
	t.Helper()
	s := &server{}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := int(s.calls.Add(1)) - 1
		handlers[min(n, len(handlers)-1)](w, r)
	}))
	t.Cleanup(s.Close)
	return s
}

func status(code int, hdr ...string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		for i := 0; i+1 < len(hdr); i += 2 {
			w.Header().Set(hdr[i], hdr[i+1])
		}
		w.WriteHeader(code)
		fmt.Fprintf(w, `{"status":%d}`, code)
	}
}

func get(t *testing.T, c *http.Client, u string) *http.Response {
	t.Helper()
	resp, err := c.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

func TestGetRetries502(t *testing.T) {
	s := newServer(t, status(502), status(200))
	resp := get(t, newTransport(t, Options{}).Client(), s.URL)
	if resp.StatusCode != 200 || s.calls.Load() != 2 {
		t.Fatalf("status %d after %d calls, want 200 after 2", resp.StatusCode, s.calls.Load())
	}
	b, _ := io.ReadAll(resp.Body)
	if string(b) != `{"status":200}` {
		t.Fatalf("body %q", b)
	}
}

func TestPostIsNotRetriedUnlessIdempotent(t *testing.T) {
	var bodies []string
	var mu sync.Mutex
	record := func(next http.HandlerFunc) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			b, _ := io.ReadAll(r.Body)
			mu.Lock()
			bodies = append(bodies, string(b))
			mu.Unlock()
			next(w, r)
		}
	}
	c := newTransport(t, Options{}).Client()

	s := newServer(t, record(status(502)), record(status(200)))
	resp, err := c.Post(s.URL, "application/json", strings.NewReader(`{"q":1}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 502 || s.calls.Load() != 1 {
		t.Fatalf("plain POST: status %d after %d calls, want 502 after 1", resp.StatusCode, s.calls.Load())
	}

	s2 := newServer(t, record(status(502)), record(status(200)))
	req, _ := http.NewRequest(http.MethodPost, s2.URL, strings.NewReader(`{"q":2}`))
	req.Header.Set("X-Courier-Idempotent", "1")
	resp, err = c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || s2.calls.Load() != 2 {
		t.Fatalf("idempotent POST: status %d after %d calls, want 200 after 2", resp.StatusCode, s2.calls.Load())
	}
	if want := []string{`{"q":1}`, `{"q":2}`, `{"q":2}`}; strings.Join(bodies, " ") != strings.Join(want, " ") {
		t.Fatalf("bodies %q, want %q (a retry sends the whole body again)", bodies, want)
	}
}

// A body without GetBody cannot be replayed: it is sent once, and a
// retryable answer comes back as it is.
func TestBodyWithoutGetBodyIsSentOnce(t *testing.T) {
	s := newServer(t, status(503), status(200))
	req, _ := http.NewRequest(http.MethodPost, s.URL, io.NopCloser(strings.NewReader("x")))
	req.Header.Set("X-Courier-Idempotent", "1")
	resp, err := newTransport(t, Options{}).Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 503 || s.calls.Load() != 1 {
		t.Fatalf("status %d after %d calls, want 503 after 1", resp.StatusCode, s.calls.Load())
	}
}

type waitLog struct {
	mu    sync.Mutex
	waits []time.Duration
	why   []string
}

func (w *waitLog) onWait(d time.Duration, reason string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.waits = append(w.waits, d)
	w.why = append(w.why, reason)
}

func (w *waitLog) get() ([]time.Duration, []string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]time.Duration(nil), w.waits...), append([]string(nil), w.why...)
}

func Test429RetryAfterWaitsAndReports(t *testing.T) {
	s := newServer(t, status(429, "Retry-After", "1"), status(200))
	var wl waitLog
	start := time.Now()
	resp := get(t, newTransport(t, Options{OnWait: wl.onWait}).Client(), s.URL)
	if el := time.Since(start); el < time.Second {
		t.Fatalf("answered after %s, before Retry-After's 1s", el)
	}
	if resp.StatusCode != 200 || s.calls.Load() != 2 {
		t.Fatalf("status %d after %d calls", resp.StatusCode, s.calls.Load())
	}
	waits, why := wl.get()
	if len(waits) != 1 || waits[0] < time.Second || why[0] != "rate limited" {
		t.Fatalf("OnWait got %v %q, want one wait of at least 1s, rate limited", waits, why)
	}
}

// A secondary rate limit (GitHub): 403 with Retry-After.
func TestSecondaryRateLimit403RetryAfter(t *testing.T) {
	s := newServer(t, status(403, "Retry-After", "1"), status(200))
	start := time.Now()
	resp := get(t, newTransport(t, Options{}).Client(), s.URL)
	if el := time.Since(start); el < time.Second || resp.StatusCode != 200 {
		t.Fatalf("status %d after %s", resp.StatusCode, el)
	}
}

func TestExhaustedBudgetWaitsUntilReset(t *testing.T) {
	reset := time.Now().Add(time.Second).Truncate(time.Second).Add(time.Second) // 1-2 s ahead
	var second atomic.Int64
	s := newServer(t,
		status(403, "X-RateLimit-Limit", "5000", "X-RateLimit-Remaining", "0", "X-RateLimit-Reset", strconv.FormatInt(reset.Unix(), 10)),
		func(w http.ResponseWriter, r *http.Request) {
			second.Store(time.Now().UnixNano())
			status(200)(w, r)
		})
	var wl waitLog
	resp := get(t, newTransport(t, Options{OnWait: wl.onWait}).Client(), s.URL)
	if resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	if at := time.Unix(0, second.Load()); at.Before(reset) {
		t.Fatalf("retried at %s, before the reset at %s", at.Format(time.RFC3339Nano), reset.Format(time.RFC3339Nano))
	}
	if waits, _ := wl.get(); len(waits) == 0 {
		t.Fatal("OnWait was not called")
	}
	// A 403 without rate-limit headers is an answer, not a wait.
	s2 := newServer(t, status(403), status(200))
	if resp := get(t, newTransport(t, Options{}).Client(), s2.URL); resp.StatusCode != 403 || s2.calls.Load() != 1 {
		t.Fatalf("plain 403: status %d after %d calls", resp.StatusCode, s2.calls.Load())
	}
}

func TestMaxRetriesReturnsLastAnswer(t *testing.T) {
	s := newServer(t, status(500), status(502), status(503))
	resp := get(t, newTransport(t, Options{MaxRetries: 2}).Client(), s.URL)
	if resp.StatusCode != 503 || s.calls.Load() != 3 {
		t.Fatalf("status %d after %d calls, want 503 after 3", resp.StatusCode, s.calls.Load())
	}
}

func TestMaxRetriesNetworkErrorNamesRedactedURL(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close() // nothing listens there now: connection refused
	var wl waitLog
	tr := newTransport(t, Options{MaxRetries: 2, OnWait: wl.onWait})
	u := "http://bob:hunter2@" + addr + "/repos?access_token=s3cr3t&page=2"
	req, _ := http.NewRequest(http.MethodGet, u, nil)
	_, err = tr.RoundTrip(req)
	if err == nil {
		t.Fatal("no error")
	}
	msg := err.Error()
	for _, secret := range []string{"hunter2", "s3cr3t", "bob"} {
		if strings.Contains(msg, secret) {
			t.Fatalf("error %q shows %q", msg, secret)
		}
	}
	if !strings.Contains(msg, addr+"/repos") || !strings.Contains(msg, "giving up after 2 retries") || !strings.Contains(msg, "page=2") {
		t.Fatalf("error %q should name the redacted URL and the retries", msg)
	}
	if waits, _ := wl.get(); len(waits) != 2 {
		t.Fatalf("%d waits, want 2", len(waits))
	}
}

func TestAuthSetAndDroppedOnCrossHostRedirect(t *testing.T) {
	var mu sync.Mutex
	seen := map[string]string{}
	note := func(name string, r *http.Request) {
		mu.Lock()
		seen[name] = r.Header.Get("Authorization")
		mu.Unlock()
	}
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		note("other", r)
		w.WriteHeader(200)
	}))
	defer other.Close()
	// The same server under another host name.
	_, port, _ := net.SplitHostPort(other.Listener.Addr().String())
	otherURL := "http://localhost:" + port

	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/start":
			note("start", r)
			http.Redirect(w, r, "/same", http.StatusFound)
		case "/same":
			note("same", r)
			http.Redirect(w, r, otherURL+"/away", http.StatusFound)
		}
	}))
	defer origin.Close()

	tr := newTransport(t, Options{Auth: func(r *http.Request) { r.Header.Set("Authorization", "Bearer tok") }})
	resp := get(t, tr.Client(), origin.URL+"/start")
	if resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	mu.Lock()
	defer mu.Unlock()
	if seen["start"] != "Bearer tok" || seen["same"] != "Bearer tok" {
		t.Fatalf("the origin host should get credentials: %q", seen)
	}
	if a, ok := seen["other"]; !ok || a != "" {
		t.Fatalf("another host got Authorization %q (reached: %v)", a, ok)
	}
}

func TestConcurrencyLimit(t *testing.T) {
	var inFlight, peak atomic.Int32
	s := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		n := inFlight.Add(1)
		for {
			p := peak.Load()
			if n <= p || peak.CompareAndSwap(p, n) {
				break
			}
		}
		time.Sleep(20 * time.Millisecond)
		inFlight.Add(-1)
		w.WriteHeader(200)
	})
	c := newTransport(t, Options{Concurrency: 2}).Client()
	var wg sync.WaitGroup
	errs := make(chan error, 10)
	for i := 0; i < 10; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := c.Get(s.URL)
			if err != nil {
				errs <- err
				return
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if p := peak.Load(); p > 2 || p < 1 {
		t.Fatalf("peak of %d requests in flight, limit 2", p)
	}
	if s.calls.Load() != 10 {
		t.Fatalf("%d calls", s.calls.Load())
	}
}

func TestCAFile(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.pem")
	if err := os.WriteFile(bad, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := New(Options{CAFile: bad}); err == nil || !strings.Contains(err.Error(), "no PEM certificate") {
		t.Fatalf("not-PEM CA file: %v", err)
	}
	if _, err := New(Options{CAFile: filepath.Join(dir, "missing.pem")}); err == nil || !strings.Contains(err.Error(), "ca_file") {
		t.Fatalf("missing CA file: %v", err)
	}

	s := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(204) }))
	defer s.Close()
	// Verification is on: the test server's certificate is not trusted...
	untrusted := newTransport(t, Options{MaxRetries: 1})
	if resp, err := untrusted.Client().Get(s.URL); err == nil {
		resp.Body.Close()
		t.Fatal("an unknown CA was accepted")
	}
	// ...until its CA is given.
	good := filepath.Join(dir, "ca.pem")
	cert := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: s.Certificate().Raw})
	if err := os.WriteFile(good, cert, 0o600); err != nil {
		t.Fatal(err)
	}
	trusted := newTransport(t, Options{CAFile: good})
	if resp := get(t, trusted.Client(), s.URL); resp.StatusCode != 204 {
		t.Fatalf("status %d", resp.StatusCode)
	}
}

func TestRedact(t *testing.T) {
	for in, want := range map[string]string{
		"https://user:pass@ghe.example.com/api/v3/repos?page=2":                    "https://ghe.example.com/api/v3/repos?page=2",
		"https://x-access-token@example.com/x":                                     "https://example.com/x",
		"https://example.com/x?access_token=abc&page=3":                            "https://example.com/x?access_token=%5Bredacted%5D&page=3",
		"https://example.com/x?api_key=abc&client_secret=def&password=ghi&sort=up": "https://example.com/x?api_key=%5Bredacted%5D&client_secret=%5Bredacted%5D&password=%5Bredacted%5D&sort=up",
		"https://example.com/x?private_token=a&X-Amz-Signature=b&auth=c":           "https://example.com/x?X-Amz-Signature=%5Bredacted%5D&auth=%5Bredacted%5D&private_token=%5Bredacted%5D",
	} {
		u, err := url.Parse(in)
		if err != nil {
			t.Fatal(err)
		}
		got := Redact(u)
		if got != want {
			t.Errorf("Redact(%s) = %s, want %s", in, got, want)
		}
		for _, secret := range []string{"pass@", "abc", "def", "ghi"} {
			if strings.Contains(got, secret) {
				t.Errorf("Redact(%s) = %s shows %q", in, got, secret)
			}
		}
	}
	if Redact(nil) != "" {
		t.Error("Redact(nil)")
	}
}

func TestCancelDuringWaitReturnsPromptly(t *testing.T) {
	s := newServer(t, status(429, "Retry-After", "60"))
	var wl waitLog
	c := newTransport(t, Options{OnWait: wl.onWait}).Client()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, s.URL, nil)
		resp, err := c.Do(req)
		if err == nil {
			resp.Body.Close()
		}
		done <- err
	}()
	// Cancel once the transport is waiting.
	for {
		if w, _ := wl.get(); len(w) > 0 {
			break
		}
		time.Sleep(time.Millisecond)
	}
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("error %v, want context.Canceled", err)
		}
	case <-time.After(20 * time.Second): // far below the 60 s wait
		t.Fatal("a cancelled wait did not return")
	}
}

// A server that keeps saying "limited" with Retry-After: 0 gets a bounded
// number of retries, spaced by the backoff, not a busy loop.
func TestRateLimitLoopIsBounded(t *testing.T) {
	s := newServer(t, status(429, "Retry-After", "0"))
	resp := get(t, newTransport(t, Options{}).Client(), s.URL)
	if resp.StatusCode != 429 || s.calls.Load() != maxRateWaits+1 {
		t.Fatalf("status %d after %d calls", resp.StatusCode, s.calls.Load())
	}
}

func TestDefaultRateLimit(t *testing.T) {
	now := time.Now()
	mk := func(code int, hdr ...string) *http.Response {
		h := http.Header{}
		for i := 0; i+1 < len(hdr); i += 2 {
			h.Set(hdr[i], hdr[i+1])
		}
		return &http.Response{StatusCode: code, Header: h}
	}
	reset := strconv.FormatInt(now.Add(10*time.Second).Unix(), 10)
	for _, c := range []struct {
		name    string
		resp    *http.Response
		limited bool
		atLeast time.Duration
	}{
		{"200 with an exhausted budget", mk(200, "X-RateLimit-Remaining", "0", "X-RateLimit-Reset", reset), false, 0},
		{"403 without headers", mk(403), false, 0},
		{"403 exhausted", mk(403, "X-RateLimit-Remaining", "0", "X-RateLimit-Reset", reset), true, 9 * time.Second},
		{"429 exhausted", mk(429, "X-RateLimit-Remaining", "0", "X-RateLimit-Reset", reset), true, 9 * time.Second},
		{"403 secondary", mk(403, "Retry-After", "7"), true, 7 * time.Second},
		{"429 bare", mk(429), true, time.Minute},
		{"429 date", mk(429, "Retry-After", now.Add(5*time.Second).UTC().Format(http.TimeFormat)), true, 3 * time.Second},
		{"500", mk(500, "Retry-After", "3"), false, 0},
	} {
		d, limited := DefaultRateLimit(c.resp)
		if limited != c.limited || d < c.atLeast {
			t.Errorf("%s: %s %v, want limited=%v and at least %s", c.name, d, limited, c.limited, c.atLeast)
		}
	}
}

func TestCheck(t *testing.T) {
	s := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(404)
		io.WriteString(w, `{"message":"Not Found"}`)
	})
	resp, err := newTransport(t, Options{}).Client().Get(s.URL + "/x?token=abc")
	if err != nil {
		t.Fatal(err)
	}
	err = Check(resp)
	var he *Error
	if !errors.As(err, &he) || he.Status != 404 || strings.Contains(err.Error(), "abc") || !strings.Contains(err.Error(), "Not Found") {
		t.Fatalf("Check: %v", err)
	}
}

// No log line shows credentials: the transport logs redacted URLs.
func TestLogsAreRedacted(t *testing.T) {
	var buf bytes.Buffer
	var mu sync.Mutex
	w := zerolog.SyncWriter(writerFunc(func(p []byte) (int, error) {
		mu.Lock()
		defer mu.Unlock()
		return buf.Write(p)
	}))
	s := newServer(t, status(502), status(200))
	tr := newTransport(t, Options{Logger: zerolog.New(w).Level(zerolog.DebugLevel),
		Auth: func(r *http.Request) { r.Header.Set("Authorization", "Bearer tok-XYZ") }})
	get(t, tr.Client(), s.URL+"/?access_token=tok-ABC")
	mu.Lock()
	defer mu.Unlock()
	if buf.Len() == 0 {
		t.Fatal("nothing logged for a retry")
	}
	if strings.Contains(buf.String(), "tok-") {
		t.Fatalf("log shows a credential: %s", buf.String())
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

// TestCAFileFromParamsReadSafely: a ca_file from a backend command's params
// that names a FIFO, a device or a 1 GiB file is an error naming the key and
// the file, never a hang or a read until out of memory.
func TestCAFileFromParamsReadSafely(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "ca.fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	big := filepath.Join(dir, "big.pem")
	f, err := os.Create(big)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(1 << 30); err != nil { // sparse
		t.Fatal(err)
	}
	_ = f.Close()
	for path, want := range map[string]string{fifo: "not a regular file", "/dev/zero": "not a regular file", big: "more than the"} {
		_, err := New(Options{CAFile: path})
		if err == nil || !strings.Contains(err.Error(), "ca_file: "+path+": ") || !strings.Contains(err.Error(), want) {
			t.Errorf("ca_file %s: %v, want an error naming ca_file and the file, saying %q", path, err, want)
		}
	}
}
