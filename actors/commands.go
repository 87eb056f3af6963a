package actors

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/rs/zerolog"

	"courier/backend"
	"courier/integrations"
	"courier/logging"
	"courier/queue"
	"courier/sessions"
)

// Command types (PROTOCOL.md §1).
const (
	CommandExport   = "export"
	CommandValidate = "validate-config"
	CommandOnboard  = "export-onboard-data"
	CommandCancel   = "cancel"
)

// Result statuses of a command.
const (
	ResultSucceeded = "succeeded"
	ResultFailed    = "failed"
	ResultCancelled = "cancelled"
	ResultExpired   = "expired"
)

// Backend is what the service loop needs of the backend client.
type Backend interface {
	Commands(ctx context.Context, wait time.Duration) ([]backend.Command, error)
	Ack(ctx context.Context, id string) error
	Progress(ctx context.Context, id string, p backend.Progress) error
	Heartbeat(ctx context.Context, hb backend.Heartbeat) error
	Logs(ctx context.Context, commandID string, lines [][]byte) error
}

// ServiceOptions configure the backend-driven part of service-run.
type ServiceOptions struct {
	Backend  Backend
	Queue    *queue.Queue
	Exporter *Exporter
	Log      zerolog.Logger
	Version  string
	// CacheDir and IntegrationLogger are as for exports, for the commands
	// that run an integration directly (validate, onboarding).
	CacheDir          func(id string) string
	IntegrationLogger func(id string) (zerolog.Logger, io.Closer)
	// BaseDir is as ExportOptions.BaseDir.
	BaseDir string
	// PollWait is the long poll's wait (default 30 s); ProgressEvery (5 s)
	// and HeartbeatEvery (60 s) pace the reports.
	PollWait       time.Duration
	ProgressEvery  time.Duration
	HeartbeatEvery time.Duration
	// Ships is told which command a running export belongs to, so log
	// lines carrying that command id are shipped.
	Ships *LogShipper
}

// Service is the running command loop.
type Service struct {
	opts    ServiceOptions
	sys     *actor.ActorSystem
	router  *actor.PID
	workers []*actor.PID // poller first: it stops first
	journal Journal
	started time.Time
}

// StartService spawns, under the guardian, the command router, the
// poller, the heartbeat and the log shipper.
func StartService(sys *actor.ActorSystem, g *Guardian, opts ServiceOptions) (*Service, error) {
	if opts.PollWait <= 0 {
		opts.PollWait = 30 * time.Second
	}
	if opts.ProgressEvery <= 0 {
		opts.ProgressEvery = 5 * time.Second
	}
	if opts.HeartbeatEvery <= 0 {
		opts.HeartbeatEvery = time.Minute
	}
	if opts.CacheDir == nil {
		opts.CacheDir = func(string) string { return "" }
	}
	s := &Service{opts: opts, sys: sys, journal: Journal{Q: opts.Queue}, started: time.Now()}
	var err error
	s.router, err = g.Spawn(actor.PropsFromProducer(func() actor.Actor { return newRouter(s) }), "commands", Restart)
	if err != nil {
		return nil, err
	}
	workers := []struct {
		name string
		loop func(context.Context) error
	}{{"poller", s.poll}, {"heartbeat", s.heartbeat}}
	if opts.Ships != nil {
		workers = append(workers, struct {
			name string
			loop func(context.Context) error
		}{"logship", opts.Ships.run})
	}
	for _, w := range workers {
		pid, err := g.Spawn(workerProps(w.name, opts.Log, w.loop), w.name, Restart)
		if err != nil {
			return nil, err
		}
		s.workers = append(s.workers, pid)
	}
	return s, nil
}

