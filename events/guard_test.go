package events

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/rs/zerolog"

	"courier/queue"
)

// realQueue opens the durable queue on disk with no upstream: what is
// accepted stays pending, where the test can count it.
func realQueue(t *testing.T) *queue.Queue {
	t.Helper()
	sys := actor.NewActorSystem(actor.WithLoggerFactory(func(*actor.ActorSystem) *slog.Logger {
		return slog.New(slog.NewTextHandler(io.Discard, nil))
	}))
	q, err := queue.Open(sys, queue.Options{Dir: t.TempDir(), Logger: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = q.Close(context.Background()); sys.Shutdown() })
	return q
}

func pending(t *testing.T, q *queue.Queue) int64 {
	t.Helper()
	st, err := q.Status(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	return st.Pending
}

// raw sends one request exactly as written (CRLF line ends are added) on a
// new connection and returns the status code and body of the answer.
func raw(t *testing.T, addr, head, body string) (int, string) {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(30 * time.Second))
	head = strings.ReplaceAll(strings.TrimSpace(head), "\n", "\r\n")
	if body != "" {
		head += fmt.Sprintf("\r\nContent-Length: %d", len(body))
	}
	if _, err := io.WriteString(conn, head+"\r\nConnection: close\r\n\r\n"+body); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// The requests below are what Chrome 124 and Firefox 125 send for the
// attacks of issue 9, headers copied from their network panels.
func TestBrowserRequestsAreRefused(t *testing.T) {
	q := realQueue(t)
	srv := httptest.NewServer(NewAPI(APIOptions{Queue: q, Logger: zerolog.Nop(), ListenHosts: []string{"agent.internal"}}))
	t.Cleanup(srv.Close)
	addr := srv.Listener.Addr().String()
	event := trigger("")

	for name, c := range map[string]struct {
		head, body, reason string
	}{
		"Chrome cross-site fetch, text/plain (no preflight)": {head: `POST /v2/enqueue HTTP/1.1
Host: ` + addr + `
sec-ch-ua: "Chromium";v="124", "Google Chrome";v="124", "Not-A.Brand";v="99"
sec-ch-ua-platform: "Linux"
sec-ch-ua-mobile: ?0
User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36
Content-Type: text/plain;charset=UTF-8
Accept: */*
Origin: http://evil.example
Sec-Fetch-Site: cross-site
Sec-Fetch-Mode: no-cors
Sec-Fetch-Dest: empty
Referer: http://evil.example/
Accept-Encoding: gzip, deflate, br, zstd
Accept-Language: en-US,en;q=0.9`, body: event, reason: "Origin: http://evil.example"},
		"Firefox form post": {head: `POST /v1/send HTTP/1.1
Host: ` + addr + `
User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0
Accept: text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8
Accept-Language: en-US,en;q=0.5
Accept-Encoding: gzip, deflate, br
Content-Type: text/plain
Origin: null
Upgrade-Insecure-Requests: 1
Sec-Fetch-Dest: document
Sec-Fetch-Mode: navigate
Sec-Fetch-Site: cross-site`, body: event, reason: "Origin: null"},
		"Chrome <img> of the status, no Origin": {head: `GET /v1/queue/status HTTP/1.1
Host: ` + addr + `
User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36
Accept: image/avif,image/webp,image/apng,image/svg+xml,image/*,*/*;q=0.8
Sec-Fetch-Site: cross-site
Sec-Fetch-Mode: no-cors
Sec-Fetch-Dest: image
Referer: http://evil.example/`, reason: "Sec-Fetch-Site: cross-site"},
		"DNS rebinding, same-origin GET": {head: `GET /v1/queue/status HTTP/1.1
Host: rebind.evil.example:` + fmt.Sprint(srv.Listener.Addr().(*net.TCPAddr).Port) + `
User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36
Accept: */*
Sec-Fetch-Site: same-origin
Sec-Fetch-Mode: cors
Sec-Fetch-Dest: empty`, reason: `rebind.evil.example:`},
		"DNS rebinding, curl-shaped": {head: `POST /v2/enqueue HTTP/1.1
Host: rebind.evil.example
User-Agent: curl/8.5.0
Accept: */*
Content-Type: application/x-www-form-urlencoded`, body: event, reason: "listen_hosts"},
	} {
		code, body := raw(t, addr, c.head, c.body)
		if code != http.StatusForbidden || !strings.Contains(body, c.reason) {
			t.Errorf("%s: %d %s; want 403 saying %q", name, code, body, c.reason)
		}
	}
	if n := pending(t, q); n != 0 {
		t.Fatalf("%d refused event(s) reached the queue", n)
	}

	// What PagerDuty's clients send passes: no Content-Type at all
	// (go-pdagent), a name from listen_hosts, and a page typed into the
	// address bar (Sec-Fetch-Site: none).
	for name, c := range map[string]struct {
		head, body string
		want       int
	}{
		"no Content-Type": {head: "POST /v2/enqueue HTTP/1.1\nHost: " + addr + "\nUser-Agent: go-pdagent", body: event, want: http.StatusAccepted},
		"localhost":       {head: "POST /v2/enqueue HTTP/1.1\nHost: localhost\nContent-Type: application/json", body: event, want: http.StatusAccepted},
		"[::1]":           {head: "GET /livez HTTP/1.1\nHost: [::1]:8787", want: http.StatusOK},
		"listen_hosts":    {head: "GET /livez HTTP/1.1\nHost: AGENT.internal.:8787", want: http.StatusOK},
		"address bar":     {head: "GET /metrics HTTP/1.1\nHost: 127.0.0.1:8787\nSec-Fetch-Site: none\nSec-Fetch-Mode: navigate", want: http.StatusNotFound},
	} {
		if code, body := raw(t, addr, c.head, c.body); code != c.want {
			t.Errorf("%s: %d %s, want %d", name, code, body, c.want)
		}
	}
	if n := pending(t, q); n != 2 {
		t.Fatalf("%d event(s) pending, want the 2 accepted", n)
	}
}

func TestAllowedOriginPasses(t *testing.T) {
	q := realQueue(t)
	srv := httptest.NewServer(NewAPI(APIOptions{Queue: q, Logger: zerolog.Nop(), AllowedOrigins: []string{"https://Ops.example.com/"}}))
	t.Cleanup(srv.Close)
	head := "POST /v2/enqueue HTTP/1.1\nHost: 127.0.0.1\nContent-Type: text/plain;charset=UTF-8\nSec-Fetch-Site: cross-site\nOrigin: "
	if code, body := raw(t, srv.Listener.Addr().String(), head+"https://ops.example.com", trigger("")); code != http.StatusAccepted {
		t.Fatalf("allowed origin: %d %s", code, body)
	}
	if code, _ := raw(t, srv.Listener.Addr().String(), head+"https://ops.example.com.evil.example", trigger("")); code != http.StatusForbidden {
		t.Fatalf("an origin that only starts like an allowed one: %d, want 403", code)
	}
}

// TestCurlPassesTheBrowserRules runs the README's example with the real
// curl: -d sends application/x-www-form-urlencoded and no Origin.
func TestCurlPassesTheBrowserRules(t *testing.T) {
	curl, err := exec.LookPath("curl")
	if err != nil {
		t.Fatal("curl is not installed: apt-get install curl (.ci/run does); this test checks the real client still gets through")
	}
	q := realQueue(t)
	srv := httptest.NewServer(NewAPI(APIOptions{Queue: q, Logger: zerolog.Nop()}))
	t.Cleanup(srv.Close)
	port := srv.Listener.Addr().(*net.TCPAddr).Port
	for _, url := range []string{srv.URL, fmt.Sprintf("http://localhost:%d", port)} {
		out, err := exec.CommandContext(t.Context(), curl, "-sS", "--noproxy", "*", "-X", "POST", url+"/v2/enqueue", "-d", trigger(""),
			"-w", "\n%{http_code}").CombinedOutput()
		if err != nil {
			t.Fatalf("curl %s: %v\n%s", url, err, out)
		}
		if !strings.HasSuffix(strings.TrimSpace(string(out)), "202") {
			t.Fatalf("curl -d %s: %s, want 202", url, out)
		}
	}
	if n := pending(t, q); n != 2 {
		t.Fatalf("%d pending, want 2", n)
	}
}
