package actors

import (
	"context"
	"errors"
	"fmt"
	"io"
	"runtime/debug"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/cenkalti/backoff/v4"
	"github.com/rs/zerolog"

	"courier/integrations"
	"courier/logging"
	"courier/sessions"
)

// Integration result statuses (PROTOCOL.md export output).
const (
	StatusSucceeded = "succeeded"
	StatusFailed    = "failed"
	StatusCancelled = "cancelled"
)

var (
	errStalled   = errors.New("stalled")
	errCancelled = errors.New("export cancelled")
)

// IntegrationSpec is one integration of an export, its config decoded and
// validated.
type IntegrationSpec struct {
	ID     string
	Type   string
	Config integrations.Config
}

// ExportSpec is one export: a backend command's params or a manual run.
type ExportSpec struct {
	// ID names the job; unique among running jobs.
	ID string
	// CommandID is the backend command, when there is one: records carry
	// it (X-Command-Id) and so do log lines (shipped to /logs).
	CommandID    string
	Integrations []IntegrationSpec
	Reprocess    bool
}

// IntegrationResult is one integration's outcome (PROTOCOL.md).
type IntegrationResult struct {
	ID           string                 `json:"id"`
	Type         string                 `json:"-"`
	Status       string                 `json:"status"`
	Error        string                 `json:"error"`
	DurationMS   int64                  `json:"duration_ms"`
	Records      map[string]int64       `json:"records"`
	Restarts     int                    `json:"restarts"`
	Incremental  bool                   `json:"incremental"`
	EntityErrors []sessions.EntityError `json:"entity_errors"`
	// Stack is the last panic's stack, for a person reading the summary.
	Stack string `json:"-"`
}

// ExportResult is the output of an export.
type ExportResult struct {
	Integrations []IntegrationResult `json:"integrations"`
}

// Failed reports whether any integration did not succeed.
func (r ExportResult) Failed() bool {
	for _, i := range r.Integrations {
		if i.Status != StatusSucceeded {
			return true
		}
	}
	return false
}

// ExportOptions configure the export supervisor.
type ExportOptions struct {
	Store sessions.Store
	Log   zerolog.Logger
	// CacheDir returns the private cache folder of an integration id.
	CacheDir func(id string) string
	// BaseDir is what relative paths in integration configs are resolved
	// against (integrations.Options.BaseDir): the agent's root.
	BaseDir string
	// IntegrationLogger, when set, returns the logger of an integration id
	// and what to close when it is done: the CLI's writes to Log's outputs
	// and to logs/integrations/<id> (last run only).
	IntegrationLogger func(id string) (zerolog.Logger, io.Closer)
	MaxParallel       int
	StallTimeout      time.Duration
	// MaxRestarts after a panic, each after a growing backoff.
	MaxRestarts    int
	RestartBackoff time.Duration
}

// Exporter runs exports under the "export" supervisor actor.
type Exporter struct {
	sys  *actor.ActorSystem
	pid  *actor.PID
	opts ExportOptions
}

type startJob struct {
	job   *Job
	reply chan error
}

// NewExporter starts the export supervisor under the guardian.
func NewExporter(sys *actor.ActorSystem, g *Guardian, opts ExportOptions) (*Exporter, error) {
	if opts.MaxParallel <= 0 {
		opts.MaxParallel = 4
	}
	if opts.StallTimeout <= 0 {
		opts.StallTimeout = 15 * time.Minute
	}
	if opts.MaxRestarts <= 0 {
		opts.MaxRestarts = 3
	}
	if opts.RestartBackoff <= 0 {
		opts.RestartBackoff = time.Second
	}
	if opts.CacheDir == nil {
		opts.CacheDir = func(string) string { return "" }
	}
	e := &Exporter{sys: sys, opts: opts}
	// A job actor runs no integration code itself; if it fails anyway,
	// stop it rather than replay its bookkeeping.
	props := actor.PropsFromFunc(e.receive, actor.WithSupervisor(
		actor.NewOneForOneStrategy(0, time.Minute, func(any) actor.Directive { return actor.StopDirective })))
	pid, err := g.Spawn(props, "export", Restart)
	if err != nil {
		return nil, err
	}
	e.pid = pid
	return e, nil
}

