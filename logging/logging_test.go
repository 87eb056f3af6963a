package logging_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/rs/zerolog"

	"courier/config"
	"courier/logging"
)

// lines decodes JSON log lines, failing on anything that is not JSON.
func lines(t *testing.T, data []byte) []map[string]any {
	t.Helper()
	var out []map[string]any
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("not a JSON line: %q: %v", sc.Text(), err)
		}
		out = append(out, m)
	}
	return out
}

func newLogger(t *testing.T, opts logging.Options) zerolog.Logger {
	t.Helper()
	l, c, err := logging.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := c.Close(); err != nil {
			t.Error(err)
		}
	})
	return l
}

func TestFormatDefaultsToJSONWhenNotATerminal(t *testing.T) {
	var buf bytes.Buffer
	l := newLogger(t, logging.Options{Stderr: &buf})
	l.Info().Str("k", "v").Msg("hello")
	got := lines(t, buf.Bytes())
	if len(got) != 1 || got[0]["message"] != "hello" || got[0]["level"] != "info" || got[0]["k"] != "v" {
		t.Fatalf("got %v", got)
	}
}

func TestFormatExplicit(t *testing.T) {
	var buf bytes.Buffer
	l := newLogger(t, logging.Options{Format: "console", Stderr: &buf})
	l.Info().Str("k", "v").Msg("hello")
	out := buf.String()
	if json.Valid(buf.Bytes()) || !strings.Contains(out, "INF") || !strings.Contains(out, "hello") || !strings.Contains(out, "k=v") {
		t.Fatalf("not console output: %q", out)
	}
	if strings.Contains(out, "\x1b[") {
		t.Fatalf("colour codes written to a non-terminal: %q", out)
	}

	buf.Reset()
	l = newLogger(t, logging.Options{Format: "json", Stderr: &buf})
	l.Info().Msg("hello")
	if got := lines(t, buf.Bytes()); len(got) != 1 {
		t.Fatalf("got %v", got)
	}
}

func TestTimestampIsUTCWithMilliseconds(t *testing.T) {
	var buf bytes.Buffer
	l := newLogger(t, logging.Options{Format: "json", Stderr: &buf})
	l.Info().Msg("x")
	ts, _ := lines(t, buf.Bytes())[0]["time"].(string)
	if !regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$`).MatchString(ts) {
		t.Fatalf("time %q is not RFC 3339 UTC with ms", ts)
	}
	if n := strings.Count(buf.String(), `"time"`); n != 1 {
		t.Fatalf("%d time fields", n)
	}

	buf.Reset()
	l = newLogger(t, logging.Options{Format: "console", Stderr: &buf})
	l.Info().Msg("x")
	if !regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z `).MatchString(buf.String()) {
		t.Fatalf("console line %q does not start with the UTC time", buf.String())
	}
}

func TestLevelFiltering(t *testing.T) {
	tests := []struct {
		level string
		want  []string
	}{
		{"", []string{"info", "warn", "error"}},
		{"debug", []string{"debug", "info", "warn", "error"}},
		{"info", []string{"info", "warn", "error"}},
		{"WARN", []string{"warn", "error"}},
		{"error", []string{"error"}},
	}
	for _, tt := range tests {
		var buf bytes.Buffer
		l := newLogger(t, logging.Options{Level: tt.level, Format: "json", Stderr: &buf})
		l.Trace().Msg("trace")
		l.Debug().Msg("debug")
		l.Info().Msg("info")
		l.Warn().Msg("warn")
		l.Error().Msg("error")
		var got []string
		for _, m := range lines(t, buf.Bytes()) {
			got = append(got, m["message"].(string))
		}
		if strings.Join(got, ",") != strings.Join(tt.want, ",") {
			t.Errorf("level %q: got %v, want %v", tt.level, got, tt.want)
		}
	}
}

