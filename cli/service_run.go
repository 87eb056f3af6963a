package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	ucli "github.com/urfave/cli/v2"

	"courier/actors"
	"courier/backend"
	"courier/config"
	"courier/events"
	"courier/internal/redact"
	"courier/queue"
	"courier/service"
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
			ship := &lazyWriter{}
			e, err := setupWith(c, "service-run", true, ship)
			if err != nil {
				return err
			}
			cfg, err := e.loadConfig()
			if err != nil {
				return err
			}
			if err := (config.Overrides{Listen: c.String("listen"), EventsURL: c.String("events-url")}).Apply(cfg); err != nil {
				return err
			}
			ctx, stop := notifyShutdown(c.Context, e)
			defer stop()
			return runService(ctx, e, cfg, ship)
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

func runService(ctx context.Context, e *env, cfg *config.Config, ship *lazyWriter) error {
	if cfg.Events.Upstream == config.UpstreamBackend && !cfg.Backend.Enrolled() {
		return withCode(ExitConfig, fmt.Errorf("events.upstream is %q but the agent is not enrolled: run `courier enroll` or set events.upstream to %q",
			config.UpstreamBackend, config.UpstreamPagerDuty))
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	// events.url points elsewhere (a proxy, a test server) while v1_url or
	// change_url kept init's default: let the sink derive them from
	// events.url, so that v1 and change events follow v2 events instead of
	// leaking to PagerDuty.
	v1URL, changeURL := cfg.Events.V1URL, cfg.Events.ChangeURL
	if cfg.Events.URL != events.DefaultURL {
		if v1URL == events.DefaultV1URL {
			v1URL = ""
		}
		if changeURL == events.DefaultChangeURL {
			changeURL = ""
		}
	}
	pd, err := events.NewPagerDutySink(events.PagerDutyOptions{
		URL: cfg.Events.URL, V1URL: v1URL, ChangeURL: changeURL, CAFile: cfg.Events.CAFile,
		RatePerMinute: cfg.Events.RatePerKey, BurstPerKey: cfg.Events.BurstPerKey,
		UserAgent: "courier/" + Version, Logger: e.log, MaxConnections: cfg.Events.MaxConnections,
	})
	if err != nil {
		return withCode(ExitConfig, err)
	}
	routes := routes{pagerduty: pd, exports: queue.DirSink{Dir: e.layout.Exports()}, eventsToBackend: cfg.Events.Upstream == config.UpstreamBackend}
	var client *backend.Client
	if cfg.Backend.Enrolled() {
		client, err = backend.New(backend.Options{
			URL: cfg.Backend.URL, APIKey: cfg.Backend.APIKey.Reveal(), CAFile: cfg.Backend.CAFile,
			UserAgent: "courier/" + Version, Logger: e.log, MaxConnections: cfg.Backend.MaxConnections,
		})
		if err != nil {
			return withCode(ExitConfig, fmt.Errorf("backend: %w", err))
		}
		defer client.CloseIdleConnections()
		routes.backend = client.Sink()
	}
	c, err := openCore(e, cfg, routes.route, reg)
	if err != nil {
		return err
	}
	q := c.q
	var svc *actors.Service
	if client != nil {
		exp, err := c.exporter(cfg)
		if err != nil {
			c.close()
			return err
		}
		shipper := actors.NewLogShipper(client, e.log)
		ship.set(shipper)
		svc, err = actors.StartService(c.sys, c.guardian, actors.ServiceOptions{
			Backend: client, Queue: q, Exporter: exp, Log: e.log, Version: Version,
			CacheDir:          func(id string) string { return filepath.Join(e.layout.Cache(), config.SafeName(id)) },
			IntegrationLogger: e.integrationLogger,
			BaseDir:           e.baseDir(),
			Ships:             shipper,
		})
		if err != nil {
			c.close()
			return err
		}
		e.log.Info().Str("backend", cfg.Backend.URL).Str("agent_id", cfg.Backend.AgentID).Msg("enrolled: taking commands from the backend")
	}
	fatal := c.fatal

	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		c.close()
		return fmt.Errorf("local API: cannot listen on %s: %w (another service-run, or set listen in config.yaml / --listen)", cfg.Listen, err)
	}
	// The token is required unless the socket is bound to loopback: judged
	// on the bound address, since "localhost" means what it resolved to.
	token := ""
	if !config.AddrIsLoopback(ln.Addr()) {
		token = cfg.LocalToken.Reveal()
		if token == "" {
			_ = ln.Close()
			c.close()
			return withCode(ExitConfig, fmt.Errorf("local API: listen %s is bound to %s, which is not loopback, and local_token is empty: set local_token in config.yaml", cfg.Listen, ln.Addr()))
		}
	}
	api := events.NewAPI(events.APIOptions{
		Queue:          q,
		Token:          token,
		LocalToken:     cfg.LocalToken.Reveal(),
		ListenHosts:    listenHosts(cfg),
		AllowedOrigins: cfg.AllowedOrigins,
		RetryAfter:     cfg.Queue.RetryAfter.Duration(),
		Ready:          func() error { return q.Ready(context.Background()) },
		Metrics:        promhttp.HandlerFor(reg, promhttp.HandlerOpts{}),
		Registerer:     reg,
		Logger:         e.log,
		StampTimestamp: cfg.Events.StampTimestamp,
	})
	srv := &http.Server{Handler: api, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: time.Minute, IdleTimeout: 2 * time.Minute}
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(ln) }()

	addr := ln.Addr().String()
	if err := writeRunInfo(e.layout, runInfo{PID: os.Getpid(), Listen: addr, StartedAt: time.Now().UTC(), Version: Version}); err != nil {
		e.log.Error().Err(err).Msg("cannot write run/service.json; send, status and retry will not find this service")
	}
	e.log.Info().Str("listen", addr).Str("root", e.layout.Root).Str("version", Version).Msg("service-run ready")

	// systemd: ready once local start-up is done (not waiting for the
	// backend, whose outages show in /readyz and metrics, never as a
	// restart); the watchdog is fed only while the queue actor answers and
	// the store takes a synced write.
	notifier := service.NewNotifier()
	if err := notifier.Ready(); err != nil {
		e.log.Warn().Err(err).Msg("sd_notify READY failed")
	}
	wdCtx, stopWatchdog := context.WithCancel(context.Background())
	wdDone := make(chan struct{})
	go func() {
		defer close(wdDone)
		service.RunWatchdog(wdCtx, notifier, func() error { return healthy(q) }, e.log)
	}()

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
	_ = notifier.Stopping()
	stopWatchdog()
	<-wdDone
	_ = os.Remove(runFile(e.layout))
	sctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		e.log.Warn().Err(err).Msg("local API did not drain in time")
	}
	if svc != nil {
		// Its own deadline: the local API's drain must not eat the time
		// running commands need to end and store their results.
		stopCtx, cancelStop := context.WithTimeout(context.Background(), shutdownTimeout)
		svc.Stop(stopCtx)
		cancelStop()
	}
	c.close()
	e.log.Info().Msg("service-run stopped")
	return runErr
}