func (e *Exporter) receive(ctx actor.Context) {
	m, ok := ctx.Message().(*startJob)
	if !ok {
		return
	}
	j := m.job
	ja := &jobActor{job: j, opts: e.opts, byActor: map[string]*intState{}}
	props := actor.PropsFromProducer(func() actor.Actor { return ja }, actor.WithSupervisor(&jobStrategy{ja: ja}))
	_, err := ctx.SpawnNamed(props, "job/"+j.spec.ID)
	m.reply <- err
}

// Start begins an export and returns at once; Wait for its result.
func (e *Exporter) Start(parent context.Context, spec ExportSpec) (*Job, error) {
	if len(spec.Integrations) == 0 {
		return nil, errors.New("export has no integrations")
	}
	seen := map[string]bool{}
	for _, s := range spec.Integrations {
		if seen[s.ID] {
			return nil, fmt.Errorf("integration id %q appears twice in one export", s.ID)
		}
		seen[s.ID] = true
		if _, err := integrations.Lookup(s.Type); err != nil {
			return nil, err
		}
	}
	ctx, cancel := context.WithCancelCause(parent)
	j := &Job{spec: spec, ctx: ctx, cancel: cancel, done: make(chan struct{}), runs: map[string]*runState{}}
	r := &startJob{job: j, reply: make(chan error, 1)}
	e.sys.Root.Send(e.pid, r)
	select {
	case err := <-r.reply:
		if err != nil {
			cancel(err)
			return nil, fmt.Errorf("start export %s: %w", spec.ID, err)
		}
	case <-time.After(10 * time.Second):
		cancel(nil)
		return nil, errors.New("export supervisor did not answer within 10s")
	}
	return j, nil
}

// Job is a running export.
type Job struct {
	spec   ExportSpec
	ctx    context.Context
	cancel context.CancelCauseFunc
	done   chan struct{}
	result ExportResult

	mu   sync.Mutex
	runs map[string]*runState
}

type runState struct {
	typ   string
	run   *sessions.Run
	carry map[string]int64 // records of earlier attempts
	state string
}

// ID is the job's id.
func (j *Job) ID() string { return j.spec.ID }

// Cancel stops every integration; they end as cancelled.
func (j *Job) Cancel() { j.cancel(errCancelled) }

// Done is closed when the result is ready.
func (j *Job) Done() <-chan struct{} { return j.done }

// Wait returns the result once every integration has ended.
func (j *Job) Wait(ctx context.Context) (ExportResult, error) {
	select {
	case <-j.done:
		return j.result, nil
	case <-ctx.Done():
		return ExportResult{}, ctx.Err()
	}
}

// Progress is one integration's live state.
type Progress struct {
	ID      string
	Type    string
	State   string // "waiting", "running", or a final status
	Nodes   []sessions.Node
	Records map[string]int64
}

// Progress lists every integration's session tree as it is now.
func (j *Job) Progress() []Progress {
	j.mu.Lock()
	defer j.mu.Unlock()
	out := make([]Progress, 0, len(j.spec.Integrations))
	for _, s := range j.spec.Integrations {
		p := Progress{ID: s.ID, Type: s.Type, State: "waiting"}
		if rs := j.runs[s.ID]; rs != nil {
			p.State = rs.state
			p.Nodes = rs.run.Snapshot()
			p.Records = rs.records()
		}
		out = append(out, p)
	}
	return out
}

func (rs *runState) records() map[string]int64 {
	out := map[string]int64{}
	for k, v := range rs.carry {
		out[k] += v
	}
	for k, v := range rs.run.Stats().Records {
		out[k] += v
	}
	return out
}

func (j *Job) newRun(spec IntegrationSpec, store sessions.Store) *sessions.Run {
	run := sessions.NewRun(sessions.RunOptions{IntegrationID: spec.ID, CommandID: j.spec.CommandID, Store: store, Reprocess: j.spec.Reprocess})
	j.mu.Lock()
	defer j.mu.Unlock()
	rs := j.runs[spec.ID]
	if rs == nil {
		rs = &runState{typ: spec.Type, carry: map[string]int64{}}
		j.runs[spec.ID] = rs
	} else {
		rs.carry = rs.records()
	}
	rs.run, rs.state = run, "running"
	return run
}

