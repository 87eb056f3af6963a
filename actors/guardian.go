package actors

import (
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/cenkalti/backoff/v4"
	"github.com/rs/zerolog"
)

// Policy says what the guardian does when a child fails.
type Policy int

const (
	// Restart restarts the child after a backoff that grows with each
	// failure in a row, up to MaxRestarts in RestartWindow; past that the
	// child is treated as Fatal.
	Restart Policy = iota
	// Fatal stops the child and reports it through OnFatal: the agent shuts
	// down and the service manager restarts the process. For the core (the
	// queue), where a panic means a bug whose state is not worth guessing.
	Fatal
)

// GuardianOptions configure the guardian.
type GuardianOptions struct {
	Log zerolog.Logger
	// OnFatal is called once, from any goroutine, when a child fails for
	// good.
	OnFatal       func(child string, reason any)
	MaxRestarts   int
	RestartWindow time.Duration
	// BackoffInitial and BackoffMax shape the pause before a restart.
	BackoffInitial time.Duration
	BackoffMax     time.Duration
}

// Guardian is the root of courier's actor tree. It is the only supervisor
// that is not itself supervised, so it never escalates: protoactor's own
// restart backoff is linear, uncapped and never gives up, and AllForOne here
// would kill the process, so it brings its own strategy.
type Guardian struct {
	sys  *actor.ActorSystem
	pid  *actor.PID
	opts GuardianOptions

	mu       sync.Mutex
	policies map[string]Policy // child id -> policy
	fatal    sync.Once
}

type spawnReq struct {
	props  *actor.Props
	name   string
	policy Policy
	reply  chan spawnResult
}

type spawnResult struct {
	pid *actor.PID
	err error
}

// NewGuardian starts the guardian actor.
func NewGuardian(sys *actor.ActorSystem, opts GuardianOptions) (*Guardian, error) {
	if opts.MaxRestarts <= 0 {
		opts.MaxRestarts = 5
	}
	if opts.RestartWindow <= 0 {
		opts.RestartWindow = 5 * time.Minute
	}
	if opts.BackoffInitial <= 0 {
		opts.BackoffInitial = 200 * time.Millisecond
	}
	if opts.BackoffMax <= 0 {
		opts.BackoffMax = 30 * time.Second
	}
	g := &Guardian{sys: sys, opts: opts, policies: map[string]Policy{}}
	props := actor.PropsFromFunc(g.receive, actor.WithSupervisor(&strategy{g: g, backoffs: map[string]*backoff.ExponentialBackOff{}}))
	pid, err := sys.Root.SpawnNamed(props, "guardian")
	if err != nil {
		return nil, fmt.Errorf("start guardian: %w", err)
	}
	g.pid = pid
	return g, nil
}

// Spawn starts a child of the guardian under the given policy. It is safe
// to call from any goroutine but not from inside an actor's Receive.
func (g *Guardian) Spawn(props *actor.Props, name string, policy Policy) (*actor.PID, error) {
	r := &spawnReq{props: props, name: name, policy: policy, reply: make(chan spawnResult, 1)}
	g.sys.Root.Send(g.pid, r)
	select {
	case res := <-r.reply:
		return res.pid, res.err
	case <-time.After(10 * time.Second):
		return nil, errors.New("guardian did not answer a spawn request within 10s")
	}
}

// Stop stops the guardian and, children first, everything under it.
func (g *Guardian) Stop() error {
	return g.sys.Root.StopFuture(g.pid).Wait()
}

func (g *Guardian) receive(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case *spawnReq:
		pid, err := ctx.SpawnNamed(m.props, m.name)
		if err == nil {
			g.mu.Lock()
			g.policies[pid.Id] = m.policy
			g.mu.Unlock()
		}
		m.reply <- spawnResult{pid: pid, err: err}
	case *actor.Terminated:
		g.mu.Lock()
		delete(g.policies, m.Who.Id)
		g.mu.Unlock()
	}
}

func (g *Guardian) policy(id string) Policy {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.policies[id]
}

func (g *Guardian) giveUp(child *actor.PID, reason any) {
	g.opts.Log.Error().Str("actor", child.Id).Str("reason", fmt.Sprint(reason)).Msg("actor failed for good; shutting down so the service manager can restart the agent")
	g.fatal.Do(func() {
		if g.opts.OnFatal != nil {
			g.opts.OnFatal(child.Id, reason)
		}
	})
}

// strategy restarts a failed child after an exponential backoff with jitter
// (backoff/v4), up to MaxRestarts within RestartWindow.
type strategy struct {
	g        *Guardian
	mu       sync.Mutex
	backoffs map[string]*backoff.ExponentialBackOff
}

func (s *strategy) HandleFailure(_ *actor.ActorSystem, sup actor.Supervisor, child *actor.PID, rs *actor.RestartStatistics, reason any, _ any) {
	g := s.g
	if g.policy(child.Id) == Fatal {
		sup.StopChildren(child)
		g.giveUp(child, reason)
		return
	}
	rs.Fail()
	if rs.NumberOfFailures(g.opts.RestartWindow) > g.opts.MaxRestarts {
		sup.StopChildren(child)
		g.giveUp(child, fmt.Sprintf("failed %d times within %s, last: %v", g.opts.MaxRestarts+1, g.opts.RestartWindow, reason))
		return
	}
	s.mu.Lock()
	b := s.backoffs[child.Id]
	if b == nil {
		b = backoff.NewExponentialBackOff()
		b.InitialInterval = g.opts.BackoffInitial
		b.MaxInterval = g.opts.BackoffMax
		b.MaxElapsedTime = 0
		b.Reset()
		s.backoffs[child.Id] = b
	}
	wait := b.NextBackOff()
	s.mu.Unlock()
	g.opts.Log.Warn().Str("actor", child.Id).Str("reason", fmt.Sprint(reason)).Dur("restart_in_ms", wait).Msg("actor failed; restarting it")
	// The failed child is suspended until restarted, so its mailbox waits.
	time.AfterFunc(wait, func() { sup.RestartChildren(child) })
}
