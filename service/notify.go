package service

import (
	"context"
	"fmt"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"
	"github.com/rs/zerolog"
)

// Notifier tells the service manager about the process's life: ready,
// stopping, alive. Every method is a no-op, without error, when no service
// manager listens.
type Notifier interface {
	// Ready says start-up is done (READY=1); systemd waits for it before
	// it calls a Type=notify unit started.
	Ready() error
	// Stopping says shutdown has begun (STOPPING=1).
	Stopping() error
	// Watchdog says the process is alive and healthy (WATCHDOG=1).
	Watchdog() error
	// WatchdogInterval is WatchdogSec= of the unit; false when the
	// watchdog is off (or this process is not the one watched).
	WatchdogInterval() (time.Duration, bool)
}

// NewNotifier returns the sd_notify Notifier: it sends datagrams to
// $NOTIFY_SOCKET and does nothing without one. It reads the environment at
// each call and leaves it as it is; children (git) inherit NOTIFY_SOCKET,
// but the unit's NotifyAccess=main makes systemd ignore them.
func NewNotifier() Notifier { return sdNotifier{} }

type sdNotifier struct{}

func (sdNotifier) Ready() error    { return sdNotify(daemon.SdNotifyReady) }
func (sdNotifier) Stopping() error { return sdNotify(daemon.SdNotifyStopping) }
func (sdNotifier) Watchdog() error { return sdNotify(daemon.SdNotifyWatchdog) }

// WatchdogInterval reads WATCHDOG_USEC (and WATCHDOG_PID: a watchdog meant
// for another process is off here). A malformed value counts as off.
func (sdNotifier) WatchdogInterval() (time.Duration, bool) {
	d, err := daemon.SdWatchdogEnabled(false)
	return d, err == nil && d > 0
}

func sdNotify(state string) error {
	if _, err := daemon.SdNotify(false, state); err != nil {
		return fmt.Errorf("sd_notify %s: %w", state, err)
	}
	return nil
}

// RunWatchdog pings the watchdog at half its interval for as long as ctx
// lives, but only after healthy returned nil: when the agent is wedged
// (actors not answering, queue not writable) systemd stops hearing from it
// and restarts it after WatchdogSec. healthy must judge local health only
// (a backend outage is not a reason to restart) and should bound its own
// run time; a check that hangs withholds pings, which is what a hang
// deserves.
//
// It logs once when the agent stops being healthy and once when it
// recovers, not at every tick. Without a watchdog it returns at once.
func RunWatchdog(ctx context.Context, n Notifier, healthy func() error, log zerolog.Logger) {
	interval, ok := n.WatchdogInterval()
	if !ok {
		return
	}
	period := interval / 2
	if period <= 0 {
		period = interval
	}
	log.Debug().Dur("interval_ms", interval).Msg("systemd watchdog on: pinging while healthy")
	t := time.NewTicker(period)
	defer t.Stop()
	var (
		unhealthySince time.Time // zero while healthy
		sendFailing    bool
	)
	for ctx.Err() == nil {
		if err := healthy(); err != nil {
			if unhealthySince.IsZero() {
				unhealthySince = time.Now()
				log.Error().Err(err).Dur("watchdog_ms", interval).
					Msg("not healthy: withholding the systemd watchdog ping; systemd restarts the service if this lasts the watchdog interval")
			}
		} else {
			if !unhealthySince.IsZero() {
				log.Warn().Dur("unhealthy_for_ms", time.Since(unhealthySince).Round(time.Millisecond)).
					Msg("healthy again: systemd watchdog pings resumed")
				unhealthySince = time.Time{}
			}
			if err := n.Watchdog(); err != nil {
				if !sendFailing {
					log.Warn().Err(err).Msg("cannot ping the systemd watchdog")
				}
				sendFailing = true
			} else {
				sendFailing = false
			}
		}
		select {
		case <-ctx.Done():
		case <-t.C:
		}
	}
}
