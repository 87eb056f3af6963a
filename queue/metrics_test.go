package queue

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// TestMetricsNeverFailAndStayBounded: keys whose labels collide (here a
// label of 4 characters, as the agent once used) and more keys than the top
// N still give a scrape that Prometheus' own parser reads, with one series
// per label and the rest summed under "other".
func TestMetricsNeverFailAndStayBounded(t *testing.T) {
	reg := prometheus.NewRegistry()
	q := openQueue(t, newSystem(t), Options{Dir: t.TempDir(), Registerer: reg, MetricsKeys: 3,
		KeyLabel: func(k string) string { return k[:min(len(k), 11)] }})
	ctx := context.Background()
	// events/R012 + anything: every key below has the same label.
	for i := range 10 {
		items := make([][]byte, 10-i) // key i has 10-i pending
		for j := range items {
			items[j] = []byte("x")
		}
		if err := q.Enqueue(ctx, fmt.Sprintf("events/R012%02d", i), items, Wait); err != nil {
			t.Fatal(err)
		}
	}
	if err := q.Enqueue(ctx, "events/\xff\xfe bad utf-8", [][]byte{[]byte("x")}, Wait); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	t.Cleanup(srv.Close)
	resp, err := http.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("scrape answered %d", resp.StatusCode)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("Prometheus' parser refuses the scrape: %v", err)
	}
	items := fams["courier_queue_items"]
	if items == nil {
		t.Fatal("no courier_queue_items")
	}
	pending := map[string]float64{}
	seen := map[string]bool{}
	for _, m := range items.GetMetric() {
		var key, state string
		for _, l := range m.GetLabel() {
			switch l.GetName() {
			case "routing_key":
				key = l.GetValue()
			case "state":
				state = l.GetValue()
			}
		}
		id := key + "/" + state
		if seen[id] {
			t.Errorf("duplicate series %s", id)
		}
		seen[id] = true
		if state == "pending" {
			pending[key] = m.GetGauge().GetValue()
		}
	}
	// Top 3 by pending: 10, 9, 8 share one label (27); the other 8 keys
	// (7+6+...+1 = 28, plus the bad one) are summed.
	if pending["events/R012"] != 27 || pending["other"] != 29 || len(pending) != 2 {
		t.Fatalf("pending by label %v, want events/R012 27 and other 29", pending)
	}
	if n := fams["courier_queue_routing_keys"].GetMetric()[0].GetGauge().GetValue(); n != 11 {
		t.Errorf("courier_queue_routing_keys %v, want 11", n)
	}
}
