package cli_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"courier/cli"
)

// runBare runs the binary with exactly args (no --root added) and env
// added to the children's environment.
func runBare(t *testing.T, env []string, args ...string) cliResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), cliDeadline)
	defer cancel()
	cmd := exec.CommandContext(ctx, courierBin, args...)
	cmd.Env = append(childEnv(), env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	res := cliResult{stdout: stdout.String(), stderr: stderr.String()}
	var ee *exec.ExitError
	switch {
	case ctx.Err() != nil:
		t.Fatalf("courier %s did not finish within %s", strings.Join(args, " "), cliDeadline)
	case errors.As(err, &ee):
		res.code = ee.ExitCode()
	case err != nil:
		t.Fatalf("courier %s: %v", strings.Join(args, " "), err)
	}
	return res
}

// commandsInHelp lists the commands `courier help` shows, and the
// subcommands of each that has some, as "service install".
func commandsInHelp(t *testing.T) []string {
	t.Helper()
	var out []string
	list := func(args ...string) []string {
		r := runBare(t, nil, append([]string{"help"}, args...)...)
		if r.code != 0 {
			t.Fatalf("courier help %v: %s", args, r)
		}
		_, cmds, ok := strings.Cut(r.stdout, "COMMANDS:\n")
		if !ok {
			return nil
		}
		var names []string
		for _, line := range strings.Split(cmds, "\n") {
			if !strings.HasPrefix(line, "   ") || strings.HasPrefix(line, "    ") {
				break
			}
			name, _, _ := strings.Cut(strings.TrimSpace(line), " ")
			names = append(names, strings.TrimSuffix(name, ","))
		}
		return names
	}
	for _, c := range list() {
		out = append(out, c)
		for _, s := range list(c) {
			out = append(out, c+" "+s)
		}
	}
	return out
}

// Every command and subcommand takes --root, --log-level and --log-format
// after its name as well as before it (PROTOCOL §3), with the same result;
// the one written after the command wins, and COURIER_ROOT still applies
// when no flag is given.
func TestGlobalFlagsBeforeOrAfterTheCommand(t *testing.T) {
	e2e(t)
	dir := t.TempDir()
	syn := writeFile(t, dir, "syn.yaml", "orgs: 1\nrepos_per_org: 1\nitems_per_repo: 5\n")
	key := strings.Repeat("a", 32)
	noSystemd := filepath.Join(dir, "no-systemd")
	// Each command with arguments that need no running service; what it
	// does with the root shows in its output or on disk.
	cases := map[string][]string{
		"init":                {},
		"service-run":         {"--listen", "127.0.0.1:0"}, // no config.yaml: exits 78 naming it
		"service install":     {"--unit-dir", filepath.Join(dir, "units"), "--systemd-dir", noSystemd},
		"service uninstall":   {"--unit-dir", filepath.Join(dir, "units"), "--systemd-dir", noSystemd},
		"service status":      {"--unit-dir", filepath.Join(dir, "units"), "--systemd-dir", noSystemd},
		"enroll":              {"NO-SUCH-CODE", "--backend-url", "http://127.0.0.1:9", "--no-service"},
		"export":              {"--integration", "synthetic", "--config", syn},
		"validate-config":     {"--integration", "synthetic", "--config", syn},
		"export-onboard-data": {"--integration", "synthetic", "--config", syn, "--object-type", "repos", "--output", "-"},
		"send":                {"-k", key, "-t", "trigger", "-d", "disk full"},
		"status":              {},
		"retry":               {},
		"queue":               {},
		"queue ls":            {},
		"queue show":          {"1", "-k", key},
		"queue purge":         {"--all", "--yes"},
		"version":             {},
		"help":                {"init"},
		"service":             {},
	}
	for _, c := range commandsInHelp(t) {
		if _, ok := cases[c]; !ok {
			t.Errorf("command %q is not covered by this test: add it to cases", c)
		}
	}
	globals := func(root string) []string {
		return []string{"--root", root, "--log-level", "debug", "--log-format", "json"}
	}
	for name, args := range cases {
		t.Run(strings.ReplaceAll(name, " ", "_"), func(t *testing.T) {
			cmd := strings.Fields(name)
			before := filepath.Join(t.TempDir(), "before")
			after := filepath.Join(t.TempDir(), "after")
			rb := runBare(t, nil, slices.Concat(globals(before), cmd, args)...)
			ra := runBare(t, nil, slices.Concat(cmd, args, globals(after))...)
			// Debug lines depend on scheduling (a dead letter at shutdown,
			// say): compare the rest, and that both runs logged at debug.
			debug := regexp.MustCompile(`(?m)^.*"level":"debug".*$`)
			if debug.MatchString(rb.stderr) != debug.MatchString(ra.stderr) {
				t.Fatalf("courier %s: --log-level debug honoured only on one side\nbefore: %s\nafter: %s", name, rb, ra)
			}
			norm := func(s, root string) string {
				s = debug.ReplaceAllString(s, "")
				s = strings.ReplaceAll(s, root, "ROOT")
				// Times, durations, ids and pids differ from run to run.
				s = regexp.MustCompile(`"(time|id)":"[^"]*"|[0-9]+(\.[0-9]+)?(ms|µs|s)\b|manual-[0-9]+|"(pid|took|took_ms|duration_ms)":[0-9.]+`).ReplaceAllString(s, "")
				return strings.Join(strings.Fields(s), " ")
			}
			if rb.code != ra.code || norm(rb.stdout, before) != norm(ra.stdout, after) || norm(rb.stderr, before) != norm(ra.stderr, after) {
				t.Fatalf("courier %s: flags before and after the command differ\nbefore: %s\nafter: %s", name, rb, ra)
			}
			if rb.code == cli.ExitUsage {
				t.Fatalf("courier %s: usage error: %s", name, rb)
			}
			// The root was used: named in the output, or written to.
			if !strings.Contains(ra.stdout+ra.stderr, after) {
				if _, err := os.Stat(after); err != nil && !slices.Contains([]string{"version", "help", "service", "queue", "enroll", "service uninstall"}, name) {
					t.Fatalf("courier %s --root %s: the root is neither named nor created: %s", name, after, ra)
				}
			}
			if ra.stderr != "" && name != "help" && name != "version" && name != "service" && name != "queue" {
				// --log-format json after the command: every log line is JSON.
				for _, line := range strings.Split(strings.TrimSpace(ra.stderr), "\n") {
					if strings.HasPrefix(line, "{") || strings.HasPrefix(line, "courier: ") {
						continue
					}
					t.Fatalf("courier %s --log-format json: a log line is not JSON: %q\n%s", name, line, ra)
				}
			}
		})
	}

	t.Run("precedence", func(t *testing.T) {
		env, a, b := filepath.Join(dir, "env"), filepath.Join(dir, "a"), filepath.Join(dir, "b")
		if r := runBare(t, []string{"COURIER_ROOT=" + env}, "init"); r.code != 0 || !strings.Contains(r.stdout, env) {
			t.Fatalf("COURIER_ROOT alone: %s", r)
		}
		if r := runBare(t, []string{"COURIER_ROOT=" + env}, "--root", a, "init"); r.code != 0 || !strings.Contains(r.stdout, a) {
			t.Fatalf("--root before the command beats COURIER_ROOT: %s", r)
		}
		if r := runBare(t, []string{"COURIER_ROOT=" + env}, "--root", env, "init", "--root", b); r.code != 0 || !strings.Contains(r.stdout, b) {
			t.Fatalf("--root after the command beats the one before: %s", r)
		}
	})
}

