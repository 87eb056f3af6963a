package cli

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"syscall"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/prometheus/client_golang/prometheus"

	"courier/actors"
	"courier/config"
	"courier/queue"
)

// core is what every long-running command stands on: the actor system,
// the guardian and the queue under the root.
type core struct {
	sys      *actor.ActorSystem
	guardian *actors.Guardian
	q        *queue.Queue
	// fatal receives why the agent must stop (an actor failed for good).
	fatal chan string
	e     *env
}

func openCore(e *env, cfg *config.Config, router queue.Router, reg prometheus.Registerer) (*core, error) {
	if err := e.layout.EnsureDirs(); err != nil {
		return nil, err
	}
	c := &core{sys: actors.NewSystem(e.log), fatal: make(chan string, 1), e: e}
	g, err := actors.NewGuardian(c.sys, actors.GuardianOptions{
		Log: e.log,
		OnFatal: func(child string, reason any) {
			select {
			case c.fatal <- fmt.Sprintf("%s failed: %v", child, reason):
			default:
			}
		},
	})
	if err != nil {
		c.sys.Shutdown()
		return nil, err
	}
	c.guardian = g
	q, err := queue.Open(c.sys, queue.Options{
		Dir:    e.layout.DB(),
		Logger: e.log,
		Quota: queue.Quota{
			MaxBytes: cfg.Queue.MaxPendingBytes, MaxItems: cfg.Queue.MaxPendingItems,
			MaxKeyBytes: cfg.Queue.MaxKeyBytes, MaxKeyItems: cfg.Queue.MaxKeyItems,
		},
		Router:        router,
		BatchMaxItems: cfg.Queue.BatchMaxItems,
		BatchMaxBytes: cfg.Queue.BatchMaxBytes,
		Linger:        cfg.Queue.Linger.Duration(),
		IdleTimeout:   cfg.Queue.IdleTimeout.Duration(),
		Registerer:    reg,
		Spawn: func(p *actor.Props, name string) (*actor.PID, error) {
			return g.Spawn(p, name, actors.Fatal)
		},
		KeyLabel:         keyLabel,
		MetricsKeys:      cfg.Queue.MetricsKeys,
		MinFreeBytes:     cfg.Queue.MinFreeBytes,
		DiskReserveBytes: cfg.Queue.DiskReserveBytes,
		MaxFailedBytes:   cfg.Queue.MaxFailedBytes,
		MaxFailedAge:     cfg.Queue.MaxFailedAge.Duration(),
	})
	if err != nil {
		_ = g.Stop()
		c.sys.Shutdown()
		if errors.Is(err, syscall.EAGAIN) || errors.Is(err, syscall.EWOULDBLOCK) {
			// The queue's lock: most often service-run under the same root.
			return nil, fmt.Errorf("%w: another courier (a running service-run?) holds %s; a manual export needs a root of its own: add --root OTHER_DIR (records then go to OTHER_DIR/exports), or stop the service first", err, e.layout.Root)
		}
		return nil, fmt.Errorf("%w (is another courier using %s?)", err, e.layout.Root)
	}
	c.q = q
	return c, nil
}

// close flushes and closes the queue, then stops the actor tree.
func (c *core) close() {
	ctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	if err := c.q.Close(ctx); err != nil {
		c.e.log.Error().Err(err).Msg("closing the queue")
	}
	_ = c.guardian.Stop()
	c.sys.Shutdown()
}

// exporter starts the export supervisor with the config's limits; each
// integration logs to logs/integrations/<id> as well.
func (c *core) exporter(cfg *config.Config) (*actors.Exporter, error) {
	e := c.e
	return actors.NewExporter(c.sys, c.guardian, actors.ExportOptions{
		Store:             actors.QueueStore{Q: c.q},
		Log:               e.log,
		CacheDir:          func(id string) string { return filepath.Join(e.layout.Cache(), config.SafeName(id)) },
		BaseDir:           e.baseDir(),
		MaxParallel:       cfg.Exports.MaxParallel,
		StallTimeout:      cfg.Exports.StallTimeout.Duration(),
		IntegrationLogger: e.integrationLogger,
	})
}

// drain waits until no key matching keep has anything pending.
func (c *core) drain(ctx context.Context, keep func(key string) bool, each func(pending int64)) error {
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for {
		s, err := c.q.Status(ctx)
		if err != nil {
			return err
		}
		var pending int64
		for _, k := range s.Keys {
			if keep(k.Key) {
				pending += k.Pending
			}
		}
		if each != nil {
			each(pending)
		}
		if pending == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%d records still pending: %w", pending, ctx.Err())
		case <-t.C:
		}
	}
}
