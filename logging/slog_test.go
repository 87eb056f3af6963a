package logging_test

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"testing"

	"courier/logging"
)

func TestSlogRoutesIntoZerolog(t *testing.T) {
	var buf bytes.Buffer
	l := newLogger(t, logging.Options{Level: "debug", Format: "json", Stderr: &buf})
	s := logging.Slog(l)

	s.Debug("mailbox details")
	s.Info("actor started", "pid", "queue/deliver/a")
	s.Warn("dead letter", slog.Int("count", 3))
	s.Error("actor crashed")
	s.With("system", "courier").Info("with")
	s.WithGroup("g").Info("grouped", "k", "v")

	got := lines(t, buf.Bytes())
	want := []struct{ msg, level string }{
		// slog Debug became trace: not shown even at debug.
		{"actor started", "debug"},
		{"dead letter", "warn"},
		{"actor crashed", "error"},
		{"with", "debug"},
		{"grouped", "debug"},
	}
	if len(got) != len(want) {
		t.Fatalf("got %d lines: %s", len(got), buf.String())
	}
	for i, w := range want {
		m := got[i]
		if m["message"] != w.msg || m["level"] != w.level || m[logging.FieldComponent] != logging.ComponentActor {
			t.Errorf("line %d = %v, want %s at %s with component=actor", i, m, w.msg, w.level)
		}
	}
	if got[0]["pid"] != "queue/deliver/a" || got[1]["count"] != float64(3) {
		t.Errorf("attributes lost: %v", got[:2])
	}
	if got[3]["system"] != "courier" || got[4]["g.k"] != "v" {
		t.Errorf("With/WithGroup lost: %v", got[3:])
	}
	for _, line := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
		if n := strings.Count(line, `"time"`); n != 1 {
			t.Errorf("%d time fields in %s", n, line)
		}
	}
}

func TestSlogInfoHiddenAtDefaultLevel(t *testing.T) {
	var buf bytes.Buffer
	s := logging.Slog(newLogger(t, logging.Options{Format: "json", Stderr: &buf}))
	if s.Enabled(context.Background(), slog.LevelInfo) {
		t.Error("slog Info must be disabled at the default level, so callers skip building it")
	}
	s.Info("actor started")
	s.Warn("dead letter")
	got := lines(t, buf.Bytes())
	if len(got) != 1 || got[0]["message"] != "dead letter" || got[0]["level"] != "warn" {
		t.Fatalf("got %s", buf.String())
	}
}
