package actors

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/rs/zerolog"

	"courier/integrations"
)

// workerProps makes an actor that runs loop in a goroutine for as long as
// the actor lives. A loop blocks (long polls, sleeps), which Receive must
// never do; a panic or an error in it becomes a panic of the actor, so the
// guardian restarts it with backoff instead of the process dying.
func workerProps(name string, log zerolog.Logger, loop func(ctx context.Context) error) *actor.Props {
	return actor.PropsFromProducer(func() actor.Actor { return &workerActor{name: name, log: log, loop: loop} })
}

type workerActor struct {
	name   string
	log    zerolog.Logger
	loop   func(ctx context.Context) error
	cancel context.CancelFunc
	done   chan struct{}
}

type workerFailed struct{ err error }

func (w *workerActor) Receive(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case *actor.Started:
		wctx, cancel := context.WithCancel(context.Background())
		w.cancel, w.done = cancel, make(chan struct{})
		self, sys := ctx.Self(), ctx.ActorSystem()
		go func() {
			defer close(w.done)
			err := integrations.Safe(func() error { return w.loop(wctx) })
			if err != nil && wctx.Err() == nil {
				var p *integrations.PanicError
				if errors.As(err, &p) {
					w.log.Error().Str("panic", fmt.Sprint(p.Value)).Str("stack", string(p.Stack)).Msg(w.name + " panicked")
				}
				sys.Root.Send(self, &workerFailed{err: err})
			}
		}()
	case *workerFailed:
		panic(fmt.Sprintf("%s: %v", w.name, m.err))
	case *actor.Stopping, *actor.Restarting:
		if w.cancel != nil {
			w.cancel()
			select {
			case <-w.done:
			case <-time.After(10 * time.Second):
				w.log.Error().Msg(w.name + " did not stop within 10s of being cancelled")
			}
			w.cancel = nil
		}
	}
}

// sleepCtx waits d or until ctx ends; false when ctx ended.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
