package actors

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/rs/zerolog"

	"courier/backend"
	"courier/logging"
)

// commandHandler runs one command type. A new command type is a file with
// its handler and one entry in handlers.
type commandHandler struct {
	// prepare decodes the params before the command starts: the
	// integration ids it holds (an export: one at a time per integration)
	// and what run needs. An error ends the command as failed, unrun.
	prepare func(c backend.Command) (plan, error)
	// run does the work, straight-line, until it ends or ctx is cancelled
	// (cause errCancelled: a backend cancel; errInterrupted: the agent is
	// stopping). It is called at most once per start of the command.
	run func(ctx context.Context, s *Service, c backend.Command, p plan) backend.Result
	// shipLogs ships the command's log lines to the backend.
	shipLogs bool
}

// plan is what prepare found in a command's params.
type plan struct {
	holds []string // integration ids held while the command runs
	spec  any
}

// handlers are the command types the agent runs, each under its own
// supervisor actor. cancel is the router's own (it needs the router's
// state); its result is stored like any other by a command actor.
var handlers = map[string]commandHandler{
	CommandExport:   exportHandler,
	CommandValidate: validateHandler,
	CommandOnboard:  onboardHandler,
}

// rejectedSupervisor hosts the command actors of cancel commands and of
// unknown command types: they only store the result the router made.
const rejectedSupervisor = "other"

// Messages between the router, the supervisors and the command actors.
// Each command run is a *cmdRun made by the router; the messages about it
// carry it, so that after a restart of the router a late message of the
// old run is told from the live one.
type (
	// startCommand asks a supervisor to run a command: with its handler,
	// or, when fixed is set, only to store that result.
	startCommand struct {
		run   *cmdRun
		plan  plan
		fixed *backend.Result
	}
	// stopCommand reaches a command's actor through its supervisor: cause
	// is errCancelled (a backend cancel) or errInterrupted (the stop).
	stopCommand struct {
		id    string
		cause error
	}
	// commandEnded tells the router that a command's actor is done: its
	// result stored, or interrupted (it stays journaled).
	commandEnded struct {
		run    *cmdRun
		stored bool
	}
	commandWorkDone struct{ stored bool }
)

// cmdRun is the router's record of one running command.
type cmdRun struct {
	entry JournalEntry
	holds []string
}

// supervisorActor owns the command actors of one command type: one child
// per running command, stopped (never restarted) if it fails; the router
// hears of its end either way.
type supervisorActor struct {
	s        *Service
	typ      string
	router   *actor.PID
	children map[string]*actor.PID // command id -> its actor
	runs     map[string]*cmdRun    // actor id -> its run
	n        int
}

func supervisorProps(s *Service, typ string, router *actor.PID) *actor.Props {
	return actor.PropsFromProducer(func() actor.Actor {
		return &supervisorActor{s: s, typ: typ, router: router, children: map[string]*actor.PID{}, runs: map[string]*cmdRun{}}
	}, actor.WithSupervisor(actor.NewOneForOneStrategy(0, time.Minute, func(any) actor.Directive { return actor.StopDirective })))
}

func (a *supervisorActor) Receive(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case *startCommand:
		id := m.run.entry.Command.ID
		ca := &commandActor{s: a.s, router: a.router, run: m.run, plan: m.plan, fixed: m.fixed, h: handlers[a.typ]}
		// A command may run again (a resume after an interrupted run whose
		// actor is still leaving the registry): the name stays unique.
		a.n++
		pid, err := ctx.SpawnNamed(actor.PropsFromProducer(func() actor.Actor { return ca }), fmt.Sprintf("%s#%d", id, a.n))
		if err != nil {
			a.s.opts.Log.Error().Err(err).Str(logging.FieldCommand, id).Msg("cannot start the command's actor; it stays journaled and runs at the next start")
			ctx.Send(a.router, &commandEnded{run: m.run})
			return
		}
		a.children[id] = pid
		a.runs[pid.Id] = m.run
	case *stopCommand:
		if pid := a.children[m.id]; pid != nil {
			ctx.Send(pid, m)
		}
	case *actor.Terminated:
		run := a.runs[m.Who.Id]
		if run == nil {
			return
		}
		delete(a.runs, m.Who.Id)
		if a.children[run.entry.Command.ID].Equal(m.Who) {
			delete(a.children, run.entry.Command.ID)
		}
		// Normally the command said it ended already; if its actor failed
		// instead, this ends it (it stays journaled).
		ctx.Send(a.router, &commandEnded{run: run})
	}
}

// commandActor runs one command in a goroutine: mark started, run the
// handler, store the result and the journal's "done" in one batch, tell
// the router. Cancel and interrupt reach it as stopCommand.
type commandActor struct {
	s      *Service
	router *actor.PID
	run    *cmdRun
	plan   plan
	fixed  *backend.Result
	h      commandHandler

	// work is the handler's context; life ends when the actor stops (the
	// result of an interrupted command is still stored within it).
	cancelWork context.CancelCauseFunc
	cancelLife context.CancelFunc
	done       chan struct{}
}

