package cli_test

import (
	"encoding/json"
	"testing"

	"github.com/PagerDuty/go-pagerduty"
)

// TestE2EGoPagerDuty: go-pagerduty's ManageEvent and CreateChangeEvent,
// pointed at service-run unchanged but for the endpoint, get PagerDuty's
// answers, and the upstream receives exactly the bytes the client sent.
func TestE2EGoPagerDuty(t *testing.T) {
	root := e2e(t)
	initRoot(t, root)
	key := routingKeys(t, 1)[0]
	up := newFakeUpstream(t)
	startServiceRun(t, root, up)
	info, err := readServiceJSON(root)
	if err != nil {
		t.Fatal(err)
	}
	c := pagerduty.NewClient("", pagerduty.WithV2EventsAPIEndpoint("http://"+loopback(info.Listen)))

	trigger := &pagerduty.V2Event{
		RoutingKey: key, Action: "trigger", DedupKey: "srv01/mysql", Client: "Sample Monitoring Service", ClientURL: "https://monitoring.service.com",
		Payload: &pagerduty.V2Payload{Summary: "DISK at 99% on machine prod-datapipe03.example.com", Source: "prod-datapipe03.example.com",
			Severity: "critical", Timestamp: "2015-07-17T08:42:58.315+0000", Component: "mysql", Group: "prod-datapipe", Class: "disk",
			Details: map[string]any{"free space": "1%", "ping time": "1500ms", "load avg": 0.75}},
		Links:  []any{map[string]string{"href": "http://pagerduty.example.com", "text": "An example link."}},
		Images: []any{map[string]string{"src": "https://chart.googleapis.com/chart?chs=600x400", "href": "https://google.com", "alt": "An example link with an image"}},
	}
	resolve := &pagerduty.V2Event{RoutingKey: key, Action: "resolve", DedupKey: "srv01/mysql"}
	change := pagerduty.ChangeEvent{RoutingKey: key, Payload: pagerduty.ChangeEventPayload{
		Summary: "Build Success: Increase snapshot create timeout to 30 seconds", Source: "acme-build-pipeline-tool-default-i-9999",
		Timestamp: "2020-07-17T08:42:58.315+0000", CustomDetails: map[string]any{"build_state": "passed", "build_number": "2"}},
		Links: []pagerduty.ChangeEventLink{{Href: "https://acme.pagerduty.dev/build/2", Text: "View more details in Acme!"}}}

	r, err := c.ManageEventWithContext(t.Context(), trigger)
	if err != nil || r.Status != "success" || r.DedupKey != "srv01/mysql" || r.Message != "Event processed" {
		t.Fatalf("ManageEvent trigger: %+v %v", r, err)
	}
	cr, err := c.CreateChangeEventWithContext(t.Context(), change)
	if err != nil || cr.Status != "success" || cr.Message != "Change event processed" {
		t.Fatalf("CreateChangeEvent: %+v %v", cr, err)
	}
	if r, err = c.ManageEventWithContext(t.Context(), resolve); err != nil || r.Status != "success" {
		t.Fatalf("ManageEvent resolve: %+v %v", r, err)
	}
	// An invalid event gets a 400, which the client reports as an
	// APIError (its Client methods read error bodies as the REST API's).
	if _, err := c.ManageEventWithContext(t.Context(), &pagerduty.V2Event{RoutingKey: key, Action: "acknowledge"}); err == nil {
		t.Fatal("acknowledge without dedup_key was accepted")
	} else if e, ok := err.(pagerduty.APIError); !ok || e.StatusCode != 400 {
		t.Fatalf("want a 400 as go-pagerduty reads it, got %T %v", err, err)
	}

	arr := up.waitFor(t, "three events", func(a []arrival) bool { return len(a) >= 3 })
	want := []struct {
		path string
		v    any
	}{{"/v2/enqueue", trigger}, {"/v2/change/enqueue", change}, {"/v2/enqueue", resolve}}
	for i, w := range want {
		sent, _ := json.Marshal(w.v) // what the client put on the wire
		if arr[i].path != w.path || string(arr[i].body) != string(sent) {
			t.Errorf("arrival %d: %s %s\nwant %s %s", i, arr[i].path, arr[i].body, w.path, sent)
		}
	}
}
