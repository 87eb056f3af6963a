package cli

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	ucli "github.com/urfave/cli/v2"

	"courier/actors"
	"courier/config"
	"courier/events"
	"courier/queue"
)

// shutdownTimeout bounds a graceful stop; everything acknowledged is synced
// already, so running out of it loses nothing.
const shutdownTimeout = 10 * time.Second

func serviceRunCommand() *ucli.Command {
	return &ucli.Command{
		Name:  "service-run",
		Usage: "run the agent in the foreground: local API, durable queue, delivery",
		Flags: []ucli.Flag{
			&ucli.StringFlag{Name: "listen", Usage: "local API address (overrides listen in config.yaml)", EnvVars: []string{"COURIER_LISTEN"}},
			&ucli.StringFlag{Name: "events-url", Usage: "PagerDuty Events API v2 URL (overrides events.url)", EnvVars: []string{"COURIER_EVENTS_URL"}},
		},
		Action: func(c *ucli.Context) error {
			e, err := setup(c, "service-run", true)
			if err != nil {
				return err
			}
			defer e.close()
			cfg, err := e.loadConfig()
			if err != nil {
				return err
			}
			if err := (config.Overrides{Listen: c.String("listen"), EventsURL: c.String("events-url")}).Apply(cfg); err != nil {
				return err
			}
			ctx, stop := notifyShutdown(c.Context, e)
			defer stop()
			return runService(ctx, e, cfg)
		},
	}
}

// notifyShutdown cancels ctx on the first SIGTERM or SIGINT. A second one
// exits at once: what was acknowledged is already on disk.
func notifyShutdown(parent context.Context, e *env) (context.Context, func()) {
	ctx, cancel := context.WithCancel(parent)
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	done := make(chan struct{})
	go func() {
		select {
		case s := <-sigs:
			e.log.Info().Str("signal", s.String()).Msg("shutting down; a second signal exits at once")
			cancel()
		case <-done:
			return
		}
		select {
		case s := <-sigs:
			e.log.Warn().Str("signal", s.String()).Msg("second signal: exiting now")
			os.Exit(ExitFailure)
		case <-done:
		}
	}()
	return ctx, func() {
		signal.Stop(sigs)
		close(done)
		cancel()
	}
}

func runService(ctx context.Context, e *env, cfg *config.Config) error {
	if cfg.Events.Upstream != config.UpstreamPagerDuty {
		return withCode(ExitConfig, fmt.Errorf("events.upstream %q needs an enrolled backend, which this build cannot talk to yet; use %q",
			cfg.Events.Upstream, config.UpstreamPagerDuty))
	}
	if err := e.layout.EnsureDirs(); err != nil {
		return err
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	fatal := make(chan string, 1)
	sys := actors.NewSystem(e.log)
	defer sys.Shutdown()
	guardian, err := actors.NewGuardian(sys, actors.GuardianOptions{
		Log: e.log,
		OnFatal: func(child string, reason any) {
			select {
			case fatal <- fmt.Sprintf("%s failed: %v", child, reason):
			default:
			}
		},
	})
	if err != nil {
		return err
	}
	defer func() { _ = guardian.Stop() }()

	sink := events.NewPagerDutySink(events.PagerDutyOptions{
		URL: cfg.Events.URL, V1URL: cfg.Events.V1URL, UserAgent: "courier/" + Version, Logger: e.log,
	})
	q, err := queue.Open(sys, queue.Options{
		Dir:    e.layout.DB(),
		Logger: e.log,
		Quota: queue.Quota{
			MaxBytes: cfg.Queue.MaxPendingBytes, MaxItems: cfg.Queue.MaxPendingItems,
			MaxKeyBytes: cfg.Queue.MaxKeyBytes, MaxKeyItems: cfg.Queue.MaxKeyItems,
		},
		Router:        router(sink),
		BatchMaxItems: cfg.Queue.BatchMaxItems,
		BatchMaxBytes: cfg.Queue.BatchMaxBytes,
		Linger:        cfg.Queue.Linger.Duration(),
		IdleTimeout:   cfg.Queue.IdleTimeout.Duration(),
		Registerer:    reg,
		Spawn: func(p *actor.Props, name string) (*actor.PID, error) {
			return guardian.Spawn(p, name, actors.Fatal)
		},
		KeyLabel: keyLabel,
	})
	if err != nil {
		return err
	}
	closeQueue := func() {
		cctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
		defer cancel()
		if err := q.Close(cctx); err != nil {
			e.log.Error().Err(err).Msg("closing the queue")
		}
	}

	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		closeQueue()
		return fmt.Errorf("local API: cannot listen on %s: %w (another service-run, or set listen in config.yaml / --listen)", cfg.Listen, err)
	}
	token := ""
	if !config.IsLoopback(cfg.Listen) {
		token = cfg.LocalToken.Reveal()
	}
	api := events.NewAPI(events.APIOptions{
		Queue:      q,
		Token:      token,
		RetryAfter: cfg.Queue.RetryAfter.Duration(),
		Ready:      func() error { return q.Ready(context.Background()) },
		Metrics:    promhttp.HandlerFor(reg, promhttp.HandlerOpts{}),
		Registerer: reg,
		Logger:     e.log,
	})
	srv := &http.Server{Handler: api, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: time.Minute, IdleTimeout: 2 * time.Minute}
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(ln) }()

	addr := ln.Addr().String()
	if err := writeRunInfo(e.layout, runInfo{PID: os.Getpid(), Listen: addr, StartedAt: time.Now().UTC(), Version: Version}); err != nil {
		e.log.Error().Err(err).Msg("cannot write run/service.json; send, status and retry will not find this service")
	}
	e.log.Info().Str("listen", addr).Str("root", e.layout.Root).Str("version", Version).Msg("service-run ready")

	var runErr error
	select {
	case <-ctx.Done():
	case err := <-serveErr:
		runErr = fmt.Errorf("local API stopped: %w", err)
	case why := <-fatal:
		runErr = errors.New(why)
	}

	// Stop intake first; Shutdown answers every request already accepted
	// (their events are durable or refused), then the queue flushes and
	// Pebble closes.
	_ = os.Remove(runFile(e.layout))
	sctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		e.log.Warn().Err(err).Msg("local API did not drain in time")
	}
	closeQueue()
	e.log.Info().Msg("service-run stopped")
	return runErr
}

// router sends events/<routing key> to PagerDuty, one event per request.
// Other keys (exports, results) get their sinks in later layers.
func router(pagerduty queue.Sink) queue.Router {
	return func(key string) queue.Route {
		if strings.HasPrefix(key, "events/") {
			return queue.Route{Sink: pagerduty, MaxItems: events.PagerDutyBatchItems}
		}
		return queue.Route{}
	}
}

// keyLabel keeps PagerDuty routing keys, which are credentials, out of logs
// and metrics.
func keyLabel(key string) string {
	if rk, ok := strings.CutPrefix(key, "events/"); ok {
		return "events/" + events.RedactKey(rk)
	}
	return key
}