// errInterrupted is the cause of a command stopped because the agent is
// stopping: it is not over, and runs again at the next start.
var errInterrupted = errors.New("interrupted: the agent is stopping; it resumes at the next start")

func (a *commandActor) Receive(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case *actor.Started:
		life, cancelLife := context.WithCancel(context.Background())
		work, cancelWork := context.WithCancelCause(life)
		a.cancelLife, a.cancelWork, a.done = cancelLife, cancelWork, make(chan struct{})
		self, sys := ctx.Self(), ctx.ActorSystem()
		go func() {
			defer close(a.done)
			stored := a.execute(life, work)
			sys.Root.Send(self, &commandWorkDone{stored: stored})
		}()
	case *stopCommand:
		a.log().Debug().Str("cause", m.cause.Error()).Msg("the command is told to stop")
		a.cancelWork(m.cause)
	case *commandWorkDone:
		ctx.Send(a.router, &commandEnded{run: a.run, stored: m.stored})
		ctx.Stop(ctx.Self())
	case *actor.Stopping:
		a.cancelWork(errInterrupted)
		a.cancelLife()
		a.log().Debug().Msg("the command's actor is stopping; waiting for its work to end")
		select {
		case <-a.done:
		case <-time.After(15 * time.Second):
			a.log().Error().Msg("command did not end within 15s of the stop; it resumes at the next start")
		}
	}
}

func (a *commandActor) log() *zerolog.Logger {
	l := a.s.opts.Log.With().Str(logging.FieldComponent, "commands").Str(logging.FieldCommand, a.run.entry.Command.ID).Str("type", a.run.entry.Command.Type).Logger()
	return &l
}

// execute is the command's straight line; it reports whether a result was
// stored. Nothing else writes the command's journal entry meanwhile: the
// start is written before the work, the "done" after it.
func (a *commandActor) execute(life, work context.Context) bool {
	e := a.run.entry
	c := e.Command
	log := a.log()
	j := a.s.journal
	if cur, ok, err := j.Get(c.ID); err == nil && ok && cur.State == journalDone {
		return false // a late dispatch of a command that has its result already
	}
	started := time.Now().UTC()
	var res backend.Result
	if a.fixed != nil {
		res = *a.fixed
	} else {
		if e.StartedAt.IsZero() {
			// Expiry is judged on the first start only.
			e.StartedAt = started
			if err := a.putStart(life, e); err != nil {
				log.Warn().Err(err).Msg("could not record the command's start")
			}
		}
		if a.h.shipLogs && a.s.opts.Ships != nil {
			a.s.opts.Ships.Track(c.ID)
			defer a.s.opts.Ships.Untrack(c.ID)
		}
		res = a.h.run(work, a.s, c, a.plan)
		if errors.Is(context.Cause(work), errInterrupted) && res.Status != ResultSucceeded {
			log.Info().Msg("command interrupted by the stop; it stays journaled and runs again at the next start")
			return false
		}
	}
	if res.StartedAt.IsZero() {
		res.StartedAt = started
	}
	res.FinishedAt = time.Now().UTC()
	ev := log.Info()
	if res.Status != ResultSucceeded {
		ev = log.Warn().Str("error", res.Error)
	}
	ev.Str("status", res.Status).Msg("command finished")
	e.State, e.FinishedAt, e.Status = journalDone, res.FinishedAt, res.Status
	if e.StartedAt.IsZero() {
		e.StartedAt = res.StartedAt
	}
	payload, err := backend.EncodeResult(c.ID, res)
	if err != nil {
		log.Error().Err(err).Msg("cannot encode the command's result; it runs again at the next start")
		return false
	}
	bo := newBackoff(time.Second, time.Minute)
	for {
		// Not work: a result made while the command is being stopped must
		// still be stored. life bounds the retries, not the first attempt.
		sctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		err = j.Finish(sctx, e, payload)
		cancel()
		if err == nil {
			return true
		}
		if life.Err() != nil {
			log.Error().Err(err).Msg("cannot store the command's result; the journal still says accepted: it runs again at the next start")
			return false
		}
		log.Error().Err(err).Msg("cannot store the command's result; retrying")
		if !sleepCtx(life, bo.NextBackOff()) {
			return false
		}
	}
}

// putStart records the start in the journal entry as it is now.
func (a *commandActor) putStart(life context.Context, e JournalEntry) error {
	ctx, cancel := context.WithTimeout(life, 30*time.Second)
	defer cancel()
	cur, ok, err := a.s.journal.Get(e.Command.ID)
	if err != nil {
		return err
	}
	if !ok || cur.State == journalDone {
		return nil
	}
	cur.StartedAt = e.StartedAt
	return a.s.journal.Put(ctx, cur)
}

// supervisorFor names the supervisor of a command type.
func supervisorFor(typ string) string {
	if _, ok := handlers[typ]; ok {
		return typ
	}
	return rejectedSupervisor
}

func unknownType(typ string) backend.Result {
	return backend.Result{Status: ResultFailed, Error: fmt.Sprintf("unknown command type %q (this agent runs export, validate-config, export-onboard-data and cancel)", typ)}
}
