package cli

import (
	"errors"
	"fmt"
	"io"

	"courier/config"
)

// Exit codes. 78 (EX_CONFIG) pairs with RestartPreventExitStatus=78 in the
// systemd unit so that a bad config does not crash-loop.
const (
	ExitOK          = 0
	ExitFailure     = 1
	ExitUsage       = 2
	ExitUnavailable = 69 // EX_UNAVAILABLE: no service-run is running under the root
	ExitTempFail    = 75 // EX_TEMPFAIL: try again later (queue full)
	ExitConfig      = 78 // EX_CONFIG
)

// exitError carries the exit code of a failure to Run, which is the one
// place that turns errors into codes: urfave/cli v2 loses the code of a
// wrapped cli.Exit.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

func withCode(code int, err error) error {
	if err == nil {
		return nil
	}
	return &exitError{code: code, err: err}
}

func usageError(format string, a ...any) error {
	return withCode(ExitUsage, fmt.Errorf(format, a...))
}

// exitCode maps an error to the process's exit code and prints it once.
func exitCode(err error, stderr io.Writer) int {
	if err == nil {
		return ExitOK
	}
	fmt.Fprintf(stderr, "courier: %v\n", err)
	var ee *exitError
	switch {
	case errors.As(err, &ee):
		return ee.code
	case errors.Is(err, config.ErrInvalid), errors.Is(err, config.ErrNotFound):
		return ExitConfig
	}
	return ExitFailure
}