// Stop ends the command loop for a shutdown (SIGTERM: an upgrade, a
// restart of the unit), within ctx: polling stops; waiting commands stay
// journaled; running ones are interrupted, store no result and stay
// journaled, so that the next start runs them (an export resumes from its
// tokens). Results already made are stored. Only a backend cancel or an
// expiry ends a command as cancelled or expired.
func (s *Service) Stop(ctx context.Context) {
	_ = s.sys.Root.StopFuture(s.workers[0]).Wait() // the poller: take no new commands
	r := &shutdownReq{reply: make(chan struct{}, 1)}
	s.sys.Root.Send(s.router, r)
	select {
	case <-r.reply:
	case <-ctx.Done():
		s.opts.Log.Warn().Msg("running commands did not end in time; they resume at the next start")
	}
	_ = s.sys.Root.StopFuture(s.router).Wait()
	for _, w := range s.workers[1:] {
		_ = s.sys.Root.StopFuture(w).Wait()
	}
}

// Running lists the commands being run now.
func (s *Service) Running(ctx context.Context) ([]string, error) {
	r := &runningReq{reply: make(chan []string, 1)}
	s.sys.Root.Send(s.router, r)
	select {
	case ids := <-r.reply:
		return ids, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// poll long-polls the backend. Each new command is journaled (durably)
// before it is acknowledged, then handed to the router; a command
// delivered again is acknowledged again and not run twice.
func (s *Service) poll(ctx context.Context) error {
	b := newBackoff(time.Second, 5*time.Minute)
	unauthorizedSince := time.Time{}
	for ctx.Err() == nil {
		cmds, err := s.opts.Backend.Commands(ctx, s.opts.PollWait)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			wait := b.NextBackOff()
			if backend.KindOf(err) == backend.Unauthorized {
				if unauthorizedSince.IsZero() {
					unauthorizedSince = time.Now()
					s.opts.Log.Error().Msg("the backend refused the API key (401): polling paused with backoff; nothing is dropped; re-enroll with `courier enroll`")
				}
			} else {
				s.opts.Log.Warn().Err(err).Dur("retry_in_ms", wait).Msg("polling the backend for commands failed")
			}
			var be *backend.Error
			if errors.As(err, &be) && be.RetryAfter > wait {
				wait = be.RetryAfter
			}
			if !sleepCtx(ctx, wait) {
				return nil
			}
			continue
		}
		if !unauthorizedSince.IsZero() {
			s.opts.Log.Info().Msg("the backend accepts the API key again; polling resumed")
			unauthorizedSince = time.Time{}
		}
		b.Reset()
		for _, c := range cmds {
			if err := s.accept(ctx, c); err != nil {
				if ctx.Err() != nil {
					return nil
				}
				s.opts.Log.Warn().Err(err).Str(logging.FieldCommand, c.ID).Msg("could not accept a command; the backend will deliver it again")
			}
		}
	}
	return nil
}

func (s *Service) accept(ctx context.Context, c backend.Command) error {
	if c.ID == "" {
		return errors.New("command without an id")
	}
	prev, known, err := s.journal.Get(c.ID)
	if err != nil {
		return err
	}
	if known && prev.State != journalDone {
		// Journaled but not finished (its resume may have failed): make
		// sure it runs; the router ignores it if it is running already.
		s.sys.Root.Send(s.router, &dispatchMsg{entry: prev})
	}
	if !known {
		e := JournalEntry{Command: c, State: journalAccepted, ReceivedAt: time.Now().UTC()}
		if err := s.journal.Put(ctx, e); err != nil {
			return fmt.Errorf("journal: %w", err)
		}
		s.sys.Root.Send(s.router, &dispatchMsg{entry: e})
	}
	if err := s.opts.Backend.Ack(ctx, c.ID); err != nil {
		return fmt.Errorf("ack: %w", err)
	}
	return nil
}

// heartbeat reports every HeartbeatEvery and, once a day, forgets journal
// entries finished more than a week ago (the scan of Unfinished does that),
// so that an agent that never restarts keeps a bounded journal.
func (s *Service) heartbeat(ctx context.Context) error {
	lastPrune := time.Now()
	for {
		if time.Since(lastPrune) > 24*time.Hour {
			lastPrune = time.Now()
			if _, err := s.journal.Unfinished(ctx); err != nil && ctx.Err() == nil {
				s.opts.Log.Warn().Err(err).Msg("pruning the command journal failed; trying again tomorrow")
			}
		}
		hctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		hb := backend.Heartbeat{Version: s.opts.Version, UptimeS: int64(time.Since(s.started).Seconds()), Running: []string{}}
		if ids, err := s.Running(hctx); err == nil {
			hb.Running = ids
		}
		if st, err := s.opts.Queue.Status(hctx); err == nil {
			hb.Queue = backend.QueueStats{PendingItems: st.Pending, PendingBytes: st.PendingBytes, FailedItems: st.Failed}
		}
		if err := s.opts.Backend.Heartbeat(hctx, hb); err != nil && ctx.Err() == nil && backend.KindOf(err) != backend.Unauthorized {
			s.opts.Log.Debug().Err(err).Msg("heartbeat failed")
		}
		cancel()
		if !sleepCtx(ctx, s.opts.HeartbeatEvery) {
			return nil
		}
	}
}

type (
	dispatchMsg struct{ entry JournalEntry }
	runningReq  struct{ reply chan []string }
	// The messages from a command's goroutines carry the *running they
	// belong to: after a restart of the router the same command may be
	// running again, and a late message of the old run must not act on it.
	jobStarted struct {
		id  string
		run *running
		job *Job
		err error
	}
	// cmdDone carries a finished command's result; the router stores it,
	// unless the command ended because the agent is stopping.
	cmdDone struct {
		id          string
		run         *running
		result      backend.Result
		interrupted bool
	}
	// resultStored says the result is durable and the journal updated.
	resultStored struct {
		id  string
		run *running
	}
	shutdownReq    struct{ reply chan struct{} }
	progressTick   struct{}
	progressPosted struct{ run *running }
)

// running is one command being run.
type running struct {
	entry        JournalEntry
	started      time.Time
	job          *Job
	cancel       context.CancelFunc
	interrupt    context.CancelFunc // a task's; an export's job has its own
	integration  []string           // integration ids an export holds
	cancelled    bool
	interrupted  bool
	finishing    bool
	lastProgress string
	// startWritten is closed once markStarted's journal write is done.
	startWritten chan struct{}
	posting      bool
}

// router runs commands: one at a time per integration, each exactly once,
// each ending with one result that goes through the durable queue.
type router struct {
	s       *Service
	log     zerolog.Logger
	running map[string]*running
	busy    map[string]string // integration id -> command id
	waiting []JournalEntry
	ctx     context.Context
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	// draining is set at shutdown: no new command starts, and the reply
	// goes out once every running one has its result persisted.
	draining *shutdownReq
}

// errInterrupted is the cause of a command stopped because the agent is
// stopping: it is not over, and runs again at the next start.
var errInterrupted = errors.New("interrupted: the agent is stopping; it resumes at the next start")

// shutdown ends no command for good: the journal keeps waiting and running
// commands for the next start, as it does through a kill -9. Running ones
// are interrupted so that the stop is prompt; a result already made (or
// being stored) is stored.
func (r *router) shutdown(_ actor.Context, m *shutdownReq) {
	r.draining = m
	if n := len(r.waiting); n > 0 {
		r.log.Info().Int("commands", n).Msg("waiting commands stay journaled; they start at the next start")
	}
	r.waiting = nil
	for _, run := range r.running {
		if !run.finishing {
			r.interruptRun(run)
		}
	}
	r.drained()
}

func (r *router) interruptRun(run *running) {
	run.interrupted = true
	if run.job != nil {
		run.job.cancel(errInterrupted)
	}
	if run.interrupt != nil {
		run.interrupt()
	}
}

func (r *router) drained() {
	if r.draining != nil && len(r.running) == 0 {
		r.draining.reply <- struct{}{}
		r.draining = nil
	}
}

func newRouter(s *Service) *router {
	ctx, cancel := context.WithCancel(context.Background())
	return &router{s: s, log: s.opts.Log.With().Str(logging.FieldComponent, "commands").Logger(),
		running: map[string]*running{}, busy: map[string]string{}, ctx: ctx, cancel: cancel}
}

func (r *router) Receive(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case *actor.Started:
		r.resume(ctx)
		self, sys := ctx.Self(), ctx.ActorSystem()
		r.goFn(func() {
			t := time.NewTicker(r.s.opts.ProgressEvery)
			defer t.Stop()
			for {
				select {
				case <-r.ctx.Done():
					return
				case <-t.C:
					sys.Root.Send(self, &progressTick{})
				}
			}
		})
	case *dispatchMsg:
		r.dispatch(ctx, m.entry)
	case *jobStarted:
		if r.current(m.id, m.run) {
			r.onJobStarted(m)
		}
	case *cmdDone:
		if !r.current(m.id, m.run) {
			return
		}
		if m.interrupted && !m.run.cancelled {
			r.log.Info().Str(logging.FieldCommand, m.id).Msg("command interrupted by the stop; it stays journaled and runs again at the next start")
			r.ended(ctx, m.id)
			return
		}
		r.finish(m.id, m.result)
	case *resultStored:
		if r.current(m.id, m.run) {
			r.ended(ctx, m.id)
		}
	case *shutdownReq:
		r.shutdown(ctx, m)
	case *runningReq:
		ids := make([]string, 0, len(r.running))
		for id := range r.running {
			ids = append(ids, id)
		}
		m.reply <- ids
	case *progressTick:
		r.reportProgress()
	case *progressPosted:
		m.run.posting = false
	case *actor.Stopping, *actor.Restarting:
		r.stop()
	}
}

