package cli_test

// End-to-end tests of `courier enroll` against the reference backend
// (backend/devserver) on a real 127.0.0.1 listener.

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"courier/backend/devserver"
	"courier/backend/devserver/devservertest"
)

// backendConfig reads the backend section and two other keys of
// config.yaml.
type enrolledConfig struct {
	Backend struct {
		URL     string `yaml:"url"`
		AgentID string `yaml:"agent_id"`
		APIKey  string `yaml:"api_key"`
		CAFile  string `yaml:"ca_file"`
	} `yaml:"backend"`
	Listen     string `yaml:"listen"`
	LocalToken string `yaml:"local_token"`
}

func readEnrolled(t *testing.T, root string) (enrolledConfig, []byte) {
	t.Helper()
	path := filepath.Join(root, "config.yaml")
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var c enrolledConfig
	if err := yaml.Unmarshal(raw, &c); err != nil {
		t.Fatalf("config.yaml: %v", err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("config.yaml has mode %04o, want 0600", fi.Mode().Perm())
	}
	return c, raw
}

func agents(t *testing.T, f *devservertest.Fixture) []devserver.Agent {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), cliDeadline)
	defer cancel()
	a, err := f.Admin.Agents(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// noKey fails when the API key shows in what courier printed.
func noKey(t *testing.T, r cliResult, key string) {
	t.Helper()
	if key != "" && (strings.Contains(r.stdout, key) || strings.Contains(r.stderr, key)) {
		t.Errorf("courier printed the API key:\n%s", r)
	}
}

func TestEnrollGoodCodeThenUsedCode(t *testing.T) {
	root := e2e(t)
	be := devservertest.Start(t, devserver.Options{})
	code := be.EnrollCode(t)

	r := runCourier(t, root, "--log-level", "debug", "enroll", code, "--backend-url", be.URL, "--no-service")
	if r.code != 0 {
		t.Fatalf("enroll: %s", r)
	}
	c, first := readEnrolled(t, root)
	if c.Backend.URL != be.URL || !strings.HasPrefix(c.Backend.AgentID, "agt_") || c.Backend.APIKey == "" {
		t.Errorf("config.yaml backend = %+v, want url %s, an agent id and an API key", c.Backend, be.URL)
	}
	if len(c.LocalToken) < 16 {
		t.Errorf("a new config.yaml has local_token %q, want a fresh token", c.LocalToken)
	}
	noKey(t, r, c.Backend.APIKey)
	if !strings.Contains(r.stdout, c.Backend.AgentID) {
		t.Errorf("enroll does not print the agent id:\n%s", r.stdout)
	}

	// What the agent said about itself.
	as := agents(t, be)
	if len(as) != 1 || as[0].ID != c.Backend.AgentID {
		t.Fatalf("backend agents = %+v, want one, %s", as, c.Backend.AgentID)
	}
	a := as[0]
	host, _ := os.Hostname()
	if a.Hostname != host || a.OS != runtime.GOOS || a.Arch != runtime.GOARCH || a.Version == "" ||
		a.System.CPUs < 1 || a.System.MemoryBytes < 1<<20 || !strings.HasPrefix(a.UserAgent, "courier/") {
		t.Errorf("enrolled agent = %+v", a)
	}
	if out, err := exec.Command("git", "--version").Output(); err == nil {
		if !strings.Contains(string(out), a.System.GitVersion) || a.System.GitVersion == "" {
			t.Errorf("git_version %q, but git says %q", a.System.GitVersion, out)
		}
	}

	// The same code again: 409, and config.yaml stays as it was.
	r = runCourier(t, root, "enroll", code, "--backend-url", be.URL, "--no-service")
	if r.code == 0 || !strings.Contains(r.stderr, "409") || !strings.Contains(r.stderr, "used") {
		t.Errorf("second enroll with the same code: want non-zero exit saying the code was used; %s", r)
	}
	if _, again := readEnrolled(t, root); string(again) != string(first) {
		t.Errorf("a refused enroll changed config.yaml:\n%s\nwas:\n%s", again, first)
	}
	noKey(t, r, c.Backend.APIKey)

	// A fresh code re-enrolls: new credentials, and it says what it replaced.
	r = runCourier(t, root, "enroll", be.EnrollCode(t), "--backend-url", be.URL, "--no-service")
	if r.code != 0 {
		t.Fatalf("re-enroll: %s", r)
	}
	c2, _ := readEnrolled(t, root)
	if c2.Backend.AgentID == c.Backend.AgentID || c2.Backend.APIKey == c.Backend.APIKey || c2.LocalToken != c.LocalToken {
		t.Errorf("re-enroll: agent %s → %s, local token kept %v", c.Backend.AgentID, c2.Backend.AgentID, c2.LocalToken == c.LocalToken)
	}
	if !strings.Contains(r.stdout, "replaced the previous enrollment ("+c.Backend.AgentID) {
		t.Errorf("re-enroll does not say what it replaced:\n%s", r.stdout)
	}
	noKey(t, r, c2.Backend.APIKey)
}

func TestEnrollBadCodeWritesNothing(t *testing.T) {
	root := e2e(t)
	be := devservertest.Start(t, devserver.Options{})
	r := runCourier(t, root, "enroll", "NOT-A-CODE", "--backend-url", be.URL, "--no-service")
	if r.code == 0 || !strings.Contains(r.stderr, "refused") || !strings.Contains(r.stderr, "not known") {
		t.Errorf("enroll with an unknown code: want non-zero exit with the backend's reason; %s", r)
	}
	if _, err := os.Stat(root); !os.IsNotExist(err) {
		t.Errorf("a refused enroll left the root folder behind: %v", err)
	}
	if n := len(agents(t, be)); n != 0 {
		t.Errorf("backend has %d agents", n)
	}
}

func TestEnrollKeepsOtherSettings(t *testing.T) {
	root := e2e(t)
	initRoot(t, root)
	editConfig(t, root, map[string]any{"listen": "127.0.0.1:9797", "queue.linger": "1s"})
	before, _ := readEnrolled(t, root)
	be := devservertest.Start(t, devserver.Options{})
	// Flags before the code work as well as after it.
	r := runCourier(t, root, "enroll", "--no-service", "--backend-url", be.URL, be.EnrollCode(t))
	if r.code != 0 {
		t.Fatalf("enroll: %s", r)
	}
	after, raw := readEnrolled(t, root)
	if after.Listen != "127.0.0.1:9797" || after.LocalToken != before.LocalToken || !strings.Contains(string(raw), "linger: 1s") {
		t.Errorf("enroll lost settings of the existing config.yaml:\n%s", raw)
	}
	if after.Backend.AgentID == "" {
		t.Errorf("not enrolled:\n%s", raw)
	}
}

func TestEnrollUnreachable(t *testing.T) {
	root := e2e(t)
	be := devservertest.Start(t, devserver.Options{})
	url := be.URL
	be.Stop() // nothing listens there any more
	r := runCourier(t, root, "enroll", "ABC-123", "--backend-url", url, "--no-service")
	if r.code == 0 || !strings.Contains(r.stderr, "could not reach the backend at "+url) {
		t.Errorf("enroll with the backend down: want non-zero exit saying it could not be reached; %s", r)
	}
	if _, err := os.Stat(root); !os.IsNotExist(err) {
		t.Errorf("a failed enroll left the root folder behind: %v", err)
	}
}

func TestEnrollUsage(t *testing.T) {
	root := e2e(t)
	for _, args := range [][]string{
		{"enroll", "--backend-url", "http://127.0.0.1:1"},           // no code
		{"enroll", "A", "B", "--backend-url", "http://127.0.0.1:1"}, // two codes
		{"enroll", "ABC-123"}, // no URL
		{"enroll", "ABC-123", "--backend-url", "ftp://example.com"},
		{"enroll", "ABC-123", "--backend-url"},
		{"enroll", "ABC-123", "--backend-url", "http://127.0.0.1:1", "--bogus"},
	} {
		r := runCourier(t, root, args...)
		if r.code != 2 {
			t.Errorf("courier %s: want exit 2 (usage); %s", strings.Join(args, " "), r)
		}
		if _, err := os.Stat(root); !os.IsNotExist(err) {
			t.Fatalf("courier %s left the root folder behind", strings.Join(args, " "))
		}
	}
	// A bad value is reported against its flag, not its config key.
	r := runCourier(t, root, "enroll", "ABC-123", "--backend-url", "ftp://example.com", "--ca-file", "/dev/null")
	for _, want := range []string{"--backend-url: must be an http or https URL", "--ca-file: "} {
		if !strings.Contains(r.stderr, want) {
			t.Errorf("want %q in:\n%s", want, r.stderr)
		}
	}
}

// TestEnrollService: without --no-service, enroll installs the unit, or
// says what to run instead and still exits 0.
func TestEnrollService(t *testing.T) {
	be := devservertest.Start(t, devserver.Options{})

	t.Run("no systemd", func(t *testing.T) {
		root := e2e(t)
		r := runCourier(t, root, append([]string{"enroll", be.EnrollCode(t), "--backend-url", be.URL}, noSystemd(t)...)...)
		if r.code != 0 {
			t.Fatalf("enroll: %s", r)
		}
		want := "systemd is not running here: start `" + courierBin + " --root " + root + " --log-format json service-run` under your own supervisor"
		if !strings.Contains(r.stdout, want) {
			t.Errorf("enroll without systemd does not say what to run; want %q in:\n%s", want, r.stdout)
		}
		c, _ := readEnrolled(t, root)
		noKey(t, r, c.Backend.APIKey)
	})

	t.Run("systemd", func(t *testing.T) {
		root := e2e(t)
		f := newFakeSystemd(t)
		r := runCourier(t, root, append([]string{"enroll", be.EnrollCode(t), "--backend-url", be.URL}, f.flags()...)...)
		if r.code != 0 {
			t.Fatalf("enroll: %s", r)
		}
		if os.Geteuid() != 0 {
			if !strings.Contains(r.stdout, "not running as root: run `sudo "+courierBin+" --root "+root+" service install") {
				t.Errorf("enroll as a user does not give the sudo command:\n%s", r.stdout)
			}
			return
		}
		unit, err := os.ReadFile(f.unit())
		if err != nil {
			t.Fatalf("no unit installed: %v\n%s", err, r)
		}
		if !strings.Contains(string(unit), "--root "+root+" --log-format json service-run") {
			t.Errorf("unit:\n%s", unit)
		}
		if got := strings.Join(f.calls(t), "; "); got != "daemon-reload; enable courier.service; restart courier.service" {
			t.Errorf("systemctl calls: %s", got)
		}
	})

	t.Run("no-service", func(t *testing.T) {
		root := e2e(t)
		f := newFakeSystemd(t)
		r := runCourier(t, root, append([]string{"enroll", be.EnrollCode(t), "--backend-url", be.URL, "--no-service"}, f.flags()...)...)
		if r.code != 0 {
			t.Fatalf("enroll: %s", r)
		}
		if calls := f.calls(t); len(calls) != 0 {
			t.Errorf("--no-service ran systemctl %q", calls)
		}
		if _, err := os.Stat(f.unit()); err == nil {
			t.Error("--no-service installed the unit")
		}
	})
}
