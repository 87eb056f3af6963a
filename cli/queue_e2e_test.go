package cli_test

import (
	"encoding/json"
	"net/http"
	"regexp"
	"strings"
	"testing"

	"courier/internal/redact"
)

// TestE2EQueueLsShowPurge: dead letters refused by the upstream are listed
// with reason, status and attempts, shown with the stored event (keys
// redacted), and purged only with an explicit selector; bad input exits 2
// with a message saying what to do.
func TestE2EQueueLsShowPurge(t *testing.T) {
	root := e2e(t)
	initRoot(t, root)
	up := newFakeUpstream(t)
	up.setDecide(func(arrival, int) (int, http.Header) { return http.StatusBadRequest, nil })
	svc := startServiceRun(t, root, up)
	keys := routingKeys(t, 2)
	p := newPoster(t, svc.base)
	for i, k := range []string{keys[0], keys[0], keys[1]} {
		if code, _, body, err := p.post("/v2/enqueue", triggerEvent(k, i, 1), nil); err != nil || code != http.StatusAccepted {
			t.Fatalf("enqueue: %d %s %v", code, body, err)
		}
	}
	waitCLIStatus(t, root, "all refused", func(s cliQueueStatus) bool { return s.Failed == 3 })

	r := runCourier(t, root, "queue", "ls")
	row := regexp.MustCompile(`(?m)^(events/\S+)\s+(\d+)\s+\S+\s+.*\s400\s+1\s+PagerDuty answered 400`)
	rows := row.FindAllStringSubmatch(r.stdout, -1)
	if r.code != 0 || len(rows) != 3 || strings.Contains(r.stdout, keys[0]) {
		t.Fatalf("courier queue ls: want 3 rows, redacted, with status 400 and 1 attempt:\n%s", r)
	}
	var ls struct {
		Items []struct {
			Key string `json:"key"`
			Seq uint64 `json:"seq"`
		} `json:"items"`
	}
	r = runCourier(t, root, "queue", "ls", "--json", "-k", redact.Key(keys[0]))
	if err := json.Unmarshal([]byte(r.stdout), &ls); err != nil || r.code != 0 || len(ls.Items) != 2 {
		t.Fatalf("courier queue ls --json -k: %v\n%s", err, r)
	}
	seq := strings.TrimSpace(rows[0][2])
	r = runCourier(t, root, "queue", "show", seq, "-k", rows[0][1])
	if r.code != 0 || strings.Contains(r.stdout, keys[0]) || !strings.Contains(r.stdout, `"routing_key": "`+redact.Key(keys[0])) ||
		!regexp.MustCompile(`(?m)^status\s+400$`).MatchString(r.stdout) {
		t.Fatalf("courier queue show: want the event with its key redacted:\n%s", r)
	}
	if r := runCourier(t, root, "queue", "show", "--show-keys", "-k", keys[0], seq); r.code != 0 || !strings.Contains(r.stdout, keys[0]) {
		t.Fatalf("courier queue show --show-keys:\n%s", r)
	}
	// Flags after SEQ, the global ones too, as the README writes it.
	if r := runBare(t, nil, "queue", "show", seq, "-k", keys[0], "--show-keys", "--root", root); r.code != 0 || !strings.Contains(r.stdout, keys[0]) {
		t.Fatalf("courier queue show SEQ -k KEY --show-keys --root ROOT:\n%s", r)
	}

	unknown := strings.Repeat("Z", 32)
	for _, bad := range []struct {
		args []string
		code int
		says string
	}{
		{[]string{"queue", "purge"}, 2, "--all for every key"},
		{[]string{"queue", "purge", "-k", keys[0], "--all"}, 2, "give one"},
		{[]string{"queue", "purge", "--all", "--seq", "1"}, 2, "--seq needs -k"},
		{[]string{"queue", "purge", "--all", "--older-than", "soon"}, 2, "--older-than"},
		{[]string{"queue", "purge", "-k", keys[0], "--state", "pending"}, 2, "only dead letters"},
		{[]string{"queue", "purge", "-k", unknown, "--yes"}, 2, "no routing key in the queue matches"},
		{[]string{"queue", "purge", "-k", keys[0]}, 2, "add --yes to confirm"},
		{[]string{"queue", "purge", "--all"}, 2, "add --yes to confirm"},
		{[]string{"queue", "ls", "-k", unknown}, 2, "no routing key in the queue matches"},
		{[]string{"queue", "ls", "--state", "done"}, 2, "failed or pending"},
		{[]string{"queue", "show", "x", "-k", keys[0]}, 2, "not a number"},
		{[]string{"queue", "show", "999", "-k", keys[0]}, 2, "no item with seq 999"},
		{[]string{"queue", "show", "1"}, 2, "needs -k"},
	} {
		r := runCourier(t, root, bad.args...)
		if r.code != bad.code || !strings.Contains(r.stderr, bad.says) || strings.Contains(r.stderr, unknown) {
			t.Errorf("courier %s: exit %d, stderr %q; want exit %d saying %q (key redacted)", strings.Join(bad.args, " "), r.code, r.stderr, bad.code, bad.says)
		}
	}
	waitCLIStatus(t, root, "nothing dropped by bad input", func(s cliQueueStatus) bool { return s.Failed == 3 })

	r = runCourier(t, root, "queue", "purge", "-k", keys[0], "--seq", seq, "--yes")
	if r.code != 0 || !strings.Contains(r.stdout, "dropped 1 dead letter(s)") {
		t.Fatalf("purge one:\n%s", r)
	}
	r = runCourier(t, root, "queue", "purge", "--all", "--yes")
	if r.code != 0 || !strings.Contains(r.stdout, "dropped 2 dead letter(s)") || strings.Contains(r.stdout, keys[1]) ||
		!strings.Contains(r.stdout, redact.Key(keys[1])) {
		t.Fatalf("purge --all: want 2 dropped, by redacted key:\n%s", r)
	}
	waitCLIStatus(t, root, "no dead letters left", func(s cliQueueStatus) bool { return s.Failed == 0 })
	if r := runCourier(t, root, "queue", "ls"); r.code != 0 || !strings.Contains(r.stdout, "no failed items") {
		t.Fatalf("ls after purge:\n%s", r)
	}
}
