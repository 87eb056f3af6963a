package cli_test

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

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
	svc := startServiceRun(t, root, up)
	c := pagerduty.NewClient("", pagerduty.WithV2EventsAPIEndpoint(svc.base))

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

// clientsCache is where .ci/run installs the PagerDuty clients nobody here
// wrote (npm's pagerduty-cli, Debian's prometheus-alertmanager).
func clientsCache() string {
	if d := os.Getenv("COURIER_CLIENTS_DIR"); d != "" {
		return d
	}
	home, _ := os.UserHomeDir()
	return filepath.Join(home, ".cache", "courier-clients")
}

// pdCLI finds pagerduty-cli's pd, or fails the test saying how to install
// it: a missing client is a failure, never a silent skip.
func pdCLI(t testing.TB) string {
	t.Helper()
	p := filepath.Join(clientsCache(), "npm", "node_modules", ".bin", "pd")
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("pagerduty-cli is not installed at %s: run .ci/run, or `npm install --prefix %s pagerduty-cli@0.1.18` (needs node and npm)",
			p, filepath.Join(clientsCache(), "npm"))
	}
	if _, err := exec.LookPath("node"); err != nil {
		t.Fatal("pagerduty-cli needs node: `apt-get install nodejs npm` (or run .ci/run)")
	}
	return p
}

// TestE2EPagerDutyCLI: pagerduty-cli's `pd event:alert` and `pd
// event:change`, with -e pointing at service-run, succeed, and the upstream
// receives the events as PagerDuty would have from pd.
func TestE2EPagerDutyCLI(t *testing.T) {
	root := e2e(t)
	pd := pdCLI(t)
	initRoot(t, root)
	key := routingKeys(t, 1)[0]
	up := newFakeUpstream(t)
	svc := startServiceRun(t, root, up)
	base := svc.base
	home := t.TempDir() // pd keeps its config and caches under HOME
	run := func(args ...string) string {
		t.Helper()
		ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, pd, args...)
		// Unlike Go, axios proxies loopback too unless NO_PROXY says not to;
		// the refusing proxy of childEnv still catches anything else.
		cmd.Env = append(childEnv(), "NO_PROXY=127.0.0.1", "no_proxy=127.0.0.1", "HOME="+home, "PATH="+filepath.Dir(pd)+string(os.PathListSeparator)+os.Getenv("PATH"))
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("pd %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	out := run("event:alert", "-r", key, "-a", "trigger", "-d", "disk/db1", "--summary", "disk full on db1", "--source", "db1",
		"--severity", "critical", "-k", "mount", "-v", "/var", "-L", "https://runbooks.example.com/disk", "-T", "runbook",
		"-e", base+"/v2/enqueue")
	if !strings.Contains(out, "Event processed") {
		t.Fatalf("pd event:alert printed %q", out)
	}
	out = run("event:change", "-r", key, "--summary", "deployed db1 schema 42", "--source", "ci", "-k", "build", "-v", "b42",
		"-L", "https://ci.example.com/42", "-e", base+"/v2/change/enqueue")
	if !strings.Contains(out, "Change event processed") {
		t.Fatalf("pd event:change printed %q", out)
	}
	// pd requires a summary and source even on resolve; PagerDuty ignores them there.
	run("event:alert", "-r", key, "-a", "resolve", "-d", "disk/db1", "--summary", "disk ok", "--source", "db1", "-e", base+"/v2/enqueue")

	arr := up.waitFor(t, "three events", func(a []arrival) bool { return len(a) >= 3 })
	var alert, change, resolve map[string]any
	for i, v := range []*map[string]any{&alert, &change, &resolve} {
		if err := json.Unmarshal(arr[i].body, v); err != nil {
			t.Fatal(err)
		}
	}
	if arr[0].path != "/v2/enqueue" || arr[1].path != "/v2/change/enqueue" || arr[2].path != "/v2/enqueue" {
		t.Fatalf("paths %s %s %s", arr[0].path, arr[1].path, arr[2].path)
	}
	check := func(what string, got map[string]any, want string) {
		t.Helper()
		var w map[string]any
		_ = json.Unmarshal([]byte(want), &w)
		g, _ := json.Marshal(got)
		wb, _ := json.Marshal(w)
		if string(g) != string(wb) {
			t.Errorf("%s reached the upstream as\n %s\nwant\n %s", what, g, wb)
		}
	}
	check("pd event:alert trigger", alert, `{"routing_key":"`+key+`","event_action":"trigger","dedup_key":"disk/db1",
		"payload":{"summary":"disk full on db1","source":"db1","severity":"critical","custom_details":{"mount":"/var"}},
		"links":[{"href":"https://runbooks.example.com/disk","text":"runbook"}]}`)
	check("pd event:change", change, `{"routing_key":"`+key+`","payload":{"summary":"deployed db1 schema 42","source":"ci",
		"custom_details":{"build":"b42"}},"links":[{"href":"https://ci.example.com/42"}]}`)
	if resolve["event_action"] != "resolve" || resolve["dedup_key"] != "disk/db1" || resolve["routing_key"] != key {
		t.Errorf("pd event:alert resolve reached the upstream as %s", arr[2].body)
	}
}
