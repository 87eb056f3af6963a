package actors

import (
	"testing"

	"github.com/asynkron/protoactor-go/actor"
)

// What the external tests (package actors_test) need of the internals.

// WorkerProps is workerProps, to run a worker under a guardian.
var WorkerProps = workerProps

// RestartRouter restarts the command router the way its supervisor does
// after a failure: the Restart system message.
func RestartRouter(t testing.TB, s *Service) {
	t.Helper()
	p, ok := s.sys.ProcessRegistry.Get(s.router)
	if !ok {
		t.Fatal("the command router is not running")
	}
	p.SendSystemMessage(s.router, &actor.Restart{})
}
