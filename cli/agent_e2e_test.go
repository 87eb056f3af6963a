package cli_test

// End-to-end tests of service mode (issue 4): the built binary enrolled
// with backend/devserver, a real HTTP server on 127.0.0.1, driven by
// commands added through the devserver's admin API.

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"courier/backend/devserver"
	"courier/backend/devserver/devservertest"
)

// agent is an enrolled root with its devserver.
type agent struct {
	t    *testing.T
	root string
	dev  *devservertest.Fixture
	id   string
}

func enrolledAgent(t *testing.T) *agent {
	t.Helper()
	root := e2e(t)
	dev := devservertest.Start(t, devserver.Options{})
	r := runCourier(t, root, "enroll", dev.EnrollCode(t), "--backend-url", dev.URL, "--no-service")
	if r.code != 0 {
		t.Fatalf("enroll: %s", r)
	}
	agents, err := dev.Admin.Agents(context.Background())
	if err != nil || len(agents) != 1 {
		t.Fatalf("agents: %v %v", agents, err)
	}
	return &agent{t: t, root: root, dev: dev, id: agents[0].ID}
}

func (a *agent) start() *serviceRun {
	s := spawnServiceRun(a.t, a.root, "--listen", "127.0.0.1:0")
	s.waitReady()
	return s
}

func (a *agent) command(typ string, params any) string {
	a.t.Helper()
	raw, _ := json.Marshal(params)
	c, err := a.dev.Admin.AddCommand(context.Background(), a.id, devserver.NewCommand{Type: typ, Params: raw})
	if err != nil {
		a.t.Fatal(err)
	}
	return c.ID
}

func (a *agent) result(id string) devserver.Result {
	a.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	r, err := a.dev.Admin.WaitResult(ctx, id)
	if err != nil {
		a.t.Fatalf("result of %s: %v", id, err)
	}
	return r
}

// ids returns the record ids uploaded under key, with how often each came.
func (a *agent) ids(key string) map[string]int {
	a.t.Helper()
	recs, err := a.dev.Admin.Records(context.Background(), devserver.UploadFilter{RoutingKey: key})
	if err != nil {
		a.t.Fatal(err)
	}
	out := map[string]int{}
	for _, r := range recs {
		var env struct {
			ID string `json:"id"`
		}
		if err := json.Unmarshal(r, &env); err != nil {
			a.t.Fatal(err)
		}
		out[env.ID]++
	}
	return out
}

