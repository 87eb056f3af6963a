package cli_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// alertmanagerTemplates is where Debian's build of Alertmanager reads its
// default templates from (a path compiled into the binary, not a flag).
const alertmanagerTemplates = "/usr/share/prometheus/alertmanager"

// alertmanagerBin finds Debian's prometheus-alertmanager unpacked by
// .ci/run, or fails the test saying how to get it: a missing client is a
// failure, never a silent skip.
func alertmanagerBin(t testing.TB) string {
	t.Helper()
	dir := filepath.Join(clientsCache(), "alertmanager")
	p := filepath.Join(dir, "usr", "bin", "prometheus-alertmanager")
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("prometheus-alertmanager is not unpacked at %s: run .ci/run, or `apt-get download prometheus-alertmanager && dpkg -x prometheus-alertmanager_*.deb %s` (Debian's package; no service is installed)", p, dir)
	}
	if _, err := os.Stat(filepath.Join(alertmanagerTemplates, "default.tmpl")); err != nil {
		t.Fatalf("Debian's Alertmanager reads its templates from %s, which has no default.tmpl: run .ci/run, or `mkdir -p %[1]s && cp %s/*.tmpl %[1]s/` (as root)",
			alertmanagerTemplates, filepath.Join(dir, alertmanagerTemplates))
	}
	return p
}

