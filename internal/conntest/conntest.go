// Package conntest measures how many connections a client opens to a real
// loopback server when many requests run at once; tests of the upstream
// clients' connection caps use it.
package conntest

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Server holds every request until Release, and counts connections.
type Server struct {
	*httptest.Server
	conns    atomic.Int64 // accepted, ever
	inflight atomic.Int64
	release  chan struct{}
	once     sync.Once
}

// NewServer starts a server on 127.0.0.1 answering status to every request
// once released.
func NewServer(t *testing.T, status int, body string) *Server {
	t.Helper()
	s := &Server{release: make(chan struct{})}
	s.Server = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.inflight.Add(1)
		defer s.inflight.Add(-1)
		select {
		case <-s.release:
		case <-r.Context().Done():
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_, _ = w.Write([]byte(body))
	}))
	s.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		if st == http.StateNew {
			s.conns.Add(1)
		}
	}
	s.Start()
	t.Cleanup(func() { s.Release(); s.Close() })
	return s
}

// Release lets every held request, and every later one, be answered.
func (s *Server) Release() { s.once.Do(func() { close(s.release) }) }

// Conns is how many connections the server has accepted.
func (s *Server) Conns() int64 { return s.conns.Load() }

// Inflight is how many requests the server holds now.
func (s *Server) Inflight() int64 { return s.inflight.Load() }

// WaitFor polls cond until it holds, failing the test after a minute.
func WaitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-ctx.Done():
			t.Fatalf("gave up waiting for %s", what)
		case <-tick.C:
		}
	}
}
