package cli

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"sync"

	"github.com/rs/zerolog"
	ucli "github.com/urfave/cli/v2"

	"courier/config"
	"courier/logging"
)

// Version is set at build time (-ldflags "-X courier/cli.Version=...").
var Version = "dev"

// Run runs courier with args (args[0] is the program name) and returns the
// process exit code.
func Run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	app := newApp(stdin, stdout, stderr)
	err := app.RunContext(ctx, args)
	if e, ok := app.Metadata[envKey].(*env); ok {
		// The command's log gets its error too: a failed command must not
		// leave an empty log behind.
		// Only the file: stderr shows the error once, from exitCode.
		if w, ok := e.closer.(io.Writer); ok && err != nil {
			l := zerolog.New(w).With().Timestamp().Logger()
			l.Error().Err(err).Msg("command failed")
		}
		_ = e.closer.Close()
	}
	return exitCode(err, stderr)
}

// envKey is where setup leaves the command's env in the app's Metadata,
// for Run to log the command's error and close the log after it.
const envKey = "courier.env"

func newApp(stdin io.Reader, stdout, stderr io.Writer) *ucli.App {
	app := &ucli.App{
		Name:      "courier",
		Usage:     "an on-premise agent that relays events and runs exports durably",
		Version:   Version,
		Reader:    stdin,
		Writer:    stdout,
		ErrWriter: stderr,
		Flags:     appFlags(config.DefaultRoot()),
		Action:    appAction,
		Commands: []*ucli.Command{
			initCommand(),
			serviceRunCommand(),
			serviceCommand(),
			enrollCommand(),
			exportCommand(),
			validateCommand(),
			onboardCommand(),
			sendCommand(),
			statusCommand(),
			retryCommand(),
			queueCommand(),
			versionCommand(),
			devBackendCommand(),
			helpCommand(),
		},
		// Errors are printed once, by exitCode, with the code it decides.
		ExitErrHandler:  func(*ucli.Context, error) {},
		OnUsageError:    usageExit,
		HideHelpCommand: true,
		Metadata:        map[string]any{},
	}
	prepareCommands(app.Commands, "")
	return app
}

// env is what every command gets: the root's layout, a logger that also
// writes logs/<command>, and the streams.
type env struct {
	ctx    context.Context
	layout config.Layout
	log    zerolog.Logger
	tee    logging.Tee
	stdout io.Writer
	stderr io.Writer
	// logs is what the console logger writes to: stderr, or, while
	// progress bars are drawn, the bars' container, which prints lines
	// above them.
	logs   *switchWriter
	closer io.Closer
}

// setup prepares a command. writeLog is false for commands that must not
// touch the root (version) or that would overwrite a running service's log.
func setup(c *ucli.Context, command string, writeLog bool) (*env, error) {
	return setupWith(c, command, writeLog, nil)
}

// setupWith is setup with one more JSON output for the logs.
func setupWith(c *ucli.Context, command string, writeLog bool, extra io.Writer) (*env, error) {
	root := globalString(c, "root")
	sw := &switchWriter{w: c.App.ErrWriter}
	opts := logging.Options{
		Level:   globalString(c, "log-level"),
		Format:  globalString(c, "log-format"),
		Command: command,
		Stderr:  sw,
		Extra:   extra,
	}
	if writeLog {
		opts.Root = root
	}
	log, tee, closer, err := logging.NewTee(opts)
	if err != nil {
		return nil, withCode(ExitUsage, err)
	}
	e := &env{
		ctx: c.Context, layout: config.Layout{Root: root}, log: log, tee: tee,
		stdout: c.App.Writer, stderr: c.App.ErrWriter, logs: sw, closer: closer,
	}
	c.App.Metadata[envKey] = e
	return e, nil
}

// baseDir is the folder relative paths in integration configs are resolved
// against: the root, made absolute now, so that a manual export and the
// service (whose current folder is / under systemd) read a config alike.
func (e *env) baseDir() string {
	if abs, err := filepath.Abs(e.layout.Root); err == nil {
		return abs
	}
	return e.layout.Root
}

// integrationLogger is the logger of one integration: the command's
// outputs plus logs/integrations/<id>.
func (e *env) integrationLogger(id string) (zerolog.Logger, io.Closer) {
	l, c, err := e.tee.Open(e.layout.IntegrationLog(id))
	l = l.With().Str(logging.FieldIntegration, id).Logger()
	if err != nil {
		l.Warn().Err(err).Msg("cannot open the integration's log file; logging to the command's log only")
	}
	return l, c
}

// switchWriter forwards to w, which can be swapped while in use. It
// reports the file descriptor of the stream it started with, so that
// terminal detection still sees the real stderr.
type switchWriter struct {
	mu sync.Mutex
	w  io.Writer
	fd *os.File
}

func (s *switchWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}

func (s *switchWriter) set(w io.Writer) (old io.Writer) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fd == nil {
		s.fd, _ = s.w.(*os.File)
	}
	old, s.w = s.w, w
	return old
}

// Fd lets isatty look through the switch; it panics never: without a
// file it answers an invalid descriptor, which is not a terminal.
func (s *switchWriter) Fd() uintptr {
	s.mu.Lock()
	defer s.mu.Unlock()
	f := s.fd
	if f == nil {
		f, _ = s.w.(*os.File)
	}
	if f == nil {
		return ^uintptr(0)
	}
	return f.Fd()
}

// loadConfig reads config.yaml under the root and logs its warnings.
func (e *env) loadConfig() (*config.Config, error) {
	cfg, err := config.Load(e.layout.Config())
	if err != nil {
		return nil, err
	}
	for _, w := range cfg.Warnings() {
		e.log.Warn().Msg(w)
	}
	return cfg, nil
}

func versionCommand() *ucli.Command {
	return &ucli.Command{
		Name:  "version",
		Usage: "print the version",
		Action: func(c *ucli.Context) error {
			_, err := fmt.Fprintf(c.App.Writer, "courier %s (%s, %s/%s)\n", Version, runtime.Version(), runtime.GOOS, runtime.GOARCH)
			return err
		},
	}
}

func hostname() string {
	h, err := os.Hostname()
	if err != nil {
		return "unknown"
	}
	return h
}