func (j *Job) finish(id, status string) {
	j.mu.Lock()
	if rs := j.runs[id]; rs != nil {
		rs.state = status
	}
	j.mu.Unlock()
}

// intState is the job's record of one integration.
type intState struct {
	spec     IntegrationSpec
	pid      *actor.PID
	start    time.Time
	restarts int
	attempt  atomic.Int32 // restarts, as the integration actor reads it
	lastErr  string
	stack    string
	log      zerolog.Logger
	logf     io.Closer
	bo       *backoff.ExponentialBackOff
	result   *IntegrationResult
}

type integrationFinished struct {
	pid   *actor.PID
	id    string
	err   error
	cause error
	stats sessions.Stats
}

// jobActor runs one export: an integration actor per integration, at most
// MaxParallel at once, and collects their results.
type jobActor struct {
	job     *Job
	opts    ExportOptions
	next    int
	byActor map[string]*intState // actor id -> state
	results []IntegrationResult
	running int
	// finished: the result is set; stopped: done is closed.
	finished, stopped bool
}

func (a *jobActor) Receive(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case *actor.Started:
		a.startMore(ctx)
	case *actor.Stopped:
		if a.stopped {
			return
		}
		a.stopped = true
		if !a.finished {
			// Stopped by its supervisor without a result: fail what has none.
			a.job.result = ExportResult{Integrations: a.unfinished()}
		}
		close(a.job.done)
		a.job.cancel(nil)
	case *integrationFinished:
		a.onFinished(ctx, m)
		ctx.Stop(m.pid)
	case *actor.Terminated:
		st := a.byActor[m.Who.Id]
		if st == nil || st.result != nil {
			return
		}
		// Stopped by the strategy after too many panics: no result came.
		a.record(ctx, st, &IntegrationResult{
			Status: StatusFailed, Error: fmt.Sprintf("crashed %d times, giving up; last: %s", st.restarts+1, st.lastErr),
		}, sessions.Stats{})
	}
}

func (a *jobActor) startMore(ctx actor.Context) {
	for a.running < a.opts.MaxParallel && a.next < len(a.job.spec.Integrations) {
		spec := a.job.spec.Integrations[a.next]
		a.next++
		if err := a.job.ctx.Err(); err != nil {
			a.results = append(a.results, IntegrationResult{ID: spec.ID, Type: spec.Type, Status: StatusCancelled,
				Error: "cancelled before it started", Records: map[string]int64{}})
			continue
		}
		bo := backoff.NewExponentialBackOff()
		bo.InitialInterval = a.opts.RestartBackoff
		bo.MaxElapsedTime = 0
		bo.Reset()
		st := &intState{spec: spec, start: time.Now(), bo: bo}
		// One log per integration and export, across restarts: the panic
		// that caused a restart must stay in logs/integrations/<id>.
		st.log = a.opts.Log.With().Str("integration", spec.ID).Logger()
		if a.opts.IntegrationLogger != nil {
			st.log, st.logf = a.opts.IntegrationLogger(spec.ID)
		}
		if c := a.job.spec.CommandID; c != "" {
			st.log = st.log.With().Str(logging.FieldCommand, c).Logger()
		}
		ia := func() actor.Actor { return &integrationActor{spec: spec, job: a.job, opts: a.opts, st: st} }
		pid, err := ctx.SpawnNamed(actor.PropsFromProducer(ia), "integration/"+spec.ID)
		if err != nil {
			a.results = append(a.results, IntegrationResult{ID: spec.ID, Type: spec.Type, Status: StatusFailed, Error: err.Error()})
			continue
		}
		st.pid = pid
		a.byActor[pid.Id] = st
		a.running++
	}
	a.maybeDone(ctx)
}

