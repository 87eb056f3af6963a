package events

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

// TestTooLargeAnswerIsReadable sends a 600 KiB event in two halves, as a
// client on a slow link does: the server must not answer (and then close)
// before the client has sent it all, or the client sees a connection reset
// instead of the 413 and retries forever.
func TestTooLargeAnswerIsReadable(t *testing.T) {
	var read atomic.Int64
	api := NewAPI(APIOptions{Queue: realQueue(t), Logger: zerolog.Nop()})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.Body = countingBody{r.Body, &read}
		api.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	addr := srv.Listener.Addr().String()
	body := trigger(`"pad":"` + strings.Repeat("x", 600<<10) + `",`)
	for name, framing := range map[string]string{
		"Content-Length": fmt.Sprintf("Content-Length: %d", len(body)),
		"chunked":        "Transfer-Encoding: chunked",
	} {
		read.Store(0)
		conn, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		_ = conn.SetDeadline(time.Now().Add(time.Minute))
		payload := body
		if framing == "Transfer-Encoding: chunked" {
			var b strings.Builder
			for rest := body; rest != ""; {
				n := min(len(rest), 32<<10)
				fmt.Fprintf(&b, "%x\r\n%s\r\n", n, rest[:n])
				rest = rest[n:]
			}
			payload = b.String() + "0\r\n\r\n"
		}
		req := "POST /v2/enqueue HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n" + framing + "\r\n\r\n" + payload
		answered := make(chan *http.Response, 1)
		go func() {
			resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
			if err != nil {
				resp = nil
			}
			answered <- resp
		}()
		half := len(req) / 2
		if _, err := io.WriteString(conn, req[:half]); err != nil {
			t.Fatal(err)
		}
		// Pause mid-body until the server has either read what was sent
		// or answered: answering now would be answering a client that is
		// still sending.
		var early *http.Response
		waitFor(t, func() bool {
			select {
			case early = <-answered:
				return true
			default:
				return read.Load() >= int64(len(body)/3)
			}
		}, "the server to read the first half of the body")
		if early != nil {
			t.Fatalf("%s: the server answered %d while the client was still sending (a client then sees a reset)", name, early.StatusCode)
		}
		if _, err := io.WriteString(conn, req[half:]); err != nil {
			t.Fatalf("%s: the server stopped reading the body: %v", name, err)
		}
		resp := <-answered
		if resp == nil {
			t.Fatalf("%s: no readable answer", name)
		}
		b, _ := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		_ = conn.Close()
		if resp.StatusCode != http.StatusRequestEntityTooLarge || !strings.Contains(string(b), "larger than 512 KiB") {
			t.Fatalf("%s: %d %s, want 413", name, resp.StatusCode, b)
		}
	}
}

type countingBody struct {
	io.ReadCloser
	n *atomic.Int64
}

func (c countingBody) Read(p []byte) (int, error) {
	n, err := c.ReadCloser.Read(p)
	c.n.Add(int64(n))
	return n, err
}

// TestTooLargePastTheDrainBoundCloses: a body far past the limit is not
// read to its end; the answer says so and the connection closes.
func TestTooLargePastTheDrainBoundCloses(t *testing.T) {
	srv := apiServer(t, realQueue(t))
	conn, err := net.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(time.Minute))
	size := MaxBodyBytes + maxDrainBytes + 1
	// Expect: 100-continue, as curl sends for a large body: the client waits
	// for the go-ahead, gets the 413 instead and sends nothing.
	head := fmt.Sprintf("POST /v2/enqueue HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: %d\r\nExpect: 100-continue\r\n\r\n", size)
	if _, err := io.WriteString(conn, head); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusRequestEntityTooLarge || !resp.Close {
		t.Fatalf("%d (close %v), want 413 closing the connection", resp.StatusCode, resp.Close)
	}
}
