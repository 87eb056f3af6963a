package logging

import (
	"errors"
	"fmt"
	"os"
	"testing"

	"golang.org/x/sys/unix"
)

// openPTY returns the terminal end of a new pseudo-terminal, or skips the
// test where the machine has none (some containers).
func openPTY(t *testing.T) *os.File {
	t.Helper()
	master, err := os.OpenFile("/dev/ptmx", os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Skipf("no pseudo-terminal: %v", err)
	}
	t.Cleanup(func() { _ = master.Close() })
	rc, err := master.SyscallConn()
	if err != nil {
		t.Skipf("pty: %v", err)
	}
	var n int
	var ioctlErr error
	err = rc.Control(func(fd uintptr) {
		if ioctlErr = unix.IoctlSetPointerInt(int(fd), unix.TIOCSPTLCK, 0); ioctlErr == nil {
			n, ioctlErr = unix.IoctlGetInt(int(fd), unix.TIOCGPTN)
		}
	})
	if err = errors.Join(err, ioctlErr); err != nil {
		t.Skipf("unlockpt/ptsname: %v", err)
	}
	tty, err := os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Skipf("open pts: %v", err)
	}
	t.Cleanup(func() { _ = tty.Close() })
	return tty
}

// The format is decided by whether stderr is a terminal; reading back what
// a pty shows proved flaky on machines whose ptys are not pollable, so this
// checks the decision on a real pty and leaves rendering to zerolog.
func TestFormatDefaultsToConsoleOnATerminal(t *testing.T) {
	tty := openPTY(t)
	got, err := parseFormat("", tty)
	if err != nil || got != FormatConsole {
		t.Fatalf("format on a terminal = %q, %v; want console", got, err)
	}
	t.Setenv("NO_COLOR", "")
	if cw := consoleWriter(tty); cw.NoColor {
		t.Fatal("no colour on a terminal without NO_COLOR")
	}
	t.Setenv("NO_COLOR", "1")
	if cw := consoleWriter(tty); !cw.NoColor {
		t.Fatal("colour despite NO_COLOR")
	}
}
