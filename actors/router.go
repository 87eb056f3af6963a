package actors

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/rs/zerolog"

	"courier/backend"
	"courier/logging"
)

type (
	dispatchMsg  struct{ entry JournalEntry }
	runningReq   struct{ reply chan []string }
	shutdownReq  struct{ reply chan struct{} }
	resumeFailed struct{ err error }
)

// router keeps what the commands share: which are running (dedupe), one
// export per integration at a time (the others wait), cancel lookup and
// expiry. It runs nothing and does no I/O in Receive: each command runs in
// its own actor under the supervisor of its type, which stores the result;
// the journal is read at start by a goroutine the router owns.
type router struct {
	s       *Service
	log     zerolog.Logger
	sups    map[string]*actor.PID // supervisor name -> pid
	running map[string]*cmdRun
	busy    map[string]string // integration id -> command id
	waiting []JournalEntry
	ctx     context.Context
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	// draining is set at shutdown: no new command starts, and the reply
	// goes out once every running one has ended.
	draining *shutdownReq
}

func newRouter(s *Service) *router {
	ctx, cancel := context.WithCancel(context.Background())
	return &router{s: s, log: s.opts.Log.With().Str(logging.FieldComponent, "commands").Logger(),
		sups: map[string]*actor.PID{}, running: map[string]*cmdRun{}, busy: map[string]string{}, ctx: ctx, cancel: cancel}
}

func (r *router) Receive(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case *actor.Started:
		r.started(ctx)
	case *dispatchMsg:
		r.dispatch(ctx, m.entry)
	case *commandEnded:
		if r.running[m.run.entry.Command.ID] == m.run {
			r.ended(ctx, m.run)
		}
	case *resumeFailed:
		r.log.Error().Err(m.err).Msg("cannot read the command journal; unfinished commands run when the backend delivers them again or at the next start")
	case *shutdownReq:
		r.shutdown(ctx, m)
	case *runningReq:
		ids := make([]string, 0, len(r.running))
		for id := range r.running {
			ids = append(ids, id)
		}
		m.reply <- ids
	case *actor.Stopping, *actor.Restarting:
		// The supervisors and their command actors are stopped by
		// protoactor after this: interrupted, they stay journaled.
		r.cancel()
		r.wg.Wait()
	}
}

// started spawns one supervisor per command type and resumes what the
// journal has accepted but not finished: a command interrupted by a crash
// or a stop ends with one result after the restart.
func (r *router) started(ctx actor.Context) {
	names := []string{rejectedSupervisor}
	for typ := range handlers {
		names = append(names, typ)
	}
	for _, n := range names {
		pid, err := ctx.SpawnNamed(supervisorProps(r.s, n, ctx.Self()), n)
		if err != nil {
			panic(fmt.Sprintf("spawn the %s supervisor: %v", n, err)) // the guardian restarts the router
		}
		r.sups[n] = pid
	}
	self, sys := ctx.Self(), ctx.ActorSystem()
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		qctx, cancel := context.WithTimeout(r.ctx, 30*time.Second)
		defer cancel()
		entries, err := r.s.journal.Unfinished(qctx)
		if err != nil {
			if r.ctx.Err() == nil {
				sys.Root.Send(self, &resumeFailed{err: err})
			}
			return
		}
		for _, e := range entries {
			r.log.Info().Str(logging.FieldCommand, e.Command.ID).Str("type", e.Command.Type).Msg("resuming a command interrupted by a restart")
			sys.Root.Send(self, &dispatchMsg{entry: e})
		}
	}()
}

// shutdown ends no command for good: the journal keeps waiting and running
// commands for the next start, as it does through a kill -9. Running ones
// are interrupted so that the stop is prompt; a result already made is
// stored.
func (r *router) shutdown(ctx actor.Context, m *shutdownReq) {
	r.draining = m
	if n := len(r.waiting); n > 0 {
		r.log.Info().Int("commands", n).Msg("waiting commands stay journaled; they start at the next start")
	}
	r.waiting = nil
	for id, run := range r.running {
		ctx.Send(r.sups[supervisorFor(run.entry.Command.Type)], &stopCommand{id: id, cause: errInterrupted})
	}
	r.drained()
}

