package actors_test

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/rs/zerolog"

	"courier/actors"
	"courier/backend"
	"courier/backend/devserver"
	"courier/backend/devserver/devservertest"
	"courier/internal/exporttest"
	"courier/queue"
	"courier/sessions"
)

// agent is the backend-driven part of service-run built from its real
// parts: the guardian, a Pebble queue on a temp dir, the exporter and the
// command loop, enrolled with a devserver on 127.0.0.1 whose results and
// uploads arrive through the queue and the backend client. It can be
// stopped (as by SIGTERM) and started again on the same folder.
type agent struct {
	t      *testing.T
	opts   agentOptions
	dev    *devservertest.Fixture
	id     string // agent id
	client *backend.Client
	dir    string
	logs   *exporttest.LogBuffer
	log    zerolog.Logger

	sys   *actor.ActorSystem
	g     *actors.Guardian
	q     *queue.Queue
	svc   *actors.Service
	fatal chan string
}

type agentOptions struct {
	// Quota of the queue; zero is the default.
	Quota queue.Quota
	// Route overrides the route of a key when it returns a Sink.
	Route func(key string) queue.Route
	// Service is applied to the service's options before it starts.
	Service func(*actors.ServiceOptions)
	// FS replaces the disk (Pebble's crashable in-memory one).
	FS vfs.FS
}

