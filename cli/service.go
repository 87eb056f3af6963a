package cli

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	ucli "github.com/urfave/cli/v2"

	"courier/config"
	"courier/service"
)

// systemdFlags point the service commands at another systemd: tests (which
// must never touch the real system) and packaging (staging the unit into a
// package's tree). Hidden: operators have no use for them.
func systemdFlags() []ucli.Flag {
	return []ucli.Flag{
		&ucli.StringFlag{Name: "unit-dir", Hidden: true, Usage: "where the unit file goes (default " + service.DefaultUnitDir + ")"},
		&ucli.StringFlag{Name: "systemd-dir", Hidden: true, Usage: "the folder that exists while systemd runs (default " + service.DefaultSystemdDir + ")"},
		&ucli.StringSliceFlag{Name: "package-unit-dir", Hidden: true, Usage: "where a deb or rpm package puts the unit (default " + strings.Join(service.DefaultPackageUnitDirs, ", ") + ")"},
	}
}

// serviceManager is the service.Manager of a command: the real system
// unless the hidden flags say otherwise; hints name root.
func serviceManager(c *ucli.Context, root string) *service.Manager {
	return &service.Manager{UnitDir: c.String("unit-dir"), SystemdDir: c.String("systemd-dir"), Root: root,
		PackageUnitDirs: c.StringSlice("package-unit-dir")}
}

// absRoot is --root as an absolute path: the unit must not depend on the
// folder courier was installed from.
func absRoot(e *env) (string, error) {
	root, err := filepath.Abs(e.layout.Root)
	if err != nil {
		return "", withCode(ExitUsage, fmt.Errorf("--root %q: %w", e.layout.Root, err))
	}
	return root, nil
}

// serviceAction is the part the service subcommands share: no arguments,
// the command's env and --root as an absolute path.
func serviceAction(name string, run func(c *ucli.Context, e *env, root string) error) ucli.ActionFunc {
	return func(c *ucli.Context) error {
		if c.NArg() > 0 {
			return usageError("service %s takes no arguments, got %q", name, c.Args().Slice())
		}
		e, err := setup(c, "service-"+name, false)
		if err != nil {
			return err
		}
		root, err := absRoot(e)
		if err != nil {
			return err
		}
		return run(c, e, root)
	}
}

// serviceExit gives the errors of package service their exit code.
func serviceExit(err error) error {
	var ue *service.UnavailableError
	if errors.As(err, &ue) {
		return withCode(ExitUnavailable, err)
	}
	return err
}

func serviceCommand() *ucli.Command {
	return &ucli.Command{
		Name:         "service",
		Usage:        "install, remove or inspect the systemd unit that runs service-run",
		OnUsageError: usageExit,
		Subcommands: []*ucli.Command{
			serviceInstallCommand(),
			serviceUninstallCommand(),
			serviceStatusCommand(),
			serviceUnitCommand(),
		},
	}
}

func serviceInstallCommand() *ucli.Command {
	return &ucli.Command{
		Name:         "install",
		OnUsageError: usageExit,
		Usage:        "write " + service.UnitName + " for --root, enable it and (re)start it (needs root and systemd)",
		Flags: append([]ucli.Flag{
			&ucli.StringFlag{Name: "binary", Usage: "the courier executable the unit runs (default: this one)"},
			&ucli.StringFlag{Name: "user", Usage: "run the service as this `USER`; it must own --root unless that is " + service.StateRoot + " (default: the owner of --root, root if it does not exist yet)"},
		}, systemdFlags()...),
		Action: serviceAction("install", func(c *ucli.Context, e *env, root string) error {
			binary, err := binaryPath(c.String("binary"))
			if err != nil {
				return err
			}
			// A missing or bad config.yaml would make service-run exit 78,
			// which the unit does not restart: say so now. A config that
			// cannot be read (not root) is for Install to explain.
			if _, err := e.loadConfig(); err != nil && !errors.Is(err, fs.ErrPermission) {
				if errors.Is(err, config.ErrNotFound) {
					return withCode(ExitConfig, fmt.Errorf("%s does not exist: run `courier --root %s enroll CODE --backend-url URL` (or `courier --root %s init`) first", e.layout.Config(), root, root))
				}
				return err
			}
			opts := service.UnitOptions{Binary: binary, Root: root, User: c.String("user")}
			if opts.User == "" {
				opts.User = service.DefaultUser(root)
			}
			m := serviceManager(c, root)
			if err := m.Install(opts); err != nil {
				return serviceExit(err)
			}
			_, err = fmt.Fprintf(e.stdout, "installed %s: enabled and running as %s (runs %s --root %s; logs: journalctl -u %s)\n",
				m.UnitFile(opts), orRoot(opts.User), binary, root, service.UnitName)
			return err
		}),
	}
}