func (r *router) drained() {
	if r.draining != nil && len(r.running) == 0 {
		r.draining.reply <- struct{}{}
		r.draining = nil
	}
}

func (r *router) dispatch(ctx actor.Context, e JournalEntry) {
	c := e.Command
	if _, ok := r.running[c.ID]; ok || r.draining != nil {
		return // running, or shutting down: the journal keeps it for the next start
	}
	log := r.log.With().Str(logging.FieldCommand, c.ID).Str("type", c.Type).Logger()
	if e.StartedAt.IsZero() && c.ExpiresAt != nil && time.Now().After(*c.ExpiresAt) {
		log.Warn().Time("expired_at", *c.ExpiresAt).Msg("command expired before it started; not running it")
		r.finish(ctx, e, backend.Result{Status: ResultExpired, Error: fmt.Sprintf("expired at %s before it started", c.ExpiresAt.UTC().Format(time.RFC3339))})
		return
	}
	if c.Type == CommandCancel {
		r.finish(ctx, e, r.cancelCmd(ctx, c))
		return
	}
	h, ok := handlers[c.Type]
	if !ok {
		r.finish(ctx, e, unknownType(c.Type))
		return
	}
	p, err := h.prepare(c)
	if err != nil {
		r.finish(ctx, e, failedParams(err))
		return
	}
	// One export per integration at a time: a second one waits.
	for _, i := range p.holds {
		if other, busy := r.busy[i]; busy && other != c.ID {
			for _, w := range r.waiting {
				if w.Command.ID == c.ID {
					return
				}
			}
			log.Info().Str("integration", i).Str("waiting_for", other).Msg("integration is exporting for another command; this one waits")
			r.waiting = append(r.waiting, e)
			return
		}
	}
	run := &cmdRun{entry: e, holds: p.holds}
	for _, i := range p.holds {
		r.busy[i] = c.ID
	}
	r.running[c.ID] = run
	ctx.Send(r.sups[c.Type], &startCommand{run: run, plan: p})
}

// finish has a command's actor store a result the router made (expired,
// cancelled before it started, bad params, a cancel's own) without running
// anything.
func (r *router) finish(ctx actor.Context, e JournalEntry, res backend.Result) {
	run := &cmdRun{entry: e}
	r.running[e.Command.ID] = run
	ctx.Send(r.sups[supervisorFor(e.Command.Type)], &startCommand{run: run, fixed: &res})
}

func (r *router) cancelCmd(ctx actor.Context, c backend.Command) backend.Result {
	var p struct {
		CommandID string `json:"command_id"`
	}
	if err := decodeParams(c.Params, &p); err != nil || p.CommandID == "" {
		return failedParams(fmt.Errorf("command_id is missing"))
	}
	out, _ := json.Marshal(map[string]string{"cancelled": p.CommandID})
	for i, w := range r.waiting {
		if w.Command.ID == p.CommandID {
			r.waiting = append(r.waiting[:i], r.waiting[i+1:]...)
			r.finish(ctx, w, backend.Result{Status: ResultCancelled, Error: "cancelled before it started (by " + c.ID + ")"})
			return backend.Result{Status: ResultSucceeded, Output: out}
		}
	}
	run := r.running[p.CommandID]
	if run == nil {
		return backend.Result{Status: ResultFailed, Error: fmt.Sprintf("command %s is not running", p.CommandID)}
	}
	ctx.Send(r.sups[supervisorFor(run.entry.Command.Type)], &stopCommand{id: p.CommandID, cause: errCancelled})
	return backend.Result{Status: ResultSucceeded, Output: out}
}

// ended forgets a command whose actor is done (its result stored, or
// interrupted), and starts what waited for its integrations.
func (r *router) ended(ctx actor.Context, run *cmdRun) {
	id := run.entry.Command.ID
	delete(r.running, id)
	for _, i := range run.holds {
		if r.busy[i] == id {
			delete(r.busy, i)
		}
	}
	if r.draining != nil {
		r.drained()
		return
	}
	waiting := r.waiting
	r.waiting = nil
	for _, w := range waiting {
		r.dispatch(ctx, w)
	}
}
