package logging

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/mattn/go-isatty"
	"github.com/rs/zerolog"

	"courier/config"
)

// Field keys. Each layer adds only its own, see the package comment.
const (
	// FieldComponent is the part of the agent a line comes from ("queue",
	// "poller", ComponentActor).
	FieldComponent = "component"
	// FieldIntegration is the integration's id ("int_1").
	FieldIntegration = "integration"
	// FieldSession is a session's path in the session tree.
	FieldSession = "session"
	// FieldCommand is the id of the backend command a line belongs to
	// ("cmd_1"); log shipping groups lines by it.
	FieldCommand = "command"
	// FieldRoutingKey is a queue routing key.
	FieldRoutingKey = "routing_key"
)

// ComponentActor is the component of lines that come from protoactor-go.
const ComponentActor = "actor"

// TimeFormat is the timestamp of every line: RFC 3339 in UTC with
// milliseconds, so lines from one second still sort, and lines from
// machines in different zones compare directly.
const TimeFormat = "2006-01-02T15:04:05.000Z07:00"

// Output formats.
const (
	FormatConsole = "console"
	FormatJSON    = "json"
)

// Options configure New.
type Options struct {
	// Level is debug, info, warn or error; empty means info.
	Level string
	// Format is console or json; empty means console when Stderr is a
	// terminal and json otherwise (systemd's journal, a pipe, a file).
	Format string
	// Root, when set, also writes the run's log to <Root>/logs/<Command>, as
	// JSON lines, whatever Format is.
	Root string
	// Command names the log file under Root ("service-run", "export").
	Command string
	// Stderr receives the log; nil means os.Stderr.
	Stderr io.Writer
	// Extra, when set, also receives every line as JSON (the service's
	// log shipper reads the lines of backend commands from it).
	Extra io.Writer
}

// levels are the values of --log-level, in the order the help shows them.
var levels = []struct {
	name  string
	level zerolog.Level
}{
	{"debug", zerolog.DebugLevel},
	{"info", zerolog.InfoLevel},
	{"warn", zerolog.WarnLevel},
	{"error", zerolog.ErrorLevel},
}

func parseLevel(s string) (zerolog.Level, error) {
	if s == "" {
		return zerolog.InfoLevel, nil
	}
	names := make([]string, len(levels))
	for i, l := range levels {
		if strings.EqualFold(s, l.name) {
			return l.level, nil
		}
		names[i] = l.name
	}
	return 0, fmt.Errorf("--log-level %q: must be one of %s", s, strings.Join(names, ", "))
}

func parseFormat(s string, stderr io.Writer) (string, error) {
	switch strings.ToLower(s) {
	case "":
		if isTerminal(stderr) {
			return FormatConsole, nil
		}
		return FormatJSON, nil
	case FormatConsole:
		return FormatConsole, nil
	case FormatJSON:
		return FormatJSON, nil
	}
	return "", fmt.Errorf("--log-format %q: must be %s or %s", s, FormatConsole, FormatJSON)
}

// New returns the logger of one command run, and a Closer that syncs and
// closes the log file (a no-op without Root). Call Close once the command
// is done; logging after it fails to reach the file. On error the Closer is
// nil and no file has been created.
//
// Invalid options are errors that name the flag (--log-level, --log-format)
// and its allowed values, so the CLI can print them as they are.
func New(opts Options) (zerolog.Logger, io.Closer, error) {
	l, _, c, err := NewTee(opts)
	return l, c, err
}

// Tee makes loggers that write where a command's logger writes and to one
// more file: an integration's lines go to the command's outputs and to
// logs/integrations/<id>.
type Tee struct {
	out   zerolog.LevelWriter
	level zerolog.Level
}

