package cli_test

import (
	"net/http"
	"regexp"
	"strings"
	"testing"

	"courier/internal/redact"
)

// TestE2EStatusKeysCanBeActedOn: two refused keys that share their first
// four characters show as two different forms in `courier status`, each
// with the upstream's reason and its time; the form shown is what
// `courier retry -k` takes; --show-keys shows the keys whole.
func TestE2EStatusKeysCanBeActedOn(t *testing.T) {
	root := e2e(t)
	initRoot(t, root)
	up := newFakeUpstream(t)
	up.setDecide(func(arrival, int) (int, http.Header) { return http.StatusBadRequest, nil })
	svc := startServiceRun(t, root, up)
	keys := routingKeys(t, 2)
	for i := range keys {
		keys[i] = "R012" + keys[i][4:]
	}
	p := newPoster(t, svc.base)
	for i, k := range keys {
		if code, _, body, err := p.post("/v2/enqueue", triggerEvent(k, i, 1), nil); err != nil || code != http.StatusAccepted {
			t.Fatalf("enqueue: %d %s %v", code, body, err)
		}
	}
	waitCLIStatus(t, root, "both refused", func(s cliQueueStatus) bool { return s.Failed == 2 })

	r := runCourier(t, root, "status")
	if r.code != 0 {
		t.Fatalf("courier status: %s", r)
	}
	line := regexp.MustCompile(`(?m)^(events/R012\S+)\s+0\s+0\s+1\s+.*(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ) PagerDuty answered 400`)
	rows := line.FindAllStringSubmatch(r.stdout, -1)
	if len(rows) != 2 || rows[0][1] == rows[1][1] {
		t.Fatalf("want two rows with distinct keys, each failed 1 with the time and reason of the refusal:\n%s", r.stdout)
	}
	for _, k := range keys {
		if strings.Contains(r.stdout, k) {
			t.Fatalf("courier status prints a whole routing key:\n%s", r.stdout)
		}
	}
	if r := runCourier(t, root, "status", "--json"); strings.Contains(r.stdout, keys[0]) || !strings.Contains(r.stdout, `"last_error_at"`) {
		t.Fatalf("courier status --json: keys must be redacted and errors dated:\n%s", r.stdout)
	}
	if r := runCourier(t, root, "status", "--show-keys"); !strings.Contains(r.stdout, keys[0]) || !strings.Contains(r.stdout, keys[1]) {
		t.Fatalf("courier status --show-keys: want both whole keys:\n%s", r.stdout)
	}
	// The local API without the token redacts too.
	if code, body, err := p.get("/v1/queue/status"); err != nil || code != 200 || strings.Contains(string(body), keys[0]) {
		t.Fatalf("GET /v1/queue/status without the token: %d %v\n%s", code, err, body)
	}

	up.setDecide(nil)
	form := rows[0][1]
	want := keys[0]
	if redact.QueueKey("events/"+keys[1]) == form {
		want = keys[1]
	}
	if r := runCourier(t, root, "retry", "-k", form); r.code != 0 || !strings.Contains(r.stdout, "moved 1 failed") {
		t.Fatalf("courier retry -k %s: %s", form, r)
	}
	up.waitFor(t, "the retried event", func(arr []arrival) bool {
		for _, a := range arr {
			if a.event.RoutingKey == want && a.accepted() {
				return true
			}
		}
		return false
	})
}
