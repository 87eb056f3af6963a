package actors_test

import (
	"strings"
	"testing"
	"time"

	"courier/actors"
	"courier/backend/devserver"
)

// TestRouterRunsACommandDeliveredTwiceOnce: the first ack fails, so the
// backend delivers the command again; the journal makes it run once.
func TestRouterRunsACommandDeliveredTwiceOnce(t *testing.T) {
	a := newAgent(t, agentOptions{})
	if _, err := a.dev.Admin.SetFaults(ctxT(t), devserver.Faults{devserver.EndpointAck: {Status: 503, Count: 1}}); err != nil {
		t.Fatal(err)
	}
	id := a.command("export", export(synth("twice", map[string]any{"orgs": 1, "repos_per_org": 1, "items_per_repo": 30})))
	if r := a.result(id); r.Status != "succeeded" {
		t.Fatalf("result %+v", r)
	}
	waitFor(t, "the ack", func() bool {
		acks, err := a.dev.Admin.Acks(ctxT(t), a.id)
		return err == nil && len(acks) == 1
	})
	cmds, err := a.dev.Admin.Commands(ctxT(t), a.id)
	if err != nil || len(cmds) != 1 || cmds[0].Deliveries < 2 {
		t.Fatalf("the command should have been delivered twice: %+v %v", cmds, err)
	}
	// A later command's result arrives after anything the redelivery could
	// have started: the router handles commands in order.
	if r := a.result(a.command("validate-config", validateParams())); r.Status != "succeeded" {
		t.Fatalf("validate: %+v", r)
	}
	if r := a.result(id); r.Repeats != 0 {
		t.Fatalf("the command ran twice: %d repeated results", r.Repeats)
	}
	waitFor(t, "the export's records", func() bool { return a.records("twice") >= 30 })
	if n := a.records("twice"); n != 30 {
		t.Fatalf("%d records, want 30 (one run)", n)
	}
}

// TestRouterBusyIntegrationWaitsAndCancels covers one export per
// integration at a time and cancel of a waiting, a running and an unknown
// command.
func TestRouterBusyIntegrationWaitsAndCancels(t *testing.T) {
	a := newAgent(t, agentOptions{})
	first := a.command("export", export(hanging("shared", 5)))
	a.waitHanging(first)
	second := a.command("export", export(synth("shared", map[string]any{"items_per_repo": 20})))
	third := a.command("export", export(synth("shared", map[string]any{"items_per_repo": 20})))
	other := a.command("export", export(synth("elsewhere", map[string]any{"items_per_repo": 10})))
	// Another integration does not wait.
	if r := a.result(other); r.Status != "succeeded" {
		t.Fatalf("other: %+v", r)
	}
	// The router handled second and third before other: they wait.
	for _, id := range []string{second, third} {
		if e := a.journal(id); e.State != "accepted" || !e.StartedAt.IsZero() || a.isRunning(id) {
			t.Fatalf("%s should be waiting: %+v", id, e)
		}
	}

	if r := a.result(a.command("cancel", cancelOf("cmd_nope"))); r.Status != "failed" || !strings.Contains(r.Error, "cmd_nope is not running") {
		t.Fatalf("cancel of an unknown command: %+v", r)
	}
	// Cancel of a waiting command: it ends without starting.
	if r := a.result(a.command("cancel", cancelOf(third))); r.Status != "succeeded" {
		t.Fatalf("cancel of a waiting command: %+v", r)
	}
	if r := a.result(third); r.Status != "cancelled" || !strings.Contains(r.Error, "before it started") {
		t.Fatalf("the waiting command: %+v", r)
	}
	// Cancel of a running command: it ends cancelled, and the waiting one
	// starts once the integration is free.
	if r := a.result(a.command("cancel", cancelOf(first))); r.Status != "succeeded" {
		t.Fatalf("cancel of a running command: %+v", r)
	}
	r1 := a.result(first)
	if r1.Status != "cancelled" {
		t.Fatalf("the running command: %+v", r1)
	}
	r2 := a.result(second)
	if r2.Status != "succeeded" {
		t.Fatalf("the waiting command after the cancel: %+v", r2)
	}
	if r2.StartedAt == nil || r2.StartedAt.Before(r1.FinishedAt) {
		t.Fatalf("second started at %v, before first finished at %s", r2.StartedAt, r1.FinishedAt)
	}
	if e := a.journal(third); e.State != "done" || e.Status != "cancelled" {
		t.Fatalf("journal of the cancelled waiting command: %+v", e)
	}
}

