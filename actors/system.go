package actors

import (
	"log/slog"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/rs/zerolog"

	"courier/logging"
)

// NewSystem returns an actor system that logs through log instead of
// protoactor's default slog handler on stdout.
func NewSystem(log zerolog.Logger) *actor.ActorSystem {
	sl := logging.Slog(log)
	return actor.NewActorSystem(
		actor.WithLoggerFactory(func(*actor.ActorSystem) *slog.Logger { return sl }),
		// Dead letters are normal at shutdown (a late reply to a stopped
		// actor); keep the throttle's goroutine short-lived.
		actor.WithDeadLetterThrottleInterval(100*time.Millisecond),
	)
}