func TestBadOptionsNameTheFlag(t *testing.T) {
	root := t.TempDir()
	for _, tt := range []struct {
		opts logging.Options
		want string
	}{
		{logging.Options{Level: "verbose"}, `--log-level "verbose": must be one of debug, info, warn, error`},
		{logging.Options{Level: "trace"}, `--log-level "trace"`},
		{logging.Options{Format: "xml"}, `--log-format "xml": must be console or json`},
		{logging.Options{Root: root}, "Command is required"},
	} {
		tt.opts.Root = root
		if tt.opts.Command == "" && tt.want != "Command is required" {
			tt.opts.Command = "export"
		}
		_, c, err := logging.New(tt.opts)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%+v: got %v, want %q", tt.opts, err, tt.want)
		}
		if c != nil {
			t.Errorf("%+v: a Closer returned with an error", tt.opts)
		}
	}
	// Nothing is created for a run that cannot start.
	if entries, _ := os.ReadDir(root); len(entries) != 0 {
		t.Fatalf("files created: %v", entries)
	}
}

func TestFileGetsJSONAndHoldsTheLastRunOnly(t *testing.T) {
	root := filepath.Join(t.TempDir(), "root")
	path := config.Layout{Root: root}.Log("export")

	run := func(msgs ...string) string {
		var stderr bytes.Buffer
		l, c, err := logging.New(logging.Options{Format: "console", Root: root, Command: "export", Stderr: &stderr})
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range msgs {
			l.Info().Str(logging.FieldIntegration, "int_1").Msg(m)
		}
		l.Debug().Msg("filtered")
		if err := c.Close(); err != nil {
			t.Fatal(err)
		}
		if err := c.Close(); err != nil {
			t.Fatalf("second Close: %v", err)
		}
		return stderr.String()
	}

	stderr := run("first run a", "first run b")
	if !strings.Contains(stderr, "first run a") || json.Valid([]byte(strings.SplitN(stderr, "\n", 2)[0])) {
		t.Fatalf("stderr should have the console form: %q", stderr)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	got := lines(t, data)
	if len(got) != 2 || got[0]["message"] != "first run a" || got[0][logging.FieldIntegration] != "int_1" {
		t.Fatalf("file after first run: %s", data)
	}

	run("second run")
	data, err = os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := lines(t, data); len(got) != 1 || got[0]["message"] != "second run" {
		t.Fatalf("file after second run: %s", data)
	}

	assertMode(t, path, 0o600)
	assertMode(t, filepath.Dir(path), 0o700|os.ModeDir)
	assertMode(t, root, 0o700|os.ModeDir)
}

func TestOpenFile(t *testing.T) {
	path := config.Layout{Root: t.TempDir()}.IntegrationLog("int_1")
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		t.Fatal(err)
	}
	// What an earlier run, or a careless hand, left behind.
	if err := os.WriteFile(path, []byte("old run\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	w, err := logging.OpenFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write([]byte("new\n")); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(path); string(b) != "new\n" {
		t.Fatalf("content %q: not truncated", b)
	}
	assertMode(t, path, 0o600)

	// Missing folders are created private.
	deep := filepath.Join(t.TempDir(), "logs", "integrations", "int_2")
	w, err = logging.OpenFile(deep)
	if err != nil {
		t.Fatal(err)
	}
	_ = w.Close()
	assertMode(t, filepath.Dir(deep), 0o700|os.ModeDir)
}

func TestSecretsAreRedacted(t *testing.T) {
	var buf bytes.Buffer
	l := newLogger(t, logging.Options{Format: "json", Stderr: &buf})
	c := config.Default()
	c.Backend.APIKey = "sk_SHOULD_NEVER_PRINT"
	l.Info().Interface("config", c).Stringer("key", c.Backend.APIKey).Msg("loaded")
	if strings.Contains(buf.String(), "SHOULD_NEVER_PRINT") || !strings.Contains(buf.String(), config.Redacted) {
		t.Fatalf("got %s", buf.String())
	}
}

func assertMode(t *testing.T, path string, want os.FileMode) {
	t.Helper()
	info, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := info.Mode() & (os.ModePerm | os.ModeDir); got != want {
		t.Errorf("%s has mode %v, want %v", path, got, want)
	}
}
