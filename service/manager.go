package service

import (
	"bytes"
	"context"
	"courier/internal/atomicfile"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// Default locations; a Manager's empty fields mean these.
const (
	DefaultUnitDir    = "/etc/systemd/system"
	DefaultSystemdDir = "/run/systemd/system" // exists while systemd is the init system (sd_booted)
)

// DefaultPackageUnitDirs are where the deb and rpm packages put the unit
// (the distributions' unit folders; Debian 12 uses /lib, RPM systems and
// newer Debian /usr/lib).
var DefaultPackageUnitDirs = []string{"/usr/lib/systemd/system", "/lib/systemd/system"}

// commandTimeout bounds one systemctl call. A restart of a Type=notify
// unit waits for the old process to stop (TimeoutStopSec=30s) and the new
// one to be ready (TimeoutStartSec=90s).
const commandTimeout = 3 * time.Minute

// ErrNotInstalled is returned by Uninstall and Status when there is no
// courier unit.
var ErrNotInstalled = errors.New(UnitName + " is not installed")

// ErrPackaged is returned by Uninstall when the unit belongs to the deb or
// rpm package: it was stopped and disabled, and only removing the package
// removes its file.
var ErrPackaged = errors.New(UnitName + " belongs to the courier package")

// Reason says why the unit cannot be managed here.
type Reason int

const (
	// NotRoot: installing and removing units needs root.
	NotRoot Reason = iota + 1
	// NoSystemd: systemd is not the init system here (a container, another
	// init, macOS).
	NoSystemd
)

func (r Reason) String() string {
	switch r {
	case NotRoot:
		return "not running as root"
	case NoSystemd:
		return "systemd is not running here"
	}
	return fmt.Sprintf("Reason(%d)", int(r))
}

// UnavailableError is returned when the unit cannot be managed from this
// process. Instead is what to do instead, with the full command line.
type UnavailableError struct {
	Reason  Reason
	Instead string
}

func (e *UnavailableError) Error() string { return e.Reason.String() + ": " + e.Instead }

// Runner runs a command and returns what it printed (stdout and stderr).
type Runner func(ctx context.Context, name string, args ...string) ([]byte, error)

// Manager installs, removes and inspects the unit. The zero value manages
// the real system; tests set the fields.
type Manager struct {
	// UnitDir is where the unit file goes (DefaultUnitDir).
	UnitDir string
	// SystemdDir exists while systemd runs (DefaultSystemdDir).
	SystemdDir string
	// Euid returns the effective user id (os.Geteuid).
	Euid func() int
	// Run runs systemctl (exec, with a timeout).
	Run Runner
	// Self is how hints name this program (os.Executable, else "courier").
	Self string
	// Root is the --root that hints pass; without it they pass none.
	Root string
	// PackageUnitDirs are where a package puts the unit
	// (DefaultPackageUnitDirs).
	PackageUnitDirs []string
}

// Install writes the unit for opts, reloads systemd, enables the unit and
// (re)starts it, so that a changed config or binary takes effect.
func Install(opts UnitOptions) error { return (&Manager{}).Install(opts) }

// Uninstall stops and disables the unit and removes its file. The root
// folder is left as it is.
func Uninstall() error { return (&Manager{}).Uninstall() }

// Status describes the unit's state in a few lines.
func Status() (string, error) { return (&Manager{}).Status() }

// UnitPath is the path of the unit file.
func (m *Manager) UnitPath() string {
	dir := m.UnitDir
	if dir == "" {
		dir = DefaultUnitDir
	}
	return filepath.Join(dir, UnitName)
}

// packagedUnit is the path of the unit a deb or rpm package installed,
// when it is exactly unit; "" otherwise.
func (m *Manager) packagedUnit(unit []byte) string {
	for _, d := range m.packageUnitDirs() {
		p := filepath.Join(d, UnitName)
		if b, err := os.ReadFile(p); err == nil && bytes.Equal(b, unit) {
			return p
		}
	}
	return ""
}

// anyPackagedUnit is the path of a unit a package installed, whatever it
// holds; "" when there is none.
func (m *Manager) anyPackagedUnit() string {
	for _, d := range m.packageUnitDirs() {
		p := filepath.Join(d, UnitName)
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	return ""
}

func (m *Manager) packageUnitDirs() []string {
	if m.PackageUnitDirs == nil {
		return DefaultPackageUnitDirs
	}
	return m.PackageUnitDirs
}

// UnitFile is the unit file Install uses for opts: the package's when it
// is the same unit, else UnitPath.
func (m *Manager) UnitFile(opts UnitOptions) string {
	if unit, err := Render(opts); err == nil {
		if p := m.packagedUnit(unit); p != "" {
			return p
		}
	}
	return m.UnitPath()
}

// Install writes the unit for opts, reloads systemd, enables the unit and
// (re)starts it. A root other than StateRoot is created (0700) if missing,
// because ReadWritePaths= needs it to exist. When the deb or rpm package
// installed this very unit, Install uses it and removes a copy in UnitDir,
// which would shadow it and outlive the package.
func (m *Manager) Install(opts UnitOptions) error {
	if !m.systemdRunning() {
		return &UnavailableError{NoSystemd, fmt.Sprintf(
			"start `%s` under your own supervisor instead (it stays in the foreground, stops within 10s of SIGTERM and exits 78 on a bad config.yaml)",
			shellJoin(opts.Binary, "--root", opts.Root, "--log-format", "json", "service-run"))}
	}
	if m.euid() != 0 {
		args := []string{"sudo", opts.Binary, "--root", opts.Root, "service", "install"}
		if opts.User != "" {
			args = append(args, "--user", opts.User)
		}
		return &UnavailableError{NotRoot, "run `" + shellJoin(args...) + "`"}
	}
	unit, err := Render(opts)
	if err != nil {
		return err
	}
	if err := checkExecutable(opts.Binary); err != nil {
		return err
	}
	if opts.Root != StateRoot {
		if err := makeRoot(opts.Root, opts.User); err != nil {
			return err
		}
	}
	if m.packagedUnit(unit) != "" {
		if err := os.Remove(m.UnitPath()); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("service: removing a copy of the packaged unit: %w", err)
		}
	} else if err := atomicfile.Write(m.UnitPath(), unit, 0o644); err != nil {
		return fmt.Errorf("service: writing the unit: %w", err)
	}
	for _, args := range [][]string{
		{"daemon-reload"},
		{"enable", UnitName},
		{"restart", UnitName},
	} {
		if err := m.systemctl(args...); err != nil {
			if args[0] == "restart" {
				return fmt.Errorf("%w\nsee `journalctl -u %s -n 50`", err, UnitName)
			}
			return err
		}
	}
	return nil
}

// Uninstall stops and disables the unit, removes its file and reloads
// systemd. It returns ErrNotInstalled when there is no unit file, and
// ErrPackaged (after stopping and disabling it) when the only unit is the
// package's.
func (m *Manager) Uninstall() error {
	if !m.systemdRunning() {
		return &UnavailableError{NoSystemd, "no unit can be installed here, so there is none to remove; stop the service-run that your supervisor starts"}
	}
	if m.euid() != 0 {
		return &UnavailableError{NotRoot, "run `" + m.hint("sudo", "service", "uninstall") + "`"}
	}
	path := m.UnitPath()
	if _, err := os.Lstat(path); errors.Is(err, fs.ErrNotExist) {
		if p := m.anyPackagedUnit(); p != "" {
			if err := m.systemctl("disable", "--now", UnitName); err != nil {
				return err
			}
			return fmt.Errorf("%w (%s): stopped and disabled; remove the package to remove the unit", ErrPackaged, p)
		}
		return fmt.Errorf("%w (no %s)", ErrNotInstalled, path)
	}
	// Remove the file even when stopping failed: the unit must not come
	// back at the next boot.
	stopErr := m.systemctl("disable", "--now", UnitName)
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return errors.Join(stopErr, fmt.Errorf("service: %w", err))
	}
	if err := m.systemctl("daemon-reload"); err != nil {
		return errors.Join(stopErr, err)
	}
	_ = m.systemctl("reset-failed", UnitName) // fails when the unit was not failed
	return stopErr
}