// NewTee is New that also returns a Tee of the logger's outputs.
func NewTee(opts Options) (zerolog.Logger, Tee, io.Closer, error) {
	level, err := parseLevel(opts.Level)
	if err != nil {
		return zerolog.Nop(), Tee{}, nil, err
	}
	stderr := opts.Stderr
	if stderr == nil {
		stderr = os.Stderr
	}
	format, err := parseFormat(opts.Format, stderr)
	if err != nil {
		return zerolog.Nop(), Tee{}, nil, err
	}

	var out io.Writer = stderr
	if format == FormatConsole {
		out = consoleWriter(stderr)
	}
	var closer io.Closer = nopCloser{}
	if opts.Root != "" {
		if opts.Command == "" {
			return zerolog.Nop(), Tee{}, nil, errors.New("logging: Options.Command is required with Root: it names the log file")
		}
		path := config.Layout{Root: opts.Root}.Log(opts.Command)
		f, err := openKeepingPrevious(path)
		if err != nil {
			return zerolog.Nop(), Tee{}, nil, err
		}
		// The file always gets JSON: it is read by programs (log shipping,
		// support tooling), not by a terminal.
		out = zerolog.MultiLevelWriter(out, f)
		closer = f
	}
	if opts.Extra != nil {
		out = zerolog.MultiLevelWriter(out, opts.Extra)
	}
	lw := zerolog.MultiLevelWriter(out)
	return zerolog.New(lw).Level(level).Hook(timestampHook{}), Tee{out: lw, level: level}, closer, nil
}

// Open returns a logger writing to the Tee's outputs and to the file at
// path, the previous run's kept as path.1 as for a command's log. On error
// it returns the plain logger.
func (t Tee) Open(path string) (zerolog.Logger, io.Closer, error) {
	if t.out == nil {
		return zerolog.Nop(), nopCloser{}, errors.New("logging: empty Tee")
	}
	f, err := openKeepingPrevious(path)
	if err != nil {
		return zerolog.New(t.out).Level(t.level).Hook(timestampHook{}), nopCloser{}, err
	}
	return zerolog.New(zerolog.MultiLevelWriter(t.out, f)).Level(t.level).Hook(timestampHook{}), f, nil
}

// timestampHook stamps each line with TimeFormat in UTC. It replaces
// zerolog's Timestamp(), which formats with the process-wide
// zerolog.TimeFieldFormat and TimestampFunc; setting those here would change
// every other logger in the process behind its owner's back.
type timestampHook struct{}

func (timestampHook) Run(e *zerolog.Event, _ zerolog.Level, _ string) {
	e.Str(zerolog.TimestampFieldName, time.Now().UTC().Format(TimeFormat))
}

func consoleWriter(w io.Writer) zerolog.ConsoleWriter {
	return zerolog.ConsoleWriter{
		Out: w,
		// Colour only for a person at a terminal; NO_COLOR (no-color.org)
		// lets them opt out.
		NoColor:      !isTerminal(w) || os.Getenv("NO_COLOR") != "",
		TimeFormat:   TimeFormat,
		TimeLocation: time.UTC,
	}
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(interface{ Fd() uintptr })
	if !ok {
		return false
	}
	return isatty.IsTerminal(f.Fd()) || isatty.IsCygwinTerminal(f.Fd())
}

// openKeepingPrevious moves the previous run's log at path to path.1, then
// opens path afresh: the log of a run that crashed survives the restart
// that follows, for a command's log and an integration's alike.
func openKeepingPrevious(path string) (io.WriteCloser, error) {
	if err := os.Rename(path, path+".1"); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("logging: keeping the previous log: %w", err)
	}
	return OpenFile(path)
}

type nopCloser struct{}

func (nopCloser) Close() error { return nil }

// OpenFile opens a log file that holds one run: it creates the parent
// folders (0700), truncates what an earlier run left, and makes the file
// 0600 even if it existed with a wider mode, since logs can quote customer
// data. Close syncs the file before closing it, so the last lines of a run
// are on disk when the command exits; closing twice is harmless.
func OpenFile(path string) (io.WriteCloser, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("logging: %w", err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return nil, fmt.Errorf("logging: %w", err)
	}
	if err := f.Chmod(0o600); err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("logging: %w", err)
	}
	return &syncFile{f: f}, nil
}

type syncFile struct {
	f    *os.File
	once sync.Once
	err  error
}

func (s *syncFile) Write(p []byte) (int, error) { return s.f.Write(p) }

// WriteLevel lets zerolog.MultiLevelWriter pass lines through without
// wrapping the file.
func (s *syncFile) WriteLevel(_ zerolog.Level, p []byte) (int, error) { return s.f.Write(p) }

func (s *syncFile) Close() error {
	s.once.Do(func() {
		s.err = errors.Join(s.f.Sync(), s.f.Close())
	})
	return s.err
}