// healthy is the watchdog's check: local state only, bounded in time. A
// full disk is not unhealthy: a restart would not free space, the queue
// refuses new data and goes on delivering, and /readyz says why.
func healthy(q *queue.Queue) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := q.Alive(ctx); err != nil {
		return err
	}
	return q.Put(ctx, "health", "watchdog", []byte(time.Now().UTC().Format(time.RFC3339)))
}

// routes picks each routing key's sink. Events go to PagerDuty one per
// request, or to the backend in upload batches; exports, onboarding objects
// and results go to the backend when enrolled, and export records to the
// local sink otherwise.
type routes struct {
	pagerduty       queue.Sink
	backend         queue.Sink // nil when not enrolled
	exports         queue.Sink
	eventsToBackend bool
}

func (r routes) route(key string) queue.Route {
	switch {
	case strings.HasPrefix(key, "events/"):
		if r.eventsToBackend {
			return queue.Route{Sink: r.backend}
		}
		return queue.Route{Sink: r.pagerduty, MaxItems: events.PagerDutyBatchItems}
	case r.backend != nil && (strings.HasPrefix(key, "export/") || strings.HasPrefix(key, "onboard/") || key == backend.ResultsKey):
		return queue.Route{Sink: r.backend}
	case strings.HasPrefix(key, "export/"):
		return queue.Route{Sink: r.exports}
	}
	return queue.Route{}
}

// lazyWriter drops what it is given until it is set: the logger exists
// before the log shipper does.
type lazyWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lazyWriter) set(w io.Writer) {
	l.mu.Lock()
	l.w = w
	l.mu.Unlock()
}

func (l *lazyWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	w := l.w
	l.mu.Unlock()
	if w == nil {
		return len(p), nil
	}
	return w.Write(p)
}

// keyLabel keeps PagerDuty routing keys, which are credentials, out of logs
// and metrics; the redacted form is also what `courier retry -k` accepts.
func keyLabel(key string) string { return redact.QueueKey(key) }

// listenHosts are the Host names the local API answers to besides loopback:
// config's listen_hosts and the address it listens on, when that is one
// address rather than every interface.
func listenHosts(cfg *config.Config) []string {
	hosts := slices.Clone(cfg.ListenHosts)
	if h, _, err := net.SplitHostPort(cfg.Listen); err == nil {
		if a, err := netip.ParseAddr(h); err != nil || !a.IsUnspecified() {
			hosts = append(hosts, h)
		}
	}
	return hosts
}
