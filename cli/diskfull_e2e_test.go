package cli_test

import (
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// TestFullDiskEndToEnd runs service-run with its root on a 16 MiB tmpfs
// while PagerDuty is down and a client keeps sending. Once the disk is
// full, events are refused at once with 503 and Retry-After naming the
// disk, /readyz says not ready and why, the process stays up; when
// PagerDuty comes back every acknowledged event is delivered in order, and
// after space is freed the agent takes events again without a restart.
func TestFullDiskEndToEnd(t *testing.T) {
	e2e(t) // its -short skip, before anything is mounted; the root lives on the tmpfs
	dir := filepath.Join(t.TempDir(), "small")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", dir).CombinedOutput(); err != nil {
		t.Skipf("needs a 16 MiB tmpfs, and mounting one needs root (CAP_SYS_ADMIN): %v: %s", err, out)
	}
	// Registered first, so it runs after service-run is stopped.
	t.Cleanup(func() { _ = exec.Command("umount", "-l", dir).Run() })
	root := filepath.Join(dir, "root")
	// Another program's file takes part of the disk; removing it later is
	// the operator freeing space.
	filler := filepath.Join(dir, "other-program.data")
	if err := os.WriteFile(filler, make([]byte, 6<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	initRoot(t, root)
	editConfig(t, root, map[string]any{
		"queue.min_free_bytes":     3 << 20,
		"queue.disk_reserve_bytes": 2 << 20,
		"queue.retry_after":        "2s",
	})
	var down atomic.Bool
	down.Store(true)
	up := newFakeUpstream(t)
	up.setDecide(func(arrival, int) (int, http.Header) {
		if down.Load() {
			return http.StatusServiceUnavailable, nil
		}
		return http.StatusAccepted, nil
	})
	svc := startServiceRun(t, root, up)
	p := newPoster(t, svc.base)
	key := routingKeys(t, 1)[0]
	pad := strings.Repeat("z", 8000)
	event := func(seq int) []byte {
		return []byte(strings.Replace(string(triggerEvent(key, 1, seq)), `"source":"e2e-test"`, `"source":"e2e-test","component":"`+pad+`"`, 1))
	}
	acked := 0
	var refusal string
	for seq := 0; refusal == ""; seq++ {
		if seq > 5000 {
			t.Fatalf("%d events of 8 KiB accepted on a 16 MiB filesystem and none refused", seq)
		}
		code, hdr, body, err := p.post("/v2/enqueue", event(seq), nil)
		switch {
		case err != nil:
			t.Fatalf("event %d: no answer (%v); service-run exited: %v", seq, err, svc.exited())
		case code == http.StatusAccepted:
			acked++
		case code == http.StatusServiceUnavailable:
			if hdr.Get("Retry-After") != "2" || !strings.Contains(string(body), "disk is full") {
				t.Fatalf("event %d: 503 with Retry-After %q and body %s, want Retry-After 2 and the disk named", seq, hdr.Get("Retry-After"), body)
			}
			refusal = string(body)
		default:
			t.Fatalf("event %d: %d %s", seq, code, body)
		}
	}
	t.Logf("%d events accepted, then: %s", acked, refusal)
	if acked == 0 {
		t.Fatal("nothing accepted before the disk filled")
	}
	code, body, err := p.get("/readyz")
	if err != nil || code != http.StatusServiceUnavailable || !strings.Contains(string(body), "disk") {
		t.Fatalf("/readyz on a full disk: %d %s %v, want 503 naming the disk", code, body, err)
	}
	if svc.exited() {
		t.Fatal("service-run exited on a full disk")
	}

	// PagerDuty comes back: every acknowledged event arrives, in order.
	down.Store(false)
	got := up.waitFor(t, "every acknowledged event delivered", func(a []arrival) bool {
		n := 0
		for _, x := range a {
			if x.accepted() {
				n++
			}
		}
		return n >= acked
	})
	next := 0
	for _, a := range got {
		if !a.accepted() {
			continue
		}
		if _, seq, _ := a.event.clientSeq(); seq != next {
			t.Fatalf("delivered seq %d, want %d (in order, each once)", seq, next)
		}
		next++
	}

	// Space returns: accepted again, same process.
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(deliverDeadline)
	for {
		code, hdr, body, err := p.post("/v2/enqueue", event(acked), nil)
		if err == nil && code == http.StatusAccepted {
			break
		}
		if err != nil || code != http.StatusServiceUnavailable || time.Now().After(deadline) {
			t.Fatalf("after the queue drained: %d %v %s %v (free: %s)", code, hdr, body, err, df(dir))
		}
		time.Sleep(100 * time.Millisecond)
	}
	if code, body, err := p.get("/readyz"); err != nil || code != http.StatusOK {
		t.Fatalf("/readyz after space returned: %d %s %v", code, body, err)
	}
	if svc.exited() {
		t.Fatal("service-run exited")
	}
	up.waitFor(t, "the new event delivered", func(a []arrival) bool {
		_, seq, _ := a[len(a)-1].event.clientSeq()
		return a[len(a)-1].accepted() && seq == acked
	})
}

func df(dir string) string {
	out, _ := exec.Command("df", "-B1", dir).CombinedOutput()
	return string(out)
}
