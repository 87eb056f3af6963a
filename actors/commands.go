package actors

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/rs/zerolog"

	"courier/backend"
	"courier/integrations"
	"courier/logging"
	"courier/queue"
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

func failedParams(err error) backend.Result {
	return backend.Result{Status: ResultFailed, Error: "params: " + err.Error()}
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
