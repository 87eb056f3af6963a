package events

import (
	"context"
	"net/http/httptrace"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/rs/zerolog"

	"courier/internal/conntest"
	"courier/queue"
)

// TestPagerDutySinkCapsConnections delivers for many routing keys at once
// while the upstream holds every request: no more than MaxConnections
// connections are opened, the other deliveries wait for one.
func TestPagerDutySinkCapsConnections(t *testing.T) {
	const capN, keys = 3, 12
	srv := conntest.NewServer(t, 202, `{"status":"success","message":"Event processed"}`)
	sink, err := NewPagerDutySink(PagerDutyOptions{URL: srv.URL + "/v2/enqueue", MaxConnections: capN, Logger: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	payload, err := EncodeStored(Stored{API: APIv2, Event: []byte(trigger(""))})
	if err != nil {
		t.Fatal(err)
	}
	var asked atomic.Int64
	trace := &httptrace.ClientTrace{GetConn: func(string) { asked.Add(1) }}
	ctx := httptrace.WithClientTrace(context.Background(), trace)
	var wg sync.WaitGroup
	errs := make(chan error, keys)
	for range keys {
		wg.Go(func() {
			errs <- sink.Deliver(ctx, QueueKey(testKey), []queue.Message{{Seq: 1, Payload: payload}})
		})
	}
	conntest.WaitFor(t, "every delivery to ask for a connection and the cap to fill", func() bool {
		return asked.Load() == keys && srv.Inflight() >= capN
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
		t.Fatalf("%d connections for %d deliveries, want at most %d", n, keys, capN)
	}
}
