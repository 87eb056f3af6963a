package actors_test

import (
	"context"
	"sync"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"

	"courier/backend"
	"courier/queue"
)

// TestCrashAfterTheResultDoesNotRunTheCommandAgain: the disk is crashed
// (what was not fsynced dropped) the moment the result is durable enough
// to be delivered. Started again on that disk, the agent has the command
// done: the result and the journal's "done" are one batch, so there is no
// crash between them that re-runs the command.
func TestCrashAfterTheResultDoesNotRunTheCommandAgain(t *testing.T) {
	fs := vfs.NewCrashableMem()
	var once sync.Once
	var crashed *vfs.MemFS
	var a *agent
	a = newAgent(t, agentOptions{FS: fs, Route: func(key string) queue.Route {
		if key != backend.ResultsKey {
			return queue.Route{}
		}
		sink := a.client.Sink()
		return queue.Route{Sink: queue.SinkFunc(func(ctx context.Context, key string, batch []queue.Message) error {
			once.Do(func() { crashed = fs.CrashClone(vfs.CrashCloneCfg{}) })
			return sink.Deliver(ctx, key, batch)
		})}
	}})
	id := a.command("export", export(synth("once", map[string]any{"orgs": 1, "repos_per_org": 1, "items_per_repo": 20})))
	if r := a.result(id); r.Status != "succeeded" {
		t.Fatalf("result %+v", r)
	}
	a.stop()
	a.opts.FS = crashed
	a.start()
	if e := a.journal(id); e.State != "done" {
		t.Fatalf("after the crash the journal has %+v: the command runs again", e)
	}
	// Resuming happens as the router starts, before it answers this.
	a.running()
	if n := a.logs.Count("resuming a command interrupted by a restart"); n != 0 {
		t.Fatalf("the command was resumed after the crash (%d)", n)
	}
	// The result itself may be delivered again (its delivery was not
	// settled on the crashed disk); the backend counts that as a repeat.
}
