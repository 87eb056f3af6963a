package logging

import (
	"context"
	"log/slog"
	"time"

	"github.com/rs/zerolog"
)

// Slog returns a log/slog logger that writes into l with
// component=ComponentActor, for protoactor-go (actor.WithLoggerFactory).
// Pass a logger without a component field of its own: zerolog would write
// the key twice.
//
// protoactor logs routine lifecycle events (actor started, stopped,
// restarted, system ready) at Info. Those are useful when debugging the actor
// tree and noise otherwise, so levels below Warn move down one step: slog
// Info becomes zerolog Debug and slog Debug becomes Trace. At the default
// info level no actor chatter shows; --log-level debug brings it back.
// Warn and Error keep their level because they report real trouble, such as
// a crashed actor or a dead letter.
func Slog(l zerolog.Logger) *slog.Logger {
	zl := l.With().Str(FieldComponent, ComponentActor).Logger()
	return slog.New(demoteInfo{zerolog.NewSlogHandler(zl)})
}

// demoteInfo shifts slog levels below Warn down one step; see Slog.
type demoteInfo struct{ h slog.Handler }

func demote(l slog.Level) slog.Level {
	if l < slog.LevelWarn {
		return l - (slog.LevelInfo - slog.LevelDebug)
	}
	return l
}

func (d demoteInfo) Enabled(ctx context.Context, l slog.Level) bool {
	return d.h.Enabled(ctx, demote(l))
}

func (d demoteInfo) Handle(ctx context.Context, r slog.Record) error {
	r.Level = demote(r.Level)
	// The zerolog logger stamps its own time (timestampHook); with the
	// record's time too, zerolog would write a second "time" key.
	r.Time = time.Time{}
	return d.h.Handle(ctx, r)
}

func (d demoteInfo) WithAttrs(attrs []slog.Attr) slog.Handler {
	return demoteInfo{d.h.WithAttrs(attrs)}
}

func (d demoteInfo) WithGroup(name string) slog.Handler {
	return demoteInfo{d.h.WithGroup(name)}
}