// TestRouterExpiredCommandIsNotRun: a command past its expiry before it
// started ends as expired, without running.
func TestRouterExpiredCommandIsNotRun(t *testing.T) {
	a := newAgent(t, agentOptions{})
	past := time.Now().Add(-time.Minute)
	id := a.commandExpiring("export", export(synth("late", map[string]any{"items_per_repo": 10})), &past)
	r := a.result(id)
	if r.Status != "expired" || !strings.Contains(r.Error, "before it started") {
		t.Fatalf("result %+v", r)
	}
	if n := a.records("late"); n != 0 {
		t.Fatalf("an expired export sent %d records", n)
	}
}

// TestRouterRestartResumesTheCommand: after a restart of the router (as
// its supervisor does after a panic) the running command is resumed from
// the journal. The old run's late messages (its job ends with "cancelled"
// as the old router stops) must not act on the resumed run: before
// 6085d1f the old run's result ended the resumed one, so a backend cancel
// found nothing running.
func TestRouterRestartResumesTheCommand(t *testing.T) {
	a := newAgent(t, agentOptions{})
	id := a.command("export", export(hanging("resumed", 5)))
	a.waitHanging(id)
	startedAt := a.journal(id).StartedAt

	actors.RestartRouter(t, a.svc)
	waitFor(t, "the resumed run", func() bool { return a.logs.Count("resuming a command interrupted by a restart") == 1 })
	if r := a.result(a.command("cancel", cancelOf(id))); r.Status != "succeeded" {
		t.Fatalf("cancel of the resumed command: %+v (the old run's result ended it)", r)
	}
	r := a.result(id)
	if r.Status != "cancelled" || r.Repeats != 0 {
		t.Fatalf("result %+v", r)
	}
	// Expiry is judged on the first start: the resume keeps it.
	if e := a.journal(id); !e.StartedAt.Equal(startedAt) || e.State != "done" {
		t.Fatalf("journal after the resume: %+v, first start %s", e, startedAt)
	}
}

// TestGracefulStopKeepsCommandsForTheNextStart: a stop (SIGTERM: an
// upgrade, a restart of the unit) ends no backend command for good. The
// waiting command stays journaled, the running one is interrupted, and
// both run at the next start, each ending with one result.
func TestGracefulStopKeepsCommandsForTheNextStart(t *testing.T) {
	a := newAgent(t, agentOptions{})
	running := a.command("export", export(hanging("shared", 5)))
	a.waitHanging(running)
	waiting := a.command("export", export(synth("shared", map[string]any{"orgs": 1, "repos_per_org": 1, "items_per_repo": 10})))
	waitFor(t, "the second export to wait", func() bool { return a.logs.Count("this one waits") == 1 })

	a.stop()
	for _, line := range strings.Split(a.logs.String(), "\n") {
		if strings.Contains(line, `"message":"command finished"`) {
			t.Fatalf("the stop ended a command: %s", line)
		}
	}
	a.start()
	for _, id := range []string{running, waiting} {
		if e := a.journal(id); e.State != "accepted" {
			t.Fatalf("%s after the stop: %+v, want it journaled for this start", id, e)
		}
	}
	waitFor(t, "the interrupted export to resume", func() bool { return a.isRunning(running) })
	if r := a.result(a.command("cancel", cancelOf(running))); r.Status != "succeeded" {
		t.Fatalf("cancel: %+v", r)
	}
	if r := a.result(running); r.Status != "cancelled" || r.Repeats != 0 {
		t.Fatalf("the interrupted export: %+v", r)
	}
	if r := a.result(waiting); r.Status != "succeeded" || r.Repeats != 0 {
		t.Fatalf("the waiting export: %+v", r)
	}
}