// statusProps are the properties Status reads.
var statusProps = []string{
	"LoadState", "ActiveState", "SubState", "UnitFileState", "FragmentPath",
	"MainPID", "ActiveEnterTimestamp", "NRestarts", "ExecMainStatus", "Result",
}

// Status describes the unit: whether it is running and enabled, its main
// PID, since when, how often it restarted, and where its logs are. It
// needs no root. It returns ErrNotInstalled, with a hint as text, when
// systemd does not know the unit.
func (m *Manager) Status() (string, error) {
	if !m.systemdRunning() {
		return "", &UnavailableError{NoSystemd, fmt.Sprintf(
			"there is no unit here; `%s` shows the queue of a service-run, whatever started it", m.hint("", "status"))}
	}
	out, err := m.run("show", UnitName, "--property="+strings.Join(statusProps, ","))
	if err != nil {
		return "", err
	}
	p := parseProps(out)
	if p["LoadState"] == "not-found" || p["LoadState"] == "" {
		return "", fmt.Errorf("%w; install it with `%s`", ErrNotInstalled, m.hint("sudo", "service", "install"))
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%s: %s (%s), %s\n", UnitName, p["ActiveState"], p["SubState"], orDash(p["UnitFileState"]))
	row := func(k, v string) {
		if v != "" {
			fmt.Fprintf(&b, "  %-10s %s\n", k+":", v)
		}
	}
	row("unit file", p["FragmentPath"])
	if pid := p["MainPID"]; pid != "" && pid != "0" {
		row("main PID", pid)
	}
	if p["ActiveState"] == "active" {
		row("since", p["ActiveEnterTimestamp"])
	}
	row("restarts", p["NRestarts"])
	if p["ActiveState"] != "active" && p["Result"] != "" && p["Result"] != "success" {
		row("result", fmt.Sprintf("%s (exit status %s)", p["Result"], orDash(p["ExecMainStatus"])))
	}
	row("logs", "journalctl -u "+UnitName)
	return b.String(), nil
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func parseProps(out []byte) map[string]string {
	p := map[string]string{}
	for _, line := range strings.Split(string(out), "\n") {
		if k, v, ok := strings.Cut(strings.TrimSpace(line), "="); ok {
			p[k] = v
		}
	}
	return p
}

// hint is a command line of this program: prefix (sudo, or ""), self,
// --root when known, then args.
func (m *Manager) hint(prefix string, args ...string) string {
	var line []string
	if prefix != "" {
		line = append(line, prefix)
	}
	line = append(line, m.self())
	if m.Root != "" {
		line = append(line, "--root", m.Root)
	}
	return shellJoin(append(line, args...)...)
}

func (m *Manager) systemdRunning() bool {
	dir := m.SystemdDir
	if dir == "" {
		dir = DefaultSystemdDir
	}
	fi, err := os.Stat(dir)
	return err == nil && fi.IsDir()
}

func (m *Manager) euid() int {
	if m.Euid != nil {
		return m.Euid()
	}
	return os.Geteuid()
}

func (m *Manager) self() string {
	if m.Self != "" {
		return m.Self
	}
	if p, err := os.Executable(); err == nil {
		return p
	}
	return "courier"
}

// systemctl runs systemctl with args; a failure carries what it printed.
func (m *Manager) systemctl(args ...string) error {
	_, err := m.run(args...)
	return err
}

func (m *Manager) run(args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), commandTimeout)
	defer cancel()
	run := m.Run
	if run == nil {
		run = execRunner
	}
	out, err := run(ctx, "systemctl", args...)
	if err != nil {
		msg := strings.TrimSpace(string(out))
		if msg != "" {
			msg = ": " + msg
		}
		return out, fmt.Errorf("systemctl %s: %w%s", strings.Join(args, " "), err, msg)
	}
	return out, nil
}

