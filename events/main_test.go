package events

import (
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	// Tests that run the real queue stop actors: protoactor's dead-letter
	// throttle then parks a goroutine for one throttle interval after a
	// message reaches a stopped actor; it ends by itself (as in queue's).
	goleak.VerifyTestMain(m, goleak.IgnoreTopFunction("github.com/asynkron/protoactor-go/actor.NewDeadLetter.NewThrottle.func4.1"))
}
