package service

import (
	"context"
	"errors"
	"os"
	"os/user"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// fakeSystem is a Manager wired to temporary folders and a recording
// systemctl.
type fakeSystem struct {
	m       *Manager
	unitDir string
	mu      sync.Mutex
	calls   [][]string
	answer  func(args []string) ([]byte, error)
	binary  string
	tmp     string
	euid    int
}

func newFakeSystem(t *testing.T) *fakeSystem {
	t.Helper()
	tmp := t.TempDir()
	f := &fakeSystem{tmp: tmp, unitDir: filepath.Join(tmp, "etc", "systemd", "system")}
	for _, d := range []string{f.unitDir, filepath.Join(tmp, "run", "systemd", "system")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	f.binary = filepath.Join(tmp, "bin", "courier")
	if err := os.MkdirAll(filepath.Dir(f.binary), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(f.binary, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	f.m = &Manager{
		UnitDir:         f.unitDir,
		SystemdDir:      filepath.Join(tmp, "run", "systemd", "system"),
		Euid:            func() int { return f.euid },
		Self:            "/usr/local/bin/courier",
		PackageUnitDirs: []string{filepath.Join(tmp, "usr", "lib", "systemd", "system")},
		Run: func(_ context.Context, name string, args ...string) ([]byte, error) {
			if name != "systemctl" {
				t.Errorf("ran %s, want systemctl", name)
			}
			f.mu.Lock()
			f.calls = append(f.calls, args)
			answer := f.answer
			f.mu.Unlock()
			if answer != nil {
				return answer(args)
			}
			return nil, nil
		},
	}
	return f
}

func (f *fakeSystem) noSystemd(t *testing.T) {
	t.Helper()
	if err := os.RemoveAll(f.m.SystemdDir); err != nil {
		t.Fatal(err)
	}
}

func (f *fakeSystem) ran() [][]string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls
}

func TestInstall(t *testing.T) {
	f := newFakeSystem(t)
	root := filepath.Join(f.tmp, "srv", "courier")
	if err := f.m.Install(UnitOptions{Binary: f.binary, Root: root}); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(f.unitDir, UnitName)
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	want, _ := Render(UnitOptions{Binary: f.binary, Root: root})
	if string(got) != string(want) {
		t.Errorf("unit file:\n%s\nwant:\n%s", got, want)
	}
	fi, _ := os.Stat(path)
	if fi.Mode().Perm() != 0o644 {
		t.Errorf("unit file mode %04o, want 0644", fi.Mode().Perm())
	}
	if fi, err := os.Stat(root); err != nil || !fi.IsDir() || fi.Mode().Perm() != 0o700 {
		t.Errorf("root folder not created 0700: %v %v", fi, err)
	}
	wantCalls := [][]string{{"daemon-reload"}, {"enable", UnitName}, {"restart", UnitName}}
	if !reflect.DeepEqual(f.ran(), wantCalls) {
		t.Errorf("systemctl calls %q, want %q", f.ran(), wantCalls)
	}
	// No temporary files left next to the unit.
	if ents, _ := os.ReadDir(f.unitDir); len(ents) != 1 {
		t.Errorf("unit folder holds %d entries, want 1", len(ents))
	}
}

// TestInstallPackagedUnit: after the deb or rpm package put the same unit
// in the distribution's unit folder, `courier enroll` (which installs the
// unit) uses that one: a copy in /etc would shadow it and outlive the
// package's removal.
func TestInstallPackagedUnit(t *testing.T) {
	f := newFakeSystem(t)
	opts := UnitOptions{Binary: f.binary, Root: StateRoot, User: "courier"}
	unit, err := Render(opts)
	if err != nil {
		t.Fatal(err)
	}
	pkgDir := f.m.PackageUnitDirs[0]
	if err := os.MkdirAll(pkgDir, 0o755); err != nil {
		t.Fatal(err)
	}
	packaged := filepath.Join(pkgDir, UnitName)
	if err := os.WriteFile(packaged, unit, 0o644); err != nil {
		t.Fatal(err)
	}
	// An older copy from `courier service install` before the package.
	if err := os.WriteFile(f.m.UnitPath(), []byte("[Service]\nExecStart=/usr/local/bin/courier\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := f.m.Install(opts); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(f.m.UnitPath()); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("%s still there (%v): it shadows the packaged unit", f.m.UnitPath(), err)
	}
	if got := f.m.UnitFile(opts); got != packaged {
		t.Errorf("UnitFile = %s, want the packaged %s", got, packaged)
	}
	wantCalls := [][]string{{"daemon-reload"}, {"enable", UnitName}, {"restart", UnitName}}
	if !reflect.DeepEqual(f.ran(), wantCalls) {
		t.Errorf("systemctl calls %q, want %q", f.ran(), wantCalls)
	}

	// Another root is another unit: written to UnitDir as before.
	other := UnitOptions{Binary: f.binary, Root: filepath.Join(f.tmp, "srv"), User: ""}
	if err := f.m.Install(other); err != nil {
		t.Fatal(err)
	}
	if got := f.m.UnitFile(other); got != f.m.UnitPath() {
		t.Errorf("UnitFile = %s, want %s", got, f.m.UnitPath())
	}
	if _, err := os.Stat(f.m.UnitPath()); err != nil {
		t.Errorf("the unit for another root was not written: %v", err)
	}

	// Uninstall removes its own unit; the packaged one stays, and the
	// next uninstall stops and disables it and says who owns it.
	if err := f.m.Uninstall(); err != nil {
		t.Fatal(err)
	}
	f.calls = nil
	err = f.m.Uninstall()
	if !errors.Is(err, ErrPackaged) || !strings.Contains(err.Error(), packaged) {
		t.Errorf("Uninstall with only the packaged unit: %v, want ErrPackaged naming %s", err, packaged)
	}
	if want := [][]string{{"disable", "--now", UnitName}}; !reflect.DeepEqual(f.ran(), want) {
		t.Errorf("systemctl calls %q, want %q", f.ran(), want)
	}
	if _, err := os.Stat(packaged); err != nil {
		t.Errorf("the packaged unit was removed: %v", err)
	}
}

func TestInstallRestartFails(t *testing.T) {
	f := newFakeSystem(t)
	f.answer = func(args []string) ([]byte, error) {
		if args[0] == "restart" {
			return []byte("Job for courier.service failed because the control process exited with error code."), errors.New("exit status 1")
		}
		return nil, nil
	}
	err := f.m.Install(UnitOptions{Binary: f.binary, Root: filepath.Join(f.tmp, "root")})
	if err == nil || !strings.Contains(err.Error(), "Job for courier.service failed") || !strings.Contains(err.Error(), "journalctl -u courier.service") {
		t.Fatalf("err = %v, want systemctl's message and a journalctl hint", err)
	}
}

func TestInstallRefusesMissingBinary(t *testing.T) {
	f := newFakeSystem(t)
	err := f.m.Install(UnitOptions{Binary: filepath.Join(f.tmp, "nope"), Root: filepath.Join(f.tmp, "root")})
	if err == nil {
		t.Fatal("installed a unit for a binary that does not exist")
	}
	if len(f.ran()) != 0 {
		t.Errorf("ran systemctl %q", f.ran())
	}
	if _, err := os.Stat(filepath.Join(f.unitDir, UnitName)); err == nil {
		t.Error("wrote the unit")
	}
}

func TestUnavailable(t *testing.T) {
	opts := UnitOptions{Binary: "/opt/courier tools/courier", Root: "/srv/courier"}
	t.Run("not root", func(t *testing.T) {
		f := newFakeSystem(t)
		f.euid = 1000
		f.m.Root = "/srv/courier"
		for name, err := range map[string]error{
			"install":   f.m.Install(opts),
			"uninstall": f.m.Uninstall(),
		} {
			var ue *UnavailableError
			if !errors.As(err, &ue) || ue.Reason != NotRoot {
				t.Errorf("%s: err = %v, want an UnavailableError NotRoot", name, err)
				continue
			}
			t.Logf("%s: %v", name, err)
		}
		err := f.m.Install(opts)
		if want := "not running as root: run `sudo '/opt/courier tools/courier' --root /srv/courier service install`"; err.Error() != want {
			t.Errorf("install:\n got %s\nwant %s", err, want)
		}
		if err := f.m.Uninstall(); !strings.Contains(err.Error(), "`sudo /usr/local/bin/courier --root /srv/courier service uninstall`") {
			t.Errorf("uninstall: %v", err)
		}
		if len(f.ran()) != 0 {
			t.Errorf("ran systemctl %q", f.ran())
		}
	})
	t.Run("no systemd", func(t *testing.T) {
		f := newFakeSystem(t)
		f.noSystemd(t)
		_, statusErr := f.m.Status()
		for name, err := range map[string]error{
			"install":   f.m.Install(opts),
			"uninstall": f.m.Uninstall(),
			"status":    statusErr,
		} {
			var ue *UnavailableError
			if !errors.As(err, &ue) || ue.Reason != NoSystemd {
				t.Errorf("%s: err = %v, want an UnavailableError NoSystemd", name, err)
				continue
			}
			t.Logf("%s: %v", name, err)
		}
		err := f.m.Install(opts)
		if want := "systemd is not running here: start `'/opt/courier tools/courier' --root /srv/courier --log-format json service-run` under your own supervisor"; !strings.HasPrefix(err.Error(), want) {
			t.Errorf("install:\n got %s\nwant %s...", err, want)
		}
		if len(f.ran()) != 0 {
			t.Errorf("ran systemctl %q", f.ran())
		}
	})
}

func TestUninstall(t *testing.T) {
	f := newFakeSystem(t)
	if err := f.m.Uninstall(); !errors.Is(err, ErrNotInstalled) {
		t.Fatalf("uninstall without a unit: %v, want ErrNotInstalled", err)
	}
	if err := f.m.Install(UnitOptions{Binary: f.binary, Root: filepath.Join(f.tmp, "root")}); err != nil {
		t.Fatal(err)
	}
	f.calls = nil
	if err := f.m.Uninstall(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(f.unitDir, UnitName)); !os.IsNotExist(err) {
		t.Errorf("unit file still there: %v", err)
	}
	if _, err := os.Stat(filepath.Join(f.tmp, "root")); err != nil {
		t.Errorf("uninstall touched the root folder: %v", err)
	}
	want := [][]string{{"disable", "--now", UnitName}, {"daemon-reload"}, {"reset-failed", UnitName}}
	if !reflect.DeepEqual(f.ran(), want) {
		t.Errorf("systemctl calls %q, want %q", f.ran(), want)
	}
}

func TestUninstallStopFails(t *testing.T) {
	f := newFakeSystem(t)
	if err := os.WriteFile(filepath.Join(f.unitDir, UnitName), []byte("[Unit]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	f.answer = func(args []string) ([]byte, error) {
		if args[0] == "disable" {
			return []byte("Failed to stop courier.service: Connection timed out"), errors.New("exit status 1")
		}
		return nil, nil
	}
	err := f.m.Uninstall()
	if err == nil || !strings.Contains(err.Error(), "Failed to stop") {
		t.Fatalf("err = %v", err)
	}
	if _, err := os.Stat(filepath.Join(f.unitDir, UnitName)); !os.IsNotExist(err) {
		t.Error("a unit that failed to stop must still be removed, or it comes back at boot")
	}
}

func TestStatus(t *testing.T) {
	f := newFakeSystem(t)
	f.euid = 1000 // status needs no root
	props := "LoadState=loaded\nActiveState=active\nSubState=running\nUnitFileState=enabled\n" +
		"FragmentPath=/etc/systemd/system/courier.service\nMainPID=4242\n" +
		"ActiveEnterTimestamp=Mon 2025-01-06 10:00:00 UTC\nNRestarts=2\nExecMainStatus=0\nResult=success\n"
	f.answer = func(args []string) ([]byte, error) { return []byte(props), nil }
	s, err := f.m.Status()
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range []string{"courier.service: active (running), enabled", "main PID:  4242", "restarts:  2", "since:", "journalctl -u courier.service"} {
		if !strings.Contains(s, w) {
			t.Errorf("status lacks %q:\n%s", w, s)
		}
	}
	if got := f.ran(); len(got) != 1 || got[0][0] != "show" || got[0][1] != UnitName {
		t.Errorf("systemctl calls %q", got)
	}

	props = "LoadState=loaded\nActiveState=failed\nSubState=failed\nUnitFileState=enabled\nMainPID=0\nExecMainStatus=78\nResult=exit-code\n"
	s, err = f.m.Status()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(s, "failed (failed)") || !strings.Contains(s, "exit-code (exit status 78)") || strings.Contains(s, "main PID") {
		t.Errorf("failed unit:\n%s", s)
	}

	props = "LoadState=not-found\nActiveState=inactive\nSubState=dead\n"
	if _, err := f.m.Status(); !errors.Is(err, ErrNotInstalled) {
		t.Errorf("status of a unit systemd does not know: %v, want ErrNotInstalled", err)
	}
}

func TestShellQuote(t *testing.T) {
	for in, want := range map[string]string{
		"/usr/bin/courier": "/usr/bin/courier",
		"a b":              "'a b'",
		"it's":             `'it'\''s'`,
		"":                 "''",
		"$HOME":            "'$HOME'",
	} {
		if got := shellQuote(in); got != want {
			t.Errorf("shellQuote(%q) = %s, want %s", in, got, want)
		}
	}
}

func TestDefaultUser(t *testing.T) {
	dir := t.TempDir()
	if got := DefaultUser(filepath.Join(dir, "missing")); got != "" {
		t.Errorf("DefaultUser of a missing folder = %q, want \"\"", got)
	}
	if os.Geteuid() != 0 {
		me, err := user.Current()
		if err != nil {
			t.Fatal(err)
		}
		if got := DefaultUser(dir); got != me.Username {
			t.Errorf("DefaultUser of my own folder = %q, want %q", got, me.Username)
		}
		return
	}
	if got := DefaultUser(dir); got != "" {
		t.Errorf("DefaultUser of a folder root owns = %q, want \"\"", got)
	}
	nobody, err := user.Lookup("nobody")
	if err != nil {
		t.Skipf("no user nobody to hand a folder to: %v", err)
	}
	uid, _ := strconv.Atoi(nobody.Uid)
	gid, _ := strconv.Atoi(nobody.Gid)
	if err := os.Chown(dir, uid, gid); err != nil {
		t.Fatal(err)
	}
	if got := DefaultUser(dir); got != "nobody" {
		t.Errorf("DefaultUser of nobody's folder = %q, want nobody", got)
	}
}

func TestInstallCreatesRootForUser(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("handing a folder to another user needs root") // covered where the tests run as root
	}
	nobody, err := user.Lookup("nobody")
	if err != nil {
		t.Skipf("no user nobody: %v", err)
	}
	f := newFakeSystem(t)
	root := filepath.Join(f.tmp, "srv", "courier")
	if err := f.m.Install(UnitOptions{Binary: f.binary, Root: root, User: "nobody"}); err != nil {
		t.Fatal(err)
	}
	if got := DefaultUser(root); got != "nobody" {
		t.Errorf("root folder owned by %q, want nobody (uid %s)", got, nobody.Uid)
	}
}