// current reports whether run is the live run of command id.
func (r *router) current(id string, run *running) bool { return run != nil && r.running[id] == run }

// goFn runs fn in a goroutine that the router waits for when it stops.
func (r *router) goFn(fn func()) {
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		fn()
	}()
}

// stop interrupts what runs and waits for it: running commands are
// resumed from the journal by the next instance (after a restart) or at
// the next start.
func (r *router) stop() {
	for _, run := range r.running {
		r.interruptRun(run)
	}
	// Service.Stop drained the results first; what is left ends now.
	r.cancel()
	done := make(chan struct{})
	go func() { r.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(15 * time.Second):
		r.log.Error().Msg("commands did not finish within 15s of shutdown; they resume at the next start")
	}
}

// resume re-runs what the journal has accepted but not finished: a
// command interrupted by a crash ends with one result after the restart.
func (r *router) resume(ctx actor.Context) {
	qctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	entries, err := r.s.journal.Unfinished(qctx)
	if err != nil {
		r.log.Error().Err(err).Msg("cannot read the command journal; unfinished commands are not resumed")
		return
	}
	for _, e := range entries {
		r.log.Info().Str(logging.FieldCommand, e.Command.ID).Str("type", e.Command.Type).Msg("resuming a command interrupted by a restart")
		r.dispatch(ctx, e)
	}
}