func (a *jobActor) onFinished(ctx actor.Context, m *integrationFinished) {
	var st *intState
	for _, s := range a.byActor {
		if s.spec.ID == m.id && s.result == nil {
			st = s
		}
	}
	if st == nil {
		return
	}
	r := &IntegrationResult{Status: StatusSucceeded}
	switch {
	case m.err == nil:
	case errors.Is(m.cause, errStalled):
		r.Status = StatusFailed
		r.Error = fmt.Sprintf("stalled: no progress for %s", a.opts.StallTimeout)
	case errors.Is(m.cause, errCancelled):
		r.Status = StatusCancelled
		r.Error = "cancelled"
	case errors.Is(m.cause, errInterrupted):
		r.Status = StatusCancelled
		r.Error = errInterrupted.Error()
	default:
		r.Status = StatusFailed
		r.Error = m.err.Error()
	}
	a.record(ctx, st, r, m.stats)
}

func (a *jobActor) record(ctx actor.Context, st *intState, r *IntegrationResult, stats sessions.Stats) {
	r.ID, r.Type = st.spec.ID, st.spec.Type
	r.DurationMS = time.Since(st.start).Milliseconds()
	r.Restarts = st.restarts
	r.Stack = st.stack
	r.Incremental = stats.Incremental
	r.EntityErrors = stats.EntityErrors
	if r.EntityErrors == nil {
		r.EntityErrors = []sessions.EntityError{}
	}
	a.job.mu.Lock()
	if rs := a.job.runs[st.spec.ID]; rs != nil {
		r.Records = rs.records()
	}
	a.job.mu.Unlock()
	if r.Records == nil {
		r.Records = map[string]int64{}
	}
	st.result = r
	a.job.finish(st.spec.ID, r.Status)
	a.results = append(a.results, *r)
	a.running--
	ev := st.log.Info()
	if r.Status != StatusSucceeded {
		ev = st.log.Error().Str("error", r.Error)
	}
	ev.Str("status", r.Status).Int64("duration_ms", r.DurationMS).Int("restarts", r.Restarts).Msg("integration finished")
	if st.logf != nil {
		_ = st.logf.Close()
	}
	a.startMore(ctx)
}

// unfinished is the results so far, and a failure for every integration
// without one, in the export's order.
func (a *jobActor) unfinished() []IntegrationResult {
	have := map[string]bool{}
	for _, r := range a.results {
		have[r.ID] = true
	}
	out := slices.Clone(a.results)
	for _, s := range a.job.spec.Integrations {
		if !have[s.ID] {
			out = append(out, IntegrationResult{ID: s.ID, Type: s.Type, Status: StatusFailed, Error: "the export's job stopped before this integration finished"})
		}
	}
	return out
}

func (a *jobActor) maybeDone(ctx actor.Context) {
	if a.running > 0 || a.next < len(a.job.spec.Integrations) {
		return
	}
	// Results in the order the export listed the integrations.
	order := map[string]int{}
	for i, s := range a.job.spec.Integrations {
		order[s.ID] = i
	}
	slices.SortFunc(a.results, func(x, y IntegrationResult) int { return order[x.ID] - order[y.ID] })
	a.job.result = ExportResult{Integrations: a.results}
	a.finished = true
	// Done is closed once this actor has left the registry (Stopped), not
	// here: a run of the same command started on Done (a router resuming
	// it after a restart) would otherwise find the name still taken.
	ctx.Stop(ctx.Self())
}

// jobStrategy restarts a panicking integration after a growing backoff, up
// to MaxRestarts times, then stops it; the job then fails that integration
// alone.
type jobStrategy struct{ ja *jobActor }

func (s *jobStrategy) HandleFailure(_ *actor.ActorSystem, sup actor.Supervisor, child *actor.PID, _ *actor.RestartStatistics, reason any, _ any) {
	a := s.ja
	st := a.byActor[child.Id]
	if st == nil {
		sup.StopChildren(child)
		return
	}
	if p, ok := reason.(*integrations.PanicError); ok {
		st.lastErr, st.stack = fmt.Sprint(p.Value), string(p.Stack)
	} else {
		st.lastErr = fmt.Sprint(reason)
	}
	if st.restarts >= a.opts.MaxRestarts || a.job.ctx.Err() != nil {
		sup.StopChildren(child)
		return
	}
	st.restarts++
	st.attempt.Store(int32(st.restarts))
	wait := st.bo.NextBackOff()
	a.opts.Log.Warn().Str("integration", st.spec.ID).Str("panic", st.lastErr).Int("restart", st.restarts).
		Dur("restart_in", wait).Msg("integration crashed; restarting it to resume from its tokens")
	time.AfterFunc(wait, func() { sup.RestartChildren(child) })
}