func execRunner(ctx context.Context, name string, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = append(os.Environ(), "SYSTEMD_PAGER=", "SYSTEMD_COLORS=0", "LC_ALL=C")
	return cmd.CombinedOutput()
}

// makeRoot creates a missing root folder (0700) for ReadWritePaths=, owned
// by user when one is given; an existing one is left as it is.
func makeRoot(root, user string) error {
	if _, err := os.Stat(root); err == nil {
		return nil
	}
	if err := os.MkdirAll(root, 0o700); err != nil {
		return fmt.Errorf("service: creating the root folder: %w", err)
	}
	if user != "" {
		if err := chownToUser(root, user); err != nil {
			return fmt.Errorf("service: handing the root folder to %s: %w", user, err)
		}
	}
	return nil
}

func checkExecutable(path string) error {
	fi, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("service: binary: %w", err)
	}
	if !fi.Mode().IsRegular() || fi.Mode().Perm()&0o111 == 0 {
		return fmt.Errorf("service: binary %s is not an executable file", path)
	}
	return nil
}

// shellJoin writes args as a POSIX shell command line, quoting where needed.
func shellJoin(args ...string) string {
	q := make([]string, len(args))
	for i, a := range args {
		q[i] = shellQuote(a)
	}
	return strings.Join(q, " ")
}

func shellQuote(s string) string {
	if s != "" && strings.IndexFunc(s, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("-_./=:@,+%", r))
	}) < 0 {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