func (r *router) dispatch(ctx actor.Context, e JournalEntry) {
	c := e.Command
	if _, ok := r.running[c.ID]; ok || r.draining != nil {
		return // running, or shutting down: the journal keeps it for the next start
	}
	if cur, ok, err := r.s.journal.Get(c.ID); err == nil && ok && cur.State == journalDone {
		return // a late dispatch of a command that has its result already
	}
	log := r.log.With().Str(logging.FieldCommand, c.ID).Str("type", c.Type).Logger()
	if e.StartedAt.IsZero() && c.ExpiresAt != nil && time.Now().After(*c.ExpiresAt) {
		log.Warn().Time("expired_at", *c.ExpiresAt).Msg("command expired before it started; not running it")
		r.track(e, nil)
		r.finish(c.ID, backend.Result{Status: ResultExpired, Error: fmt.Sprintf("expired at %s before it started", c.ExpiresAt.UTC().Format(time.RFC3339))})
		return
	}
	switch c.Type {
	case CommandExport:
		r.startExport(ctx, e, log)
	case CommandValidate:
		r.startTask(ctx, e, r.validate)
	case CommandOnboard:
		r.startTask(ctx, e, r.onboard)
	case CommandCancel:
		r.track(e, nil)
		r.finish(c.ID, r.cancelCmd(c))
	default:
		r.track(e, nil)
		r.finish(c.ID, backend.Result{Status: ResultFailed, Error: fmt.Sprintf("unknown command type %q (this agent runs export, validate-config, export-onboard-data and cancel)", c.Type)})
	}
}