type exportDone struct{ err error }

// integrationActor runs one integration's Export in a goroutine (it blocks
// for as long as the export takes) and turns a panic there into a panic of
// the actor, which its job supervises.
type integrationActor struct {
	st     *intState
	spec   IntegrationSpec
	job    *Job
	opts   ExportOptions
	cancel context.CancelCauseFunc
	done   chan struct{}
	run    *sessions.Run
	ctx    context.Context
}

func (a *integrationActor) Receive(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case *actor.Started:
		a.start(ctx)
	case *exportDone:
		cause := context.Cause(a.ctx)
		if m.err == nil {
			cause = nil
		}
		a.stop()
		// The job stops this actor once it has the result: a Terminated
		// (a system message, handled first) must not overtake it.
		ctx.Send(ctx.Parent(), &integrationFinished{pid: ctx.Self(), id: a.spec.ID, err: m.err, cause: cause, stats: a.run.Stats()})
	case *integrations.PanicError:
		panic(m)
	case *actor.Stopping, *actor.Restarting:
		a.stop()
	}
}

func (a *integrationActor) start(ctx actor.Context) {
	log := a.st.log
	self := ctx.Self()
	sys := ctx.ActorSystem()
	a.run = a.job.newRun(a.spec, a.opts.Store)
	ectx, cancel := context.WithCancelCause(a.job.ctx)
	a.ctx, a.cancel, a.done = ectx, cancel, make(chan struct{})
	reg, err := integrations.Lookup(a.spec.Type)
	var inst integrations.Integration
	if err == nil {
		inst, err = reg.New(integrations.Options{ID: a.spec.ID, Logger: log, CacheDir: a.opts.CacheDir(a.spec.ID), BaseDir: a.opts.BaseDir, Attempt: int(a.st.attempt.Load())}, a.spec.Config)
	}
	if err != nil {
		close(a.done)
		sys.Root.Send(self, &exportDone{err: err})
		return
	}
	go func() {
		defer close(a.done)
		err := integrations.Safe(func() error { return inst.Export(ectx, a.run.Root()) })
		var p *integrations.PanicError
		if errors.As(err, &p) {
			log.Error().Str("panic", fmt.Sprint(p.Value)).Str("stack", string(p.Stack)).Msg("integration panicked")
			sys.Root.Send(self, p)
			return
		}
		sys.Root.Send(self, &exportDone{err: err})
	}()
	go a.watch(ectx, a.done, log)
}

// watch cancels the export when it shows no progress for StallTimeout.
func (a *integrationActor) watch(ctx context.Context, done <-chan struct{}, log zerolog.Logger) {
	defer func() {
		if v := recover(); v != nil {
			log.Error().Str("panic", fmt.Sprint(v)).Str("stack", string(debug.Stack())).Msg("stall watchdog panicked")
		}
	}()
	tick := min(a.opts.StallTimeout/4, 10*time.Second)
	t := time.NewTicker(tick)
	defer t.Stop()
	for {
		select {
		case <-done:
			return
		case <-ctx.Done():
			return
		case <-t.C:
			if idle := time.Since(a.run.LastActivity()); idle > a.opts.StallTimeout {
				log.Error().Dur("idle_ms", idle).Msg("integration stalled; cancelling it")
				a.cancel(errStalled)
				return
			}
		}
	}
}

func (a *integrationActor) stop() {
	if a.cancel == nil {
		return
	}
	a.cancel(context.Canceled)
	select {
	case <-a.done:
	case <-time.After(10 * time.Second):
		a.opts.Log.Error().Str("integration", a.spec.ID).Msg("integration did not stop within 10s of being cancelled; abandoning it")
	}
	a.cancel = nil
}