func (a *agent) waitRecords(key string, n int) map[string]int {
	a.t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	for {
		ids := a.ids(key)
		if len(ids) >= n {
			return ids
		}
		if time.Now().After(deadline) {
			a.t.Fatalf("%s: %d distinct records uploaded, want %d", key, len(ids), n)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func synth(id string, cfg map[string]any) map[string]any {
	return map[string]any{"id": id, "type": "synthetic", "config": cfg}
}

func wantSynthetic(t *testing.T, ids map[string]int, orgs, repos, items int) {
	t.Helper()
	for o := 0; o < orgs; o++ {
		for r := 0; r < repos; r++ {
			for n := 0; n < items; n++ {
				if id := fmt.Sprintf("synthetic:org%d:repo%d:%d", o, r, n); ids[id] == 0 {
					t.Fatalf("record %s never uploaded", id)
				}
			}
		}
	}
}

func TestAgentCommandsEndToEnd(t *testing.T) {
	a := enrolledAgent(t)
	svc := a.start()
	defer svc.terminate()

	exp := a.command("export", map[string]any{"integrations": []any{
		synth("int_1", map[string]any{"orgs": 1, "repos_per_org": 2, "items_per_repo": 150}),
		synth("int_2", map[string]any{"orgs": 1, "repos_per_org": 1, "items_per_repo": 40}),
	}})
	good := a.command("validate-config", map[string]any{"integration": synth("int_1", map[string]any{"orgs": 2})})
	bad := a.command("validate-config", map[string]any{"integration": synth("int_1", map[string]any{"orgz": 2})})
	onb := a.command("export-onboard-data", map[string]any{"integration": synth("int_1", map[string]any{"orgs": 2, "repos_per_org": 3}), "object_type": "repos"})
	unknown := a.command("reboot-the-world", map[string]any{})
	malformed := a.command("export", map[string]any{"integrations": "nope"})

	if r := a.result(exp); r.Status != "succeeded" {
		t.Fatalf("export: %+v", r)
	} else {
		var out struct {
			Integrations []struct {
				ID      string           `json:"id"`
				Status  string           `json:"status"`
				Records map[string]int64 `json:"records"`
			} `json:"integrations"`
		}
		if err := json.Unmarshal(r.Output, &out); err != nil || len(out.Integrations) != 2 || out.Integrations[0].Records["item"] != 300 {
			t.Fatalf("export output %s: %v", r.Output, err)
		}
	}
	wantSynthetic(t, a.waitRecords("export/int_1", 300), 1, 2, 150)
	wantSynthetic(t, a.waitRecords("export/int_2", 40), 1, 1, 40)
	ups, _ := a.dev.Admin.Uploads(context.Background(), devserver.UploadFilter{RoutingKey: "export/int_1", NoRecords: true})
	for _, u := range ups {
		if u.CommandID != exp {
			t.Fatalf("upload %s carries X-Command-Id %q, want %s", u.BatchID, u.CommandID, exp)
		}
	}

	if r := a.result(good); r.Status != "succeeded" || !strings.Contains(string(r.Output), `"valid":true`) {
		t.Fatalf("validate good: %+v %s", r, r.Output)
	}
	if r := a.result(bad); r.Status != "succeeded" || !strings.Contains(string(r.Output), `"valid":false`) || !strings.Contains(string(r.Output), "orgz") {
		t.Fatalf("validate bad: %+v %s", r, r.Output)
	}
	if r := a.result(onb); r.Status != "succeeded" || !strings.Contains(string(r.Output), `"count":6`) {
		t.Fatalf("onboard: %+v %s", r, r.Output)
	}
	if ids := a.waitRecords("onboard/"+onb, 6); ids["synthetic:org1/repo2"] != 1 {
		t.Fatalf("onboarding objects: %v", ids)
	}
	if r := a.result(unknown); r.Status != "failed" || !strings.Contains(r.Error, "unknown command type") {
		t.Fatalf("unknown: %+v", r)
	}
	if r := a.result(malformed); r.Status != "failed" || !strings.Contains(r.Error, "params") {
		t.Fatalf("malformed: %+v", r)
	}
	// Every command was acknowledged and got exactly one result.
	results, _ := a.dev.Admin.Results(context.Background(), a.id)
	seen := map[string]int{}
	for _, r := range results {
		seen[r.CommandID]++
		if r.Repeats != 0 {
			t.Errorf("command %s sent its result %d more times", r.CommandID, r.Repeats)
		}
	}
	for _, id := range []string{exp, good, bad, onb, unknown, malformed} {
		if seen[id] != 1 {
			t.Errorf("command %s: %d results", id, seen[id])
		}
	}
	hbs, _ := a.dev.Admin.Heartbeats(context.Background(), a.id)
	if len(hbs) == 0 || hbs[0].Version == "" {
		t.Errorf("no heartbeat: %+v", hbs)
	}
}

func TestAgentProgressLogsAndCancel(t *testing.T) {
	a := enrolledAgent(t)
	svc := a.start()
	defer svc.terminate()
	slow := a.command("export", map[string]any{"integrations": []any{
		synth("slow", map[string]any{"items_per_repo": 2000, "delay_ms": 5}),
	}})
	// Progress is posted every 5 s while it changes.
	deadline := time.Now().Add(60 * time.Second)
	for {
		p, _ := a.dev.Admin.Progress(context.Background(), slow)
		if len(p) > 0 && len(p[0].Sessions) > 0 {
			if p[0].Sessions[0].Path[0] != "slow" {
				t.Fatalf("progress %+v", p[0])
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no progress report within a minute")
		}
		time.Sleep(100 * time.Millisecond)
	}
	cancel := a.command("cancel", map[string]any{"command_id": slow})
	if r := a.result(cancel); r.Status != "succeeded" {
		t.Fatalf("cancel: %+v", r)
	}
	if r := a.result(slow); r.Status != "cancelled" {
		t.Fatalf("cancelled export: %+v", r)
	}
	// Log lines go up in batches of at most a second.
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		logs, _ := a.dev.Admin.Logs(context.Background(), slow)
		if len(logs) > 0 && strings.Contains(string(logs[0].Lines[0]), slow) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the export's log lines were not shipped to /logs")
		}
	}
	if r := a.result(a.command("cancel", map[string]any{"command_id": "cmd_nope"})); r.Status != "failed" {
		t.Fatalf("cancel of nothing: %+v", r)
	}
}

func TestAgentCommandDeliveredTwiceRunsOnce(t *testing.T) {
	a := enrolledAgent(t)
	// The first acknowledgement fails, so the backend delivers the command
	// again: the journal must recognise it.
	if _, err := a.dev.Admin.SetFaults(context.Background(), devserver.Faults{devserver.EndpointAck: {Status: 503, Count: 1}}); err != nil {
		t.Fatal(err)
	}
	svc := a.start()
	defer svc.terminate()
	id := a.command("export", map[string]any{"integrations": []any{synth("once", map[string]any{"items_per_repo": 100})}})
	if r := a.result(id); r.Status != "succeeded" {
		t.Fatalf("%+v", r)
	}
	time.Sleep(time.Second) // room for a wrong second run to show up
	cmds, _ := a.dev.Admin.Commands(context.Background(), a.id)
	for _, c := range cmds {
		if c.ID == id && c.Deliveries < 2 {
			t.Fatalf("the command was delivered %d times; the test needs 2", c.Deliveries)
		}
	}
	if r := a.result(id); r.Repeats != 0 {
		t.Fatalf("result sent %d extra times", r.Repeats)
	}
	ids := a.ids("export/once")
	for k, n := range ids {
		if n != 1 {
			t.Fatalf("record %s uploaded %d times: the command ran twice", k, n)
		}
	}
}

func TestAgentKill9MidExportResumesWithOneResult(t *testing.T) {
	a := enrolledAgent(t)
	svc := a.start()
	id := a.command("export", map[string]any{"integrations": []any{
		synth("big", map[string]any{"orgs": 2, "repos_per_org": 2, "items_per_repo": 500, "delay_ms": 1}),
	}})
	deadline := time.Now().Add(60 * time.Second)
	for len(a.ids("export/big")) < 300 {
		if time.Now().After(deadline) {
			t.Fatal("nothing uploaded within a minute")
		}
		time.Sleep(20 * time.Millisecond)
	}
	svc.kill9()
	if n := len(a.ids("export/big")); n >= 2000 {
		t.Skip("the export finished before the kill")
	}
	svc2 := a.start()
	defer svc2.terminate()
	if r := a.result(id); r.Status != "succeeded" || r.Repeats != 0 {
		t.Fatalf("after restart: %+v", r)
	}
	wantSynthetic(t, a.waitRecords("export/big", 2000), 2, 2, 500)
}

func TestAgentRidesOutBackendOutageAnd401(t *testing.T) {
	a := enrolledAgent(t)
	ctx := context.Background()
	// The backend is down for uploads and polls for a while.
	if _, err := a.dev.Admin.SetFaults(ctx, devserver.Faults{
		devserver.EndpointUploads:  {Status: 503, Count: 4, RetryAfter: 1},
		devserver.EndpointCommands: {Status: 502, Count: 2},
	}); err != nil {
		t.Fatal(err)
	}
	svc := a.start()
	defer svc.terminate()
	id := a.command("export", map[string]any{"integrations": []any{synth("o", map[string]any{"items_per_repo": 200})}})
	if r := a.result(id); r.Status != "succeeded" {
		t.Fatalf("%+v", r)
	}
	wantSynthetic(t, a.waitRecords("export/o", 400), 1, 2, 200)

	// The API key is revoked: work pauses, nothing is dropped, and it all
	// goes through once the key works again.
	if err := a.dev.Admin.Revoke(ctx, a.id); err != nil {
		t.Fatal(err)
	}
	id2 := a.command("export", map[string]any{"integrations": []any{synth("p", map[string]any{"items_per_repo": 50})}})
	time.Sleep(2 * time.Second)
	if n := len(a.ids("export/p")); n != 0 {
		t.Fatalf("%d records uploaded with a revoked key", n)
	}
	if err := a.dev.Admin.Unrevoke(ctx, a.id); err != nil {
		t.Fatal(err)
	}
	if r := a.result(id2); r.Status != "succeeded" {
		t.Fatalf("%+v", r)
	}
	wantSynthetic(t, a.waitRecords("export/p", 100), 1, 2, 50)
	if n := strings.Count(svc.output(), "refused the API key (401)"); n == 0 {
		t.Fatal("a 401 should be logged")
	}
}

func TestAgentSecondExportOfAnIntegrationWaits(t *testing.T) {
	a := enrolledAgent(t)
	svc := a.start()
	defer svc.terminate()
	first := a.command("export", map[string]any{"integrations": []any{synth("shared", map[string]any{"items_per_repo": 300, "delay_ms": 2})}})
	second := a.command("export", map[string]any{"integrations": []any{synth("shared", map[string]any{"items_per_repo": 300})}})
	other := a.command("export", map[string]any{"integrations": []any{synth("elsewhere", map[string]any{"items_per_repo": 10})}})
	r1, r2, r3 := a.result(first), a.result(second), a.result(other)
	if r1.Status != "succeeded" || r2.Status != "succeeded" || r3.Status != "succeeded" {
		t.Fatalf("%+v\n%+v\n%+v", r1, r2, r3)
	}
	if r2.StartedAt.Before(r1.FinishedAt) {
		t.Fatalf("the second export of the same integration started at %s, before the first finished at %s", r2.StartedAt, r1.FinishedAt)
	}
	if !r3.FinishedAt.Before(r1.FinishedAt) {
		t.Fatalf("an export of another integration should not wait: finished %s, first finished %s", r3.FinishedAt, r1.FinishedAt)
	}
}
