package cli

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"

	ucli "github.com/urfave/cli/v2"

	"courier/backend"
	"courier/config"
	"courier/service"
)

func enrollCommand() *ucli.Command {
	return &ucli.Command{
		Name:         "enroll",
		OnUsageError: usageExit,
		Usage:        "enroll this agent with a backend: store its agent id and API key in config.yaml, then install and start the service",
		ArgsUsage:    "CODE",
		UsageText:    "courier enroll CODE --backend-url URL [--no-service] [--ca-file FILE]",
		Flags: append([]ucli.Flag{
			&ucli.StringFlag{Name: "backend-url", Usage: "the backend's base `URL`", EnvVars: []string{"COURIER_BACKEND_URL"}},
			&ucli.StringFlag{Name: "ca-file", Usage: "a PEM CA bundle `FILE` to trust besides the system roots (default: ca_file in config.yaml, if any)"},
			&ucli.BoolFlag{Name: "no-service", Usage: "only enroll: do not install and start the systemd unit"},
			&ucli.BoolFlag{Name: "allow-http", Usage: "accept an http:// backend URL off this machine (the API key then travels in clear)"},
		}, systemdFlags()...),
		Action: func(c *ucli.Context) error {
			args, err := interspersedFlags(c)
			if err != nil {
				return err
			}
			if len(args) != 1 || strings.TrimSpace(args[0]) == "" {
				return usageError("enroll takes one argument, the enroll code (courier enroll CODE --backend-url URL)")
			}
			if c.String("backend-url") == "" {
				return usageError("--backend-url is required (courier enroll CODE --backend-url URL)")
			}
			if u := c.String("backend-url"); !strings.Contains(u, "://") {
				// url.Parse's own answer ("first path segment in URL cannot
				// contain colon") does not say what to do.
				return usageError("--backend-url %q has no scheme: write it as https://%s (or http://%s for a backend on this machine)", u, u, u)
			}
			e, err := setup(c, "enroll", false) // no log file: a refused code leaves nothing behind
			if err != nil {
				return err
			}
			root, err := absRoot(e)
			if err != nil {
				return err
			}
			e.layout.Root = root
			if err := enroll(c, e, strings.TrimSpace(args[0])); err != nil {
				return err
			}
			if c.Bool("no-service") {
				_, err := fmt.Fprintf(e.stdout, "not installing the service (--no-service); to install it later: sudo courier --root %s service install\n", root)
				return err
			}
			return enrollService(c, e)
		},
	}
}

// enroll trades the code for credentials and writes config.yaml. Nothing
// is written unless the backend accepted the code.
func enroll(c *ucli.Context, e *env, code string) error {
	path := e.layout.Config()
	cfg, err := config.Load(path)
	switch {
	case err == nil:
		for _, w := range cfg.Warnings() {
			e.log.Warn().Msg(w)
		}
	case errors.Is(err, config.ErrNotFound):
		cfg = config.Default()
		cfg.LocalToken = config.NewToken()
	default:
		return err // a config.yaml that does not load: fix it first (exit 78)
	}

	caFile := cfg.Backend.CAFile
	if f := c.String("ca-file"); f != "" {
		if caFile, err = filepath.Abs(f); err != nil {
			return usageError("--ca-file %q: %v", f, err)
		}
	}
	url := c.String("backend-url")
	// Check what will be saved before the code is spent: a code is good
	// for one enroll only.
	allowHTTP := cfg.Backend.AllowHTTP || c.Bool("allow-http")
	enrolled := func(agentID string, apiKey config.Secret) config.Backend {
		b := cfg.Backend // keeps max_connections
		b.URL, b.AgentID, b.APIKey, b.CAFile, b.AllowHTTP = url, agentID, apiKey, caFile, allowHTTP
		return b
	}
	check := *cfg
	check.Backend = enrolled("pending", "pending")
	if err := check.Validate(); err != nil {
		return withCode(ExitUsage, flagErrors(err))
	}
	previous := cfg.Backend
	undo, err := prepareRoot(e.layout.Root)
	if err != nil {
		return err
	}
	saved := false
	defer func() {
		if !saved {
			undo()
		}
	}()

	req := backend.EnrollRequest{
		EnrollCode: code,
		Hostname:   hostname(),
		OS:         runtime.GOOS,
		Arch:       runtime.GOARCH,
		Version:    Version,
		System: backend.SystemInfo{
			CPUs:        runtime.NumCPU(),
			MemoryBytes: memTotal(),
			GitVersion:  gitVersion(e.ctx),
		},
	}
	e.log.Debug().Str("backend_url", url).Str("hostname", req.Hostname).Int("cpus", req.System.CPUs).
		Int64("memory_bytes", req.System.MemoryBytes).Str("git_version", req.System.GitVersion).Msg("enrolling")
	resp, err := backend.Enroll(e.ctx, backend.Options{
		URL: url, CAFile: caFile, UserAgent: "courier/" + Version, Logger: e.log,
	}, req)
	if err != nil {
		return enrollError(url, err)
	}

	cfg.Backend = enrolled(resp.AgentID, config.Secret(resp.APIKey))
	if err := config.Save(path, cfg); err != nil {
		// The key exists only in memory now and must not be printed.
		return fmt.Errorf("enrolled as %s, but %w; the enroll code is used up: ask for a new one", resp.AgentID, err)
	}
	saved = true
	if previous.Enrolled() {
		fmt.Fprintf(e.stdout, "replaced the previous enrollment (%s with %s); a running service-run uses the new one once restarted\n", previous.AgentID, previous.URL)
	}
	_, err = fmt.Fprintf(e.stdout, "enrolled with %s as %s; wrote %s\n", url, resp.AgentID, path)
	return err
}

