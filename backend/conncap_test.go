package backend

import (
	"context"
	"net/http/httptrace"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/rs/zerolog"

	"courier/internal/conntest"
)

// TestClientCapsConnections: many acks at once reach the backend over at
// most MaxConnections connections.
func TestClientCapsConnections(t *testing.T) {
	const capN, calls = 2, 10
	srv := conntest.NewServer(t, 204, "")
	c, err := New(Options{URL: srv.URL, APIKey: "key-123", MaxConnections: capN, Logger: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseIdleConnections()
	var asked atomic.Int64
	ctx := httptrace.WithClientTrace(context.Background(), &httptrace.ClientTrace{GetConn: func(string) { asked.Add(1) }})
	var wg sync.WaitGroup
	errs := make(chan error, calls)
	for range calls {
		wg.Go(func() { errs <- c.Ack(ctx, "cmd_1") })
	}
	conntest.WaitFor(t, "every call to ask for a connection and the cap to fill", func() bool {
		return asked.Load() == calls && srv.Inflight() >= capN
	})
	srv.Release()
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if n := srv.Conns(); n > capN {
		t.Fatalf("%d connections for %d calls, want at most %d", n, calls, capN)
	}
}