func (r *router) track(e JournalEntry, cancel context.CancelFunc) *running {
	run := &running{entry: e, started: time.Now(), cancel: cancel}
	r.running[e.Command.ID] = run
	return run
}

func failedParams(err error) backend.Result {
	return backend.Result{Status: ResultFailed, Error: "params: " + err.Error()}
}

// exportParams are the params of an export command.
type exportParams struct {
	Integrations        []integrationParam `json:"integrations"`
	ReprocessHistorical bool               `json:"reprocess_historical"`
}

type integrationParam struct {
	ID     string          `json:"id"`
	Type   string          `json:"type"`
	Name   string          `json:"name"`
	Config json.RawMessage `json:"config"`
}

func (p integrationParam) spec() (IntegrationSpec, error) {
	if p.ID == "" {
		return IntegrationSpec{}, errors.New("id is missing")
	}
	cfg, err := integrations.DecodeConfig(p.Type, p.Config)
	if err != nil {
		return IntegrationSpec{}, err
	}
	return IntegrationSpec{ID: p.ID, Type: p.Type, Config: cfg}, nil
}

// misspeltParams names the keys of params that stand for a known one
// written otherwise ("object-type", "objectType" for "object_type"). The
// protocol ignores unknown keys, so a misspelt key reads as a missing one;
// saying which key was meant is the useful part of the error.
func misspeltParams(raw json.RawMessage, known ...string) string {
	var m map[string]json.RawMessage
	if json.Unmarshal(raw, &m) != nil {
		return ""
	}
	norm := func(k string) string {
		return strings.ToLower(strings.NewReplacer("-", "", "_", "").Replace(k))
	}
	var hints []string
	for k := range m {
		if slices.Contains(known, k) {
			continue
		}
		for _, want := range known {
			if norm(k) == norm(want) {
				hints = append(hints, fmt.Sprintf("the params have %q: the key is %q", k, want))
			}
		}
	}
	slices.Sort(hints)
	if len(hints) == 0 {
		return ""
	}
	return " (" + strings.Join(hints, "; ") + ")"
}

func decodeParams(raw json.RawMessage, v any) error {
	if len(raw) == 0 {
		return errors.New("missing")
	}
	return json.Unmarshal(raw, v)
}

func (r *router) startExport(ctx actor.Context, e JournalEntry, log zerolog.Logger) {
	c := e.Command
	var p exportParams
	if err := decodeParams(c.Params, &p); err != nil {
		r.track(e, nil)
		r.finish(c.ID, failedParams(err))
		return
	}
	if len(p.Integrations) == 0 {
		r.track(e, nil)
		r.finish(c.ID, failedParams(errors.New("no integrations")))
		return
	}
	spec := ExportSpec{ID: c.ID, CommandID: c.ID, Reprocess: p.ReprocessHistorical}
	for i, ip := range p.Integrations {
		is, err := ip.spec()
		if err != nil {
			r.track(e, nil)
			r.finish(c.ID, failedParams(fmt.Errorf("integrations[%d]: %w", i, err)))
			return
		}
		spec.Integrations = append(spec.Integrations, is)
	}
	// One export per integration at a time: a second one waits.
	for _, is := range spec.Integrations {
		if other, busy := r.busy[is.ID]; busy && other != c.ID {
			for _, w := range r.waiting {
				if w.Command.ID == c.ID {
					return
				}
			}
			log.Info().Str("integration", is.ID).Str("waiting_for", other).Msg("integration is exporting for another command; this one waits")
			r.waiting = append(r.waiting, e)
			return
		}
	}
	run := r.track(e, nil)
	for _, is := range spec.Integrations {
		r.busy[is.ID] = c.ID
		run.integration = append(run.integration, is.ID)
	}
	r.markStarted(run)
	if r.s.opts.Ships != nil {
		r.s.opts.Ships.Track(c.ID)
	}
	self, sys := ctx.Self(), ctx.ActorSystem()
	r.goFn(func() {
		job, err := r.s.opts.Exporter.Start(r.ctx, spec)
		sys.Root.Send(self, &jobStarted{id: c.ID, run: run, job: job, err: err})
		if err != nil {
			return
		}
		res, _ := job.Wait(context.Background())
		sys.Root.Send(self, &cmdDone{id: c.ID, run: run, result: exportResult(res, job),
			interrupted: errors.Is(context.Cause(job.ctx), errInterrupted)})
	})
}

