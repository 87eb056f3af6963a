package cli_test

// End-to-end tests of `courier service install|uninstall|status`. They
// never touch the real system: the hidden --systemd-dir and --unit-dir
// flags point the binary at temporary folders, and a fake systemctl on
// PATH records what it was asked.

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// fakeSystemd is a systemd made of temporary folders and a systemctl
// script.
type fakeSystemd struct {
	runDir  string // --systemd-dir: exists, as /run/systemd/system does under systemd
	unitDir string // --unit-dir
	pkgDir  string // --package-unit-dir: where a deb or rpm puts the unit
	log     string // one line per systemctl call
}

// newFakeSystemd puts a fake systemctl first on PATH for the rest of the
// test. Its `show` answers as systemd does for a running unit.
func newFakeSystemd(t *testing.T) *fakeSystemd {
	t.Helper()
	dir := t.TempDir()
	f := &fakeSystemd{
		runDir:  filepath.Join(dir, "run", "systemd", "system"),
		unitDir: filepath.Join(dir, "etc", "systemd", "system"),
		pkgDir:  filepath.Join(dir, "usr", "lib", "systemd", "system"),
		log:     filepath.Join(dir, "systemctl.log"),
	}
	bin := filepath.Join(dir, "bin")
	for _, d := range []string{f.runDir, f.unitDir, f.pkgDir, bin} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	script := "#!/bin/sh\n" +
		"echo \"$*\" >> '" + f.log + "'\n" +
		"case \"$1\" in show) printf 'LoadState=loaded\\nActiveState=active\\nSubState=running\\nUnitFileState=enabled\\nMainPID=4242\\nNRestarts=0\\n' ;; esac\n"
	if err := os.WriteFile(filepath.Join(bin, "systemctl"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", bin+string(os.PathListSeparator)+os.Getenv("PATH"))
	return f
}

// flags point a service command at the fake.
func (f *fakeSystemd) flags() []string {
	return []string{"--systemd-dir", f.runDir, "--unit-dir", f.unitDir, "--package-unit-dir", f.pkgDir}
}

func (f *fakeSystemd) calls(t *testing.T) []string {
	t.Helper()
	b, err := os.ReadFile(f.log)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	return strings.Split(strings.TrimSpace(string(b)), "\n")
}

func (f *fakeSystemd) unit() string { return filepath.Join(f.unitDir, "courier.service") }

// noSystemd is the flag of a machine where systemd is not running.
func noSystemd(t *testing.T) []string {
	return []string{"--systemd-dir", filepath.Join(t.TempDir(), "no-systemd")}
}

func TestServiceInstallNeedsConfig(t *testing.T) {
	root := e2e(t)
	f := newFakeSystemd(t)
	r := runCourier(t, root, append([]string{"service", "install"}, f.flags()...)...)
	if r.code != 78 || !strings.Contains(r.stderr, "config.yaml does not exist") || !strings.Contains(r.stderr, "enroll CODE --backend-url URL") {
		t.Errorf("install without config.yaml: want exit 78 saying to enroll or init first; %s", r)
	}
	if calls := f.calls(t); len(calls) != 0 {
		t.Errorf("ran systemctl %q", calls)
	}
}

func TestServiceWithoutSystemd(t *testing.T) {
	root := e2e(t)
	initRoot(t, root)
	for _, cmd := range []string{"install", "uninstall", "status"} {
		r := runCourier(t, root, append([]string{"service", cmd}, noSystemd(t)...)...)
		if r.code != 69 || !strings.Contains(r.stderr, "systemd is not running here") {
			t.Errorf("service %s without systemd: want exit 69 saying systemd is not running; %s", cmd, r)
		}
		if cmd == "install" {
			want := courierBin + " --root " + root + " --log-format json service-run"
			if !strings.Contains(r.stderr, "`"+want+"` under your own supervisor") {
				t.Errorf("install without systemd does not say to run %q under a supervisor:\n%s", want, r.stderr)
			}
		}
	}
}

func TestServiceInstallStatusUninstall(t *testing.T) {
	root := e2e(t)
	initRoot(t, root)
	f := newFakeSystemd(t)
	r := runCourier(t, root, append([]string{"service", "install"}, f.flags()...)...)
	if os.Geteuid() != 0 {
		if r.code != 69 || !strings.Contains(r.stderr, "not running as root: run `sudo "+courierBin+" --root "+root+" service install") {
			t.Errorf("install as a user: want exit 69 and the sudo command; %s", r)
		}
		if _, err := os.Stat(f.unit()); err == nil {
			t.Error("wrote the unit without root")
		}
		return
	}
	if r.code != 0 {
		t.Fatalf("service install: %s", r)
	}
	unit, err := os.ReadFile(f.unit())
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"\nExecStart=" + courierBin + " --root " + root + " --log-format json service-run\n",
		"\nReadWritePaths=" + root + "\n",
		"\nType=notify\n",
	} {
		if !strings.Contains(string(unit), want) {
			t.Errorf("unit lacks %q:\n%s", want, unit)
		}
	}
	if got, want := strings.Join(f.calls(t), "; "), "daemon-reload; enable courier.service; restart courier.service"; got != want {
		t.Errorf("systemctl calls: %s, want %s", got, want)
	}
	if !strings.Contains(r.stdout, "installed "+f.unit()) {
		t.Errorf("install printed:\n%s", r.stdout)
	}

	r = runCourier(t, root, append([]string{"service", "status"}, f.flags()...)...)
	if r.code != 0 || !strings.Contains(r.stdout, "courier.service: active (running), enabled") || !strings.Contains(r.stdout, "4242") {
		t.Errorf("service status: %s", r)
	}

	r = runCourier(t, root, append([]string{"service", "uninstall"}, f.flags()...)...)
	if r.code != 0 {
		t.Fatalf("service uninstall: %s", r)
	}
	if _, err := os.Stat(f.unit()); !os.IsNotExist(err) {
		t.Errorf("the unit is still there: %v", err)
	}
	if _, err := os.Stat(filepath.Join(root, "config.yaml")); err != nil {
		t.Errorf("uninstall removed the root's config: %v", err)
	}
	r = runCourier(t, root, append([]string{"service", "uninstall"}, f.flags()...)...)
	if r.code != 0 || !strings.Contains(r.stdout, "not installed") {
		t.Errorf("second uninstall: want exit 0 and 'not installed'; %s", r)
	}
}

// TestServicePackagedUnit: the deb and rpm packages ship what `service
// unit` prints; `service install` (and so `enroll`) then uses the packaged
// unit instead of writing a copy to /etc that would shadow it, and
// `service uninstall` stops and disables it but leaves it to the package.
func TestServicePackagedUnit(t *testing.T) {
	root := e2e(t)
	initRoot(t, root)
	f := newFakeSystemd(t)
	r := runCourier(t, root, "service", "unit", "--binary", courierBin)
	if r.code != 0 || !strings.Contains(r.stdout, "\nExecStart="+courierBin+" --root "+root+" --log-format json service-run\n") {
		t.Fatalf("service unit: %s", r)
	}
	packaged := filepath.Join(f.pkgDir, "courier.service")
	if err := os.WriteFile(packaged, []byte(r.stdout), 0o644); err != nil {
		t.Fatal(err)
	}
	if r := runCourier(t, root, "service", "unit", "--user", "Not A User"); r.code != 2 || !strings.Contains(r.stderr, "not a valid user name") {
		t.Errorf("service unit --user 'Not A User': want exit 2 naming the user; %s", r)
	}
	if os.Geteuid() != 0 {
		t.Skip("installing needs root; CI runs as root")
	}
	r = runCourier(t, root, append([]string{"service", "install"}, f.flags()...)...)
	if r.code != 0 || !strings.Contains(r.stdout, "installed "+packaged) {
		t.Fatalf("service install with a packaged unit: want exit 0 naming %s; %s", packaged, r)
	}
	if _, err := os.Stat(f.unit()); !os.IsNotExist(err) {
		t.Errorf("wrote %s next to the packaged unit (%v)", f.unit(), err)
	}
	r = runCourier(t, root, append([]string{"service", "uninstall"}, f.flags()...)...)
	if r.code != 0 || !strings.Contains(r.stdout, "belongs to the courier package") {
		t.Errorf("service uninstall of the packaged unit: %s", r)
	}
	if got, want := strings.Join(f.calls(t), "; "), "daemon-reload; enable courier.service; restart courier.service; disable --now courier.service"; got != want {
		t.Errorf("systemctl calls: %s, want %s", got, want)
	}
	if _, err := os.Stat(packaged); err != nil {
		t.Errorf("the packaged unit is gone: %v", err)
	}
}

func TestServiceUsage(t *testing.T) {
	root := e2e(t)
	for _, args := range [][]string{
		{"service", "install", "extra"},
		{"service", "status", "extra"},
		{"service", "install", "--no-such-flag"},
	} {
		if r := runCourier(t, root, args...); r.code != 2 {
			t.Errorf("courier %s: want exit 2 (usage); %s", strings.Join(args, " "), r)
		}
	}
}
