package cli_test

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
)

// TestE2EChangeEvents: change events taken over HTTP (PagerDuty's path) and
// by `courier send --change` reach the change endpoint next to events.url,
// byte for byte as accepted, in order with the key's alerts.
func TestE2EChangeEvents(t *testing.T) {
	root := e2e(t)
	initRoot(t, root)
	key := routingKeys(t, 1)[0]
	up := newFakeUpstream(t)
	svc := startServiceRun(t, root, up)
	base := svc.base

	post := func(path, body string) (int, string) {
		t.Helper()
		resp, err := http.Post(base+path, "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, strings.TrimSpace(string(b))
	}
	trigger := `{"routing_key":"` + key + `","event_action":"trigger","dedup_key":"deploy-1","payload":{"summary":"error rate up","source":"web1","severity":"error"}}`
	change := `{"routing_key":"` + key + `","payload":{"summary":"Build Success: Increase snapshot create timeout to 30 seconds","timestamp":"2020-07-17T08:42:58.315+0000","source":"acme-build-pipeline-tool-default-i-9999","custom_details":{"build_state":"passed","build_number":"2","run_time":"1236s"}},"links":[{"href":"https://acme.pagerduty.dev/build/2","text":"View more details in Acme!"}]}`
	if code, body := post("/v2/enqueue", trigger); code != http.StatusAccepted {
		t.Fatalf("trigger: %d %s", code, body)
	}
	if code, body := post("/v2/change/enqueue", change); code != http.StatusAccepted || body != `{"status":"success","message":"Change event processed"}` {
		t.Fatalf("change: %d %s", code, body)
	}
	if code, body := post("/v2/change/enqueue", `{"routing_key":"`+key+`","payload":{"source":"ci"}}`); code != http.StatusBadRequest || !strings.Contains(body, "'payload.summary' is missing or blank") {
		t.Fatalf("change without summary: %d %s", code, body)
	}
	r := runCourier(t, root, "send", "--change", "-k", key, "-d", "deployed v2.1", "-s", "ci", "-f", "sha=abc123",
		"--link", "https://ci.example.com/7", "--link-text", "build 7")
	if r.code != 0 || !strings.Contains(r.stdout, "Change event processed") {
		t.Fatalf("courier send --change:\n%s", r)
	}
	if r := runCourier(t, root, "send", "--change", "-k", key, "-d", "x", "-t", "trigger"); r.code != 2 || !strings.Contains(r.stderr, "--event-type does not go with --change") {
		t.Errorf("send --change -t: want exit 2 saying why:\n%s", r)
	}
	if r := runCourier(t, root, "send", "-k", key, "-d", "x"); r.code != 2 || !strings.Contains(r.stderr, "--change") {
		t.Errorf("send without -t or --change: want exit 2 naming both:\n%s", r)
	}
	if code, body := post("/v2/enqueue", `{"routing_key":"`+key+`","event_action":"resolve","dedup_key":"deploy-1"}`); code != http.StatusAccepted {
		t.Fatalf("resolve: %d %s", code, body)
	}

	arr := up.waitFor(t, "four events", func(a []arrival) bool { return len(a) >= 4 })
	wantPaths := []string{"/v2/enqueue", "/v2/change/enqueue", "/v2/change/enqueue", "/v2/enqueue"}
	for i, a := range arr[:4] {
		if a.path != wantPaths[i] {
			t.Fatalf("arrival %d at %s, want %s (order %v)", i, a.path, wantPaths[i], arr)
		}
	}
	if string(arr[1].body) != change {
		t.Errorf("the change event was not forwarded as accepted:\n got %s\nwant %s", arr[1].body, change)
	}
	var sent struct {
		RoutingKey string `json:"routing_key"`
		Payload    struct {
			Summary, Source string
			CustomDetails   map[string]string `json:"custom_details"`
		}
		Links []struct{ Href, Text string }
	}
	if err := json.Unmarshal(arr[2].body, &sent); err != nil {
		t.Fatal(err)
	}
	if sent.RoutingKey != key || sent.Payload.Summary != "deployed v2.1" || sent.Payload.Source != "ci" || sent.Payload.CustomDetails["sha"] != "abc123" ||
		len(sent.Links) != 1 || sent.Links[0].Href != "https://ci.example.com/7" || sent.Links[0].Text != "build 7" {
		t.Errorf("send --change forwarded %s", arr[2].body)
	}
	if strings.Contains(string(arr[2].body), "event_action") || strings.Contains(string(arr[2].body), "dedup_key") {
		t.Errorf("a change event carries alert fields: %s", arr[2].body)
	}
}