func exportResult(res ExportResult, job *Job) backend.Result {
	out, _ := json.Marshal(res)
	r := backend.Result{Status: ResultSucceeded, Output: out}
	var failed, cancelled []string
	for _, i := range res.Integrations {
		switch i.Status {
		case StatusFailed:
			failed = append(failed, i.ID)
		case StatusCancelled:
			cancelled = append(cancelled, i.ID)
		}
	}
	switch {
	case len(failed) > 0:
		r.Status, r.Error = ResultFailed, fmt.Sprintf("%d of %d integrations failed: %s", len(failed), len(res.Integrations), strings.Join(failed, ", "))
	case len(cancelled) > 0 || errors.Is(context.Cause(job.ctx), errCancelled):
		r.Status, r.Error = ResultCancelled, "cancelled"
	}
	return r
}

func (r *router) onJobStarted(m *jobStarted) {
	run := r.running[m.id]
	if run == nil {
		return
	}
	if m.err != nil {
		r.s.sys.Root.Send(r.selfPID(), &cmdDone{id: m.id, run: run, result: backend.Result{Status: ResultFailed, Error: m.err.Error()}})
		return
	}
	run.job = m.job
	switch {
	case run.cancelled:
		m.job.Cancel()
	case run.interrupted:
		m.job.cancel(errInterrupted)
	}
}

func (r *router) selfPID() *actor.PID { return r.s.router }

// task is a command that runs an integration directly and returns its
// output.
type task func(ctx context.Context, c backend.Command) (any, error)

func (r *router) startTask(ctx actor.Context, e JournalEntry, fn task) {
	tctx, cancel := context.WithCancelCause(r.ctx)
	run := r.track(e, func() { cancel(errCancelled) })
	run.interrupt = func() { cancel(errInterrupted) }
	r.markStarted(run)
	self, sys := ctx.Self(), ctx.ActorSystem()
	c := e.Command
	r.goFn(func() {
		defer cancel(nil)
		var out any
		err := integrations.Safe(func() error {
			var err error
			out, err = fn(tctx, c)
			return err
		})
		res := backend.Result{Status: ResultSucceeded}
		switch {
		case tctx.Err() != nil && err != nil:
			res = backend.Result{Status: ResultCancelled, Error: "cancelled"}
		case err != nil:
			res = backend.Result{Status: ResultFailed, Error: err.Error()}
			var p *integrations.PanicError
			if errors.As(err, &p) {
				r.log.Error().Str(logging.FieldCommand, c.ID).Str("stack", string(p.Stack)).Msg("command panicked")
			}
		default:
			res.Output, _ = json.Marshal(out)
		}
		interrupted := err != nil && errors.Is(context.Cause(tctx), errInterrupted)
		sys.Root.Send(self, &cmdDone{id: c.ID, run: run, result: res, interrupted: interrupted})
	})
}

// markStarted records in the journal that the command started, so that
// expiry is judged on the first start only.
func (r *router) markStarted(run *running) {
	e := run.entry
	if !e.StartedAt.IsZero() {
		return
	}
	e.StartedAt = time.Now().UTC()
	// finish waits for this write: otherwise it could land after the
	// "done" entry and put the command back to accepted.
	written := make(chan struct{})
	run.startWritten = written
	r.goFn(func() {
		defer close(written)
		ctx, cancel := context.WithTimeout(r.ctx, 30*time.Second)
		defer cancel()
		cur, ok, err := r.s.journal.Get(e.Command.ID)
		if err != nil || !ok || cur.State == journalDone {
			return
		}
		cur.StartedAt = e.StartedAt
		if err := r.s.journal.Put(ctx, cur); err != nil && r.ctx.Err() == nil {
			r.log.Warn().Err(err).Str(logging.FieldCommand, e.Command.ID).Msg("could not record the command's start")
		}
	})
}