func newAgent(t *testing.T, opts agentOptions) *agent {
	t.Helper()
	dev := devservertest.Start(t, devserver.Options{})
	logs := &exporttest.LogBuffer{}
	log := zerolog.New(logs).Level(zerolog.DebugLevel).With().Timestamp().Logger()
	bopts := backend.Options{URL: dev.URL, UserAgent: "courier/test", Timeout: 10 * time.Second, Logger: log}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	resp, err := backend.Enroll(ctx, bopts, backend.EnrollRequest{EnrollCode: dev.EnrollCode(t), Hostname: "test", OS: "linux", Arch: "amd64", Version: "test"})
	if err != nil {
		t.Fatal(err)
	}
	bopts.APIKey = resp.APIKey
	client, err := backend.New(bopts)
	if err != nil {
		t.Fatal(err)
	}
	a := &agent{t: t, opts: opts, dev: dev, id: resp.AgentID, client: client, dir: t.TempDir(), logs: logs, log: log}
	t.Cleanup(func() {
		a.stop()
		client.CloseIdleConnections()
		if t.Failed() {
			t.Logf("agent log:\n%s", tail(logs.String(), 60))
		}
	})
	a.start()
	return a
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// start starts the agent on its folder, resuming what the journal holds.
func (a *agent) start() {
	t := a.t
	t.Helper()
	a.sys = exporttest.NewSystem()
	a.fatal = make(chan string, 1)
	g, err := actors.NewGuardian(a.sys, actors.GuardianOptions{Log: a.log, OnFatal: func(child string, reason any) {
		a.fatal <- fmt.Sprintf("%s: %v", child, reason)
	}})
	if err != nil {
		t.Fatal(err)
	}
	a.g = g
	sink := a.client.Sink()
	a.q, err = queue.Open(a.sys, queue.Options{
		Dir: filepath.Join(a.dir, "db"), FS: a.opts.FS, Logger: a.log, Quota: a.opts.Quota, Linger: time.Millisecond,
		Router: func(k string) queue.Route {
			if a.opts.Route != nil {
				if r := a.opts.Route(k); r.Sink != nil {
					return r
				}
			}
			return queue.Route{Sink: sink}
		},
		Spawn: func(p *actor.Props, name string) (*actor.PID, error) { return g.Spawn(p, name, actors.Fatal) },
	})
	if err != nil {
		t.Fatal(err)
	}
	exp, err := actors.NewExporter(a.sys, g, actors.ExportOptions{Store: actors.QueueStore{Q: a.q}, Log: a.log, RestartBackoff: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	so := actors.ServiceOptions{Backend: a.client, Queue: a.q, Exporter: exp, Log: a.log, Version: "test",
		ProgressEvery: 100 * time.Millisecond, PollWait: 5 * time.Second}
	if a.opts.Service != nil {
		a.opts.Service(&so)
	}
	if a.svc, err = actors.StartService(a.sys, g, so); err != nil {
		t.Fatal(err)
	}
}

// stop stops the agent as service-run does on SIGTERM: the command loop
// within a deadline, then the queue, the actors.
func (a *agent) stop() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	a.stopWith(ctx)
}

// stopWith is stop with svcCtx as the command loop's deadline; the queue
// still gets a minute to close.
func (a *agent) stopWith(svcCtx context.Context) {
	if a.sys == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	a.svc.Stop(svcCtx)
	if err := a.q.Close(ctx); err != nil {
		a.t.Errorf("closing the queue: %v", err)
	}
	_ = a.g.Stop()
	a.sys.Shutdown()
	a.sys = nil
	select {
	case why := <-a.fatal:
		a.t.Errorf("an actor failed for good: %s", why)
	default:
	}
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// command hands the agent a command through the devserver.
func (a *agent) command(typ string, params any) string {
	a.t.Helper()
	return a.commandExpiring(typ, params, nil)
}

func (a *agent) commandExpiring(typ string, params any, expires *time.Time) string {
	a.t.Helper()
	raw, err := json.Marshal(params)
	if err != nil {
		a.t.Fatal(err)
	}
	c, err := a.dev.Admin.AddCommand(ctxT(a.t), a.id, devserver.NewCommand{Type: typ, Params: raw, ExpiresAt: expires})
	if err != nil {
		a.t.Fatal(err)
	}
	return c.ID
}

// result waits for the command's result at the backend.
func (a *agent) result(id string) devserver.Result {
	a.t.Helper()
	r, err := a.dev.Admin.WaitResult(ctxT(a.t), id)
	if err != nil {
		a.t.Fatal(err)
	}
	return r
}

// journal reads the command's journal entry.
func (a *agent) journal(id string) actors.JournalEntry {
	a.t.Helper()
	e, ok, err := actors.Journal{Q: a.q}.Get(id)
	if err != nil || !ok {
		a.t.Fatalf("journal entry of %s: ok %v, %v", id, ok, err)
	}
	return e
}

func (a *agent) running() []string {
	a.t.Helper()
	ids, err := a.svc.Running(ctxT(a.t))
	if err != nil {
		a.t.Fatal(err)
	}
	return ids
}

func (a *agent) isRunning(id string) bool { return slices.Contains(a.running(), id) }

// records counts the records the backend accepted for an integration.
func (a *agent) records(integration string) int {
	a.t.Helper()
	recs, err := a.dev.Admin.Records(ctxT(a.t), devserver.UploadFilter{RoutingKey: sessions.QueueKey(integration)})
	if err != nil {
		a.t.Fatal(err)
	}
	return len(recs)
}

// waitFor polls cond until it holds; a minute is far beyond what any of
// these conditions needs, so reaching it is a failure, not load.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// synth is one synthetic integration of an export's params.
func synth(id string, cfg map[string]any) map[string]any {
	return map[string]any{"id": id, "type": "synthetic", "config": cfg}
}

func export(integrations ...map[string]any) map[string]any {
	return map[string]any{"integrations": integrations}
}

// hanging is a synthetic integration that sends n records and then blocks
// until it is cancelled (on every first attempt, so also after a restart
// of the agent).
func hanging(id string, n int) map[string]any {
	return synth(id, map[string]any{"items_per_repo": n + 10, "hang_after": n})
}

// waitHanging waits until the export runs, its start journaled.
func (a *agent) waitHanging(cmd string) {
	a.t.Helper()
	waitFor(a.t, cmd+" running", func() bool { return a.isRunning(cmd) && !a.journal(cmd).StartedAt.IsZero() })
}

func cancelOf(id string) map[string]any { return map[string]any{"command_id": id} }

func validateParams() map[string]any {
	return map[string]any{"integration": synth("v", map[string]any{"items_per_repo": 1})}
}
