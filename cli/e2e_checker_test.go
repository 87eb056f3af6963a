package cli_test

import (
	"strings"
	"testing"
	"time"
)

// TestDeliveryCheckerCatchesProblems feeds the delivery checker of the
// end-to-end tests made-up arrivals: it must pass a good run and name each
// kind of broken one. A checker that passes everything would make the
// end-to-end tests worthless.
func TestDeliveryCheckerCatchesProblems(t *testing.T) {
	const keyA, keyB = "kAxxaaaaaaaaaaaaaaaaaaaaaaaaaaaa", "kBxxbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
	t0 := time.Now()
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	// Client 0 on key A sent events 0..2, each after the previous one's 202;
	// client 1, also on key A, sent event 0 after client 0's event 1 was
	// accepted. Client 0's event 1 needed a retry.
	clients := func() []*eventClient {
		return []*eventClient{
			{id: 0, key: keyA, accepted: 3, attempted: 3, retried: map[int]bool{1: true},
				firstTry: []time.Time{at(0), at(10), at(20)}, ackAt: []time.Time{at(5), at(15), at(25)}},
			{id: 1, key: keyA, accepted: 1, attempted: 1, retried: map[int]bool{},
				firstTry: []time.Time{at(17)}, ackAt: []time.Time{at(30)}},
		}
	}
	ev := func(key string, client, seq, epoch int) arrival {
		a := arrival{path: "/v2/enqueue", epoch: epoch, status: 202}
		a.event.RoutingKey = key
		a.event.Payload.CustomDetails = map[string]any{"client": float64(client), "seq": float64(seq)}
		return a
	}
	good := []arrival{ev(keyA, 0, 0, 0), ev(keyA, 0, 1, 0), ev(keyA, 1, 0, 0), ev(keyA, 0, 2, 0)}
	if p := deliveryProblems(good, clients(), false); len(p) != 0 {
		t.Fatalf("a good run has problems: %v", p)
	}
	refused := ev(keyA, 0, 2, 0)
	refused.status = 503
	tests := []struct {
		name     string
		arr      []arrival
		allowDup bool
		want     string // in a problem, or "" for none
	}{
		{"lost", []arrival{ev(keyA, 0, 0, 0), ev(keyA, 0, 1, 0), ev(keyA, 1, 0, 0)}, true, "never arrived"},
		{"refused upstream only", []arrival{ev(keyA, 0, 0, 0), ev(keyA, 0, 1, 0), ev(keyA, 1, 0, 0), refused}, true, "never arrived"},
		{"out of order", []arrival{ev(keyA, 0, 1, 0), ev(keyA, 0, 0, 0), ev(keyA, 1, 0, 0), ev(keyA, 0, 2, 0)}, true, "arrived before event 0"},
		{"wrong key", []arrival{ev(keyA, 0, 0, 0), ev(keyB, 0, 1, 0), ev(keyA, 1, 0, 0), ev(keyA, 0, 2, 0)}, true, "routing key"},
		{"never sent", append(good, ev(keyA, 0, 3, 0)), true, "never sent"},
		{"order across clients", []arrival{ev(keyA, 0, 0, 0), ev(keyA, 1, 0, 0), ev(keyA, 0, 1, 0), ev(keyA, 0, 2, 0)}, true, "accepted before client 1 sent"},
		{"duplicate without a reason", append(good, ev(keyA, 0, 2, 0)), true, "without a reason"},
		{"duplicate in a strict run", append(good, ev(keyA, 0, 1, 0)), false, "arrived twice"},
		{"duplicate of a retried event", append(good, ev(keyA, 0, 1, 0)), true, ""},
		{"re-sent after a kill", append(good, ev(keyA, 0, 2, 1), ev(keyA, 1, 0, 1)), true, ""},
		{"re-sent twice in one epoch", append(good, ev(keyA, 0, 2, 1), ev(keyA, 0, 2, 1)), true, "without a reason"},
		{"re-sent after two kills", append(good, ev(keyA, 0, 2, 1), ev(keyA, 0, 2, 2)), true, ""},
		{"re-sent after new events", []arrival{ev(keyA, 0, 0, 0), ev(keyA, 0, 1, 0), ev(keyA, 1, 0, 0), ev(keyA, 0, 2, 1), ev(keyA, 1, 0, 1)}, true, "after new events"},
		{"re-sent before new events", []arrival{ev(keyA, 0, 0, 0), ev(keyA, 0, 1, 0), ev(keyA, 1, 0, 0), ev(keyA, 1, 0, 1), ev(keyA, 0, 2, 1)}, true, ""},
	}
	for _, tc := range tests {
		p := deliveryProblems(tc.arr, clients(), tc.allowDup)
		switch {
		case tc.want == "" && len(p) != 0:
			t.Errorf("%s: unexpected problems %v", tc.name, p)
		case tc.want != "" && !strings.Contains(strings.Join(p, "\n"), tc.want):
			t.Errorf("%s: problems %v, want one saying %q", tc.name, p, tc.want)
		}
	}
}