// TestE2EAlertmanager: Prometheus Alertmanager (Debian's build, unchanged)
// with a pagerduty_config whose url is courier's local Events API fires and
// resolves an alert through service-run. The upstream receives the trigger,
// then the resolve with the same dedup_key, each exactly as Alertmanager
// sent it to a second pagerduty_config pointed straight at a recorder.
// Alertmanager sends no Origin or Sec-Fetch-Site header, so the browser
// rules of the local API let it through without allowed_origins.
func TestE2EAlertmanager(t *testing.T) {
	root := e2e(t)
	am := alertmanagerBin(t)
	initRoot(t, root)
	key := routingKeys(t, 1)[0]
	up := newFakeUpstream(t)
	svc := startServiceRun(t, root, up)
	direct := newFakeUpstream(t) // what PagerDuty itself would have received

	dir := t.TempDir()
	conf := fmt.Sprintf(`global:
  resolve_timeout: 1m
route:
  receiver: courier
  group_by: [alertname]
  group_wait: 1s
  group_interval: 1s
  repeat_interval: 1h
receivers:
  - name: courier
    pagerduty_configs:
      - routing_key: %[1]s
        url: http://%[2]s/v2/enqueue
      - routing_key: %[1]s
        url: %[3]s
`, key, strings.TrimPrefix(svc.base, "http://"), direct.url())
	confPath := writeFile(t, dir, "alertmanager.yml", conf)
	logPath := filepath.Join(dir, "alertmanager.log")
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	cmd := exec.Command(am, "--config.file="+confPath, "--storage.path="+filepath.Join(dir, "data"),
		"--cluster.listen-address=", "--web.listen-address=127.0.0.1:0", "--log.level=debug")
	// The refusing proxy of childEnv catches anything not on loopback.
	cmd.Env = append(childEnv(), "NO_PROXY=127.0.0.1", "no_proxy=127.0.0.1")
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-done
		if t.Failed() {
			b, _ := os.ReadFile(logPath)
			t.Logf("alertmanager's log (last 40 lines):\n%s", tailLines(string(b), 40))
		}
	})

	// Alertmanager logs the address it bound: `msg="Listening on" address=127.0.0.1:PORT`.
	listening := regexp.MustCompile(`msg="Listening on" address=(127\.0\.0\.1:\d+)`)
	var base string
	deadline := time.Now().Add(startDeadline)
	for base == "" {
		b, _ := os.ReadFile(logPath)
		if m := listening.FindSubmatch(b); m != nil {
			base = "http://" + string(m[1])
			break
		}
		select {
		case <-done:
			t.Fatalf("alertmanager exited before listening:\n%s", tailLines(string(b), 40))
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("alertmanager did not listen within %s:\n%s", startDeadline, tailLines(string(b), 40))
		}
		time.Sleep(50 * time.Millisecond)
	}

	hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{}}
	defer hc.CloseIdleConnections()
	postAlert := func(endsAt time.Time) {
		t.Helper()
		alerts := []map[string]any{{
			"labels":       map[string]string{"alertname": "DiskFull", "instance": "db1:9100", "severity": "critical"},
			"annotations":  map[string]string{"summary": "disk full on db1"},
			"startsAt":     time.Now().Add(-time.Minute).UTC().Format(time.RFC3339),
			"endsAt":       endsAt.UTC().Format(time.RFC3339),
			"generatorURL": "http://prometheus.example/graph",
		}}
		body, _ := json.Marshal(alerts)
		resp, err := hc.Post(base+"/api/v2/alerts", "application/json", bytes.NewReader(body))
		if err != nil {
			t.Fatalf("POST /api/v2/alerts: %v", err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("POST /api/v2/alerts: %d %s", resp.StatusCode, b)
		}
	}

	postAlert(time.Now().Add(time.Hour)) // firing
	up.waitFor(t, "Alertmanager's trigger", func(a []arrival) bool { return len(a) >= 1 })
	postAlert(time.Now().Add(-time.Second)) // ended: resolved at the next group_interval
	arr := up.waitFor(t, "Alertmanager's resolve", func(a []arrival) bool {
		return len(a) >= 2 && a[len(a)-1].event.EventAction == "resolve"
	})
	ref := direct.waitFor(t, "the resolve sent straight to the recorder", func(a []arrival) bool {
		return len(a) >= 2 && a[len(a)-1].event.EventAction == "resolve"
	})

	trigger, resolve := arr[0], arr[len(arr)-1]
	if trigger.path != "/v2/enqueue" || trigger.event.EventAction != "trigger" || trigger.event.RoutingKey != key {
		t.Fatalf("first arrival is not Alertmanager's trigger on %s: %s %s", key, trigger.path, trigger.body)
	}
	if trigger.event.DedupKey == "" || resolve.event.DedupKey != trigger.event.DedupKey {
		t.Fatalf("the resolve's dedup_key %q is not the trigger's %q", resolve.event.DedupKey, trigger.event.DedupKey)
	}
	// Alertmanager's defaults: its template's summary, severity "error".
	if !strings.HasPrefix(trigger.event.Payload.Summary, "[FIRING:1] DiskFull") || trigger.event.Payload.Severity != "error" {
		t.Errorf("trigger payload as received: %s", trigger.body)
	}
	for i, a := range arr {
		if a.event.EventAction == "resolve" && i != len(arr)-1 {
			t.Fatalf("a resolve (arrival %d) came before the last event: %d arrivals", i, len(arr))
		}
	}
	// Through courier or straight, the same bytes: courier changed nothing.
	sameJSON := func(what string, got, want []byte) {
		t.Helper()
		var g, w any
		if json.Unmarshal(got, &g) != nil || json.Unmarshal(want, &w) != nil {
			t.Fatalf("%s: not JSON:\n%s\n%s", what, got, want)
		}
		gb, _ := json.Marshal(g)
		wb, _ := json.Marshal(w)
		if !bytes.Equal(gb, wb) {
			t.Errorf("%s through courier:\n %s\nstraight from Alertmanager:\n %s", what, got, want)
		}
	}
	sameJSON("trigger", trigger.body, ref[0].body)
	sameJSON("resolve", resolve.body, ref[len(ref)-1].body)

	// Nothing was refused on the way: Alertmanager logged no failed notify.
	b, _ := os.ReadFile(logPath)
	if regexp.MustCompile(`(?i)level=error.*(notify|pagerduty)`).Match(b) {
		t.Errorf("alertmanager logged a failed notification:\n%s", tailLines(string(b), 40))
	}
}