// serviceUnitCommand prints the unit instead of installing it: the deb and
// rpm packages ship what it prints, so that the packaged unit and the one
// `service install` writes come from one template.
func serviceUnitCommand() *ucli.Command {
	return &ucli.Command{
		Name:         "unit",
		OnUsageError: usageExit,
		Usage:        "print the unit that install would write for --root, without installing it",
		Flags: []ucli.Flag{
			&ucli.StringFlag{Name: "binary", Usage: "the courier executable the unit runs (default: this one)"},
			&ucli.StringFlag{Name: "user", Usage: "run the service as this `USER` (default: the owner of --root, root if it does not exist yet)"},
		},
		Action: serviceAction("unit", func(c *ucli.Context, e *env, root string) error {
			binary, err := binaryPath(c.String("binary"))
			if err != nil {
				return err
			}
			opts := service.UnitOptions{Binary: binary, Root: root, User: c.String("user")}
			if opts.User == "" {
				opts.User = service.DefaultUser(root)
			}
			unit, err := service.Render(opts)
			if err != nil {
				return withCode(ExitUsage, err)
			}
			_, err = e.stdout.Write(unit)
			return err
		}),
	}
}

func serviceUninstallCommand() *ucli.Command {
	return &ucli.Command{
		Name:         "uninstall",
		OnUsageError: usageExit,
		Usage:        "stop and disable " + service.UnitName + " and remove it; the root folder is kept",
		Flags:        systemdFlags(),
		Action: serviceAction("uninstall", func(c *ucli.Context, e *env, root string) error {
			m := serviceManager(c, root)
			err := m.Uninstall()
			switch {
			case errors.Is(err, service.ErrNotInstalled):
				_, err = fmt.Fprintf(e.stdout, "%s is not installed; nothing to do\n", service.UnitName)
				return err
			case errors.Is(err, service.ErrPackaged):
				_, err = fmt.Fprintln(e.stdout, err)
				return err
			case err != nil:
				return serviceExit(err)
			}
			_, err = fmt.Fprintf(e.stdout, "removed %s; %s (config, queue, logs) is kept\n", m.UnitPath(), root)
			return err
		}),
	}
}

func serviceStatusCommand() *ucli.Command {
	return &ucli.Command{
		Name:         "status",
		OnUsageError: usageExit,
		Usage:        "show whether " + service.UnitName + " is installed, enabled and running",
		Flags:        systemdFlags(),
		Action: serviceAction("status", func(c *ucli.Context, e *env, root string) error {
			s, err := serviceManager(c, root).Status()
			if errors.Is(err, service.ErrNotInstalled) {
				return withCode(ExitUnavailable, err)
			}
			if err != nil {
				return serviceExit(err)
			}
			_, err = fmt.Fprint(e.stdout, s)
			return err
		}),
	}
}

// binaryPath is --binary as an absolute path, or this executable.
func binaryPath(flag string) (string, error) {
	if flag != "" {
		p, err := filepath.Abs(flag)
		if err != nil {
			return "", withCode(ExitUsage, fmt.Errorf("--binary %q: %w", flag, err))
		}
		return p, nil
	}
	p, err := os.Executable()
	if err != nil {
		return "", fmt.Errorf("cannot tell which executable this is (%w); pass --binary", err)
	}
	return p, nil
}

func orRoot(user string) string {
	if user == "" {
		return "root"
	}
	return user
}