// enrollFlags names the flag behind each config key that enroll sets.
var enrollFlags = map[string]string{"backend.url": "--backend-url", "backend.ca_file": "--ca-file", "backend.allow_http": "--allow-http"}

// flagErrors rewrites the problems Validate found in the keys enroll sets
// in terms of the flags that set them.
func flagErrors(err error) error {
	var msgs []string
	var walk func(error)
	walk = func(err error) {
		if u, ok := err.(interface{ Unwrap() []error }); ok {
			for _, e := range u.Unwrap() {
				walk(e)
			}
			return
		}
		var fe *config.FieldError
		if errors.As(err, &fe) {
			if flag, ok := enrollFlags[fe.Key]; ok {
				msgs = append(msgs, flag+": "+fe.Msg)
				return
			}
		}
		msgs = append(msgs, err.Error())
	}
	walk(err)
	return fmt.Errorf("cannot enroll: %s", strings.Join(msgs, "; "))
}

// enrollError says what went wrong in words a person can act on.
func enrollError(url string, err error) error {
	var be *backend.Error
	if !errors.As(err, &be) {
		return err // before any request: the URL or the CA file
	}
	switch {
	case be.Status == http.StatusUnauthorized || be.Status == http.StatusForbidden:
		return withCode(ExitFailure, fmt.Errorf("enroll code refused (%d, unknown or expired): %s; nothing was written", be.Status, be.Message))
	case be.Status == http.StatusConflict:
		return withCode(ExitFailure, fmt.Errorf("enroll code refused (409, already used): %s; nothing was written", be.Message))
	case be.Status == 0:
		return withCode(ExitTempFail, fmt.Errorf("could not reach the backend at %s: %s; nothing was written", url, be.Message))
	case be.Kind == backend.Retryable:
		return withCode(ExitTempFail, fmt.Errorf("enroll failed, try again later: %w; nothing was written", err))
	}
	return withCode(ExitFailure, fmt.Errorf("enroll failed: %w; nothing was written", err))
}

// enrollService installs and starts the unit. Where that cannot be done
// from here (not root, no systemd) it says what to run instead: the agent
// is enrolled all the same.
func enrollService(c *ucli.Context, e *env) error {
	binary, err := binaryPath("")
	if err != nil {
		return err
	}
	m := serviceManager(c, e.layout.Root)
	opts := service.UnitOptions{Binary: binary, Root: e.layout.Root, User: service.DefaultUser(e.layout.Root)}
	err = m.Install(opts)
	var ue *service.UnavailableError
	switch {
	case errors.As(err, &ue):
		_, err = fmt.Fprintf(e.stdout, "the service was not installed: %v\n", ue)
		return err
	case err != nil:
		return fmt.Errorf("enrolled, but installing the service failed: %w", err)
	}
	_, err = fmt.Fprintf(e.stdout, "installed %s: enabled and running as %s (logs: journalctl -u %s)\n", m.UnitFile(opts), orRoot(opts.User), service.UnitName)
	return err
}

// prepareRoot creates the root folder (0700) if it is missing and checks
// that a file can be created in it, before the enroll code is spent. undo
// removes the folders it created.
func prepareRoot(root string) (undo func(), err error) {
	var created []string
	for d := root; ; d = filepath.Dir(d) {
		if _, err := os.Stat(d); err == nil || !errors.Is(err, fs.ErrNotExist) {
			break
		}
		created = append(created, d)
		if filepath.Dir(d) == d {
			break
		}
	}
	undo = func() {
		for _, d := range created { // deepest first
			_ = os.Remove(d)
		}
	}
	if err := os.MkdirAll(root, 0o700); err != nil {
		undo()
		return nil, fmt.Errorf("cannot create the root folder %s: %w", root, err)
	}
	probe, err := os.CreateTemp(root, ".enroll-probe-*")
	if err != nil {
		undo()
		return nil, fmt.Errorf("cannot write under %s (%w): run enroll as a user who can, or pass another --root", root, err)
	}
	_ = probe.Close()
	_ = os.Remove(probe.Name())
	return undo, nil
}

// memTotal is MemTotal of /proc/meminfo in bytes; 0 where there is none.
func memTotal() int64 {
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		return 0
	}
	defer func() { _ = f.Close() }()
	return parseMemTotal(bufio.NewScanner(f))
}

func parseMemTotal(s *bufio.Scanner) int64 {
	for s.Scan() {
		rest, ok := strings.CutPrefix(s.Text(), "MemTotal:")
		if !ok {
			continue
		}
		f := strings.Fields(rest)
		if len(f) == 0 {
			return 0
		}
		n, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil || n < 0 {
			return 0
		}
		if len(f) > 1 && strings.EqualFold(f[1], "kB") {
			n *= 1024
		}
		return n
	}
	return 0
}

// gitVersion is the version `git --version` prints ("2.39.5"); empty when
// git is absent or says something else.
func gitVersion(ctx context.Context) string {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "git", "--version").Output()
	if err != nil {
		return ""
	}
	rest, ok := strings.CutPrefix(strings.TrimSpace(string(out)), "git version ")
	if !ok {
		return ""
	}
	if f := strings.Fields(rest); len(f) > 0 {
		return f[0]
	}
	return ""
}