func (r *router) instance(c backend.Command, is IntegrationSpec) (integrations.Integration, io.Closer, error) {
	reg, err := integrations.Lookup(is.Type)
	if err != nil {
		return nil, nil, err
	}
	log := r.s.opts.Log.With().Str("integration", is.ID).Logger()
	var closer io.Closer = io.NopCloser(nil)
	if r.s.opts.IntegrationLogger != nil {
		log, closer = r.s.opts.IntegrationLogger(is.ID)
	}
	log = log.With().Str(logging.FieldCommand, c.ID).Logger()
	inst, err := reg.New(integrations.Options{ID: is.ID, Logger: log, CacheDir: r.s.opts.CacheDir(is.ID), BaseDir: r.s.opts.BaseDir}, is.Config)
	if err != nil {
		_ = closer.Close()
		return nil, nil, err
	}
	return inst, closer, nil
}

func (r *router) validate(ctx context.Context, c backend.Command) (any, error) {
	var p struct {
		Integration integrationParam `json:"integration"`
	}
	if err := decodeParams(c.Params, &p); err != nil {
		return nil, fmt.Errorf("params: %w", err)
	}
	is, err := p.Integration.spec()
	if err != nil {
		// A config that does not decode is an answer, not a failure: the
		// backend asked whether it is valid.
		return integrations.Validation{Valid: false, Errors: []string{err.Error()}}, nil
	}
	inst, closer, err := r.instance(c, is)
	if err != nil {
		return nil, err
	}
	defer closer.Close()
	return inst.Validate(ctx), nil
}

// OnboardKey is the routing key of a command's onboarding objects.
func OnboardKey(commandID string) string { return "onboard/" + commandID }

func (r *router) onboard(ctx context.Context, c backend.Command) (any, error) {
	var p struct {
		Integration integrationParam `json:"integration"`
		ObjectType  string           `json:"object_type"`
	}
	if err := decodeParams(c.Params, &p); err != nil {
		return nil, fmt.Errorf("params: %w", err)
	}
	switch p.ObjectType {
	case integrations.ObjectUsers, integrations.ObjectRepos, integrations.ObjectProjects:
	default:
		return nil, fmt.Errorf("params: object_type %q: want users, repos or projects%s", p.ObjectType, misspeltParams(c.Params, "integration", "object_type"))
	}
	is, err := p.Integration.spec()
	if err != nil {
		return nil, fmt.Errorf("params: integration: %w", err)
	}
	inst, closer, err := r.instance(c, is)
	if err != nil {
		return nil, err
	}
	defer closer.Close()
	key := OnboardKey(c.ID)
	var batch [][]byte
	count := 0
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		err := r.s.opts.Queue.Enqueue(ctx, key, batch, queue.Wait)
		batch = batch[:0]
		return err
	}
	err = inst.Onboard(ctx, p.ObjectType, func(o integrations.Object) error {
		data, err := json.Marshal(o)
		if err != nil {
			return err
		}
		env, err := json.Marshal(sessions.Envelope{Command: c.ID, Integration: p.Integration.ID, Model: p.ObjectType,
			ID: o.ID, Session: []string{p.Integration.ID, p.ObjectType}, Data: data})
		if err != nil {
			return err
		}
		batch = append(batch, env)
		count++
		if len(batch) == 500 {
			return flush()
		}
		return nil
	})
	if err == nil {
		err = flush()
	}
	if err != nil {
		return nil, err
	}
	return map[string]any{"object_type": p.ObjectType, "count": count}, nil
}

func (r *router) cancelCmd(c backend.Command) backend.Result {
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
			r.track(w, nil)
			r.finish(w.Command.ID, backend.Result{Status: ResultCancelled, Error: "cancelled before it started (by " + c.ID + ")"})
			return backend.Result{Status: ResultSucceeded, Output: out}
		}
	}
	run := r.running[p.CommandID]
	if run == nil || run.finishing {
		return backend.Result{Status: ResultFailed, Error: fmt.Sprintf("command %s is not running", p.CommandID)}
	}
	run.cancelled = true
	if run.job != nil {
		run.job.Cancel()
	}
	if run.cancel != nil {
		run.cancel()
	}
	return backend.Result{Status: ResultSucceeded, Output: out}
}