// Bad usage answers in one line with exit 2: unknown commands and flags with
// a guess, flags named as typed (--key, not -key), missing required flags.
func TestUsageErrors(t *testing.T) {
	root := e2e(t)
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"statu"}, `unknown command "statu" for courier; did you mean "status"?`},
		{[]string{"help", "statu"}, `unknown command "statu" for courier; did you mean "status"?`},
		{[]string{"service", "instal"}, `unknown command "instal" for courier service; did you mean "install"?`},
		{[]string{"help", "service", "unistall"}, `did you mean "uninstall"?`},
		{[]string{"send", "--key", "x", "-t", "trigger"}, "unknown flag --key for courier send; did you mean --routing-key?"},
		{[]string{"init", "--forse"}, "unknown flag --forse for courier init; did you mean --force?"},
		{[]string{"--rot", "x", "init"}, "unknown flag --rot for courier; did you mean --root?"},
		{[]string{"send", "-k"}, "flag -k needs a value"},
		// -t is checked after -k: --change needs no event type.
		{[]string{"send"}, "missing flag --routing-key (-k) (courier send --help shows the flags)"},
		{[]string{"send", "-k", strings.Repeat("a", 32)}, "missing flag --event-type (-t)"},
		{[]string{"export-onboard-data", "-i", "synthetic"}, "missing flags --object-type, --output (-o)"},
		{[]string{"dev-backend"}, "missing flag --dir"},
		{[]string{"enroll", "CODE", "--backend-ur", "http://x"}, "did you mean --backend-url?"},
	}
	for _, c := range cases {
		r := runCourier(t, root, c.args...)
		lines := strings.Split(strings.TrimSpace(r.stderr), "\n")
		if r.code != cli.ExitUsage || !strings.Contains(r.stderr, c.want) || len(lines) != 1 || r.stdout != "" {
			t.Errorf("courier %s: want exit 2 and one line with %q; %s", strings.Join(c.args, " "), c.want, r)
		}
	}
	// Help is an answer, not an error.
	for _, args := range [][]string{{"help"}, {"help", "init"}, {"help", "service", "install"}, {"init", "--help"}, {"service"}, {}} {
		r := runCourier(t, root, args...)
		if r.code != 0 || !strings.Contains(r.stdout, "USAGE:") {
			t.Errorf("courier %s: want help and exit 0; %s", strings.Join(args, " "), r)
		}
	}
	if r := runCourier(t, root, "help", "send"); !strings.Contains(r.stdout, "--routing-key value, -k value") || !strings.Contains(r.stdout, "(required)") {
		t.Errorf("courier help send shows the flags as typed, required ones marked: %s", r)
	}
}