// finish stores a result through the queue (routing key "results") and
// marks the journal entry done in the same batch: a crash leaves both or
// neither (then the command runs again at the next start). Only then is
// the command forgotten.
func (r *router) finish(id string, res backend.Result) {
	run := r.running[id]
	if run == nil || run.finishing {
		return
	}
	run.finishing = true
	if run.cancelled && res.Status == ResultSucceeded && run.job == nil {
		res = backend.Result{Status: ResultCancelled, Error: "cancelled"}
	}
	if res.StartedAt.IsZero() {
		res.StartedAt = run.started.UTC()
	}
	res.FinishedAt = time.Now().UTC()
	ev := r.log.Info()
	if res.Status != ResultSucceeded {
		ev = r.log.Warn().Str("error", res.Error)
	}
	ev.Str(logging.FieldCommand, id).Str("status", res.Status).Msg("command finished")
	entry := run.entry
	entry.State, entry.FinishedAt, entry.Status = journalDone, res.FinishedAt, res.Status
	if entry.StartedAt.IsZero() {
		entry.StartedAt = res.StartedAt
	}
	self := r.selfPID()
	written := run.startWritten
	r.goFn(func() {
		// markStarted's write must land first: after the "done" it would
		// put the command back to accepted.
		if written != nil {
			<-written
		}
		payload, err := backend.EncodeResult(id, res)
		if err == nil {
			bo := newBackoff(time.Second, time.Minute)
			for {
				// Not r.ctx: a result made while the router stops must
				// still be stored.
				ectx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				err = r.s.journal.Finish(ectx, entry, payload)
				cancel()
				if err == nil || r.ctx.Err() != nil {
					break
				}
				r.log.Error().Err(err).Str(logging.FieldCommand, id).Msg("cannot store the command's result; retrying")
				if !sleepCtx(r.ctx, bo.NextBackOff()) {
					break
				}
			}
		}
		if err != nil {
			return // the journal still says accepted: the command runs again at the next start
		}
		r.s.sys.Root.Send(self, &resultStored{id: id, run: run})
	})
}

// ended forgets a command that has its result stored or was interrupted,
// and starts what waited for its integrations.
func (r *router) ended(ctx actor.Context, id string) {
	run := r.running[id]
	if run == nil {
		return
	}
	delete(r.running, id)
	for _, i := range run.integration {
		if r.busy[i] == id {
			delete(r.busy, i)
		}
	}
	if r.s.opts.Ships != nil {
		r.s.opts.Ships.Untrack(id)
	}
	if r.draining != nil {
		r.drained()
		return
	}
	// Exports that waited for these integrations may start now.
	waiting := r.waiting
	r.waiting = nil
	for _, w := range waiting {
		r.dispatch(ctx, w)
	}
}

// reportProgress posts each running export's session tree when it changed
// since the last post; best effort, never queued (only the latest matters).
func (r *router) reportProgress() {
	for id, run := range r.running {
		if run.job == nil || run.posting || run.finishing {
			continue
		}
		var p backend.Progress
		for _, ip := range run.job.Progress() {
			for _, n := range ip.Nodes {
				p.Sessions = append(p.Sessions, backend.ProgressSession{Path: n.Path, Kind: string(n.Kind), Current: n.Current, Total: n.Total, State: string(n.State)})
			}
		}
		if p.Sessions == nil {
			continue
		}
		b, _ := json.Marshal(p)
		if string(b) == run.lastProgress {
			continue
		}
		run.lastProgress = string(b)
		run.posting = true
		id, run := id, run
		r.goFn(func() {
			ctx, cancel := context.WithTimeout(r.ctx, 10*time.Second)
			defer cancel()
			if err := r.s.opts.Backend.Progress(ctx, id, p); err != nil && r.ctx.Err() == nil {
				r.log.Debug().Err(err).Str(logging.FieldCommand, id).Msg("progress report failed")
			}
			r.s.sys.Root.Send(r.selfPID(), &progressPosted{run: run})
		})
	}
}
