package service

import (
	"bytes"
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden from the current output")

// maxExposure is the highest `systemd-analyze security` exposure the unit
// may have (0 best, 10 worst; systemd calls below 1.0 "SAFE" and below 5.0
// "OK"). The unit scores 1.6 with systemd 252. What keeps it above 0: it
// runs as root (it reads files and git repositories that root owns), it
// keeps the network (AF_INET, AF_INET6, no IP allow list), and it does not
// use PrivateUsers= (other users' files would show as nobody, which git's
// ownership check refuses) or ProcSubset=pid (it hides /proc/stat, which
// the process metrics read). 1.8 leaves room for another systemd version's
// weights while failing when a major setting goes: without
// SystemCallFilter= the unit scores 3.2, without CapabilityBoundingSet=
// 3.4, without RestrictNamespaces= 2.3, without RestrictAddressFamilies=
// 2.0, without PrivateDevices= 1.9. TestUnitHardening catches the others.
const maxExposure = 1.8

func goldenUnit(t *testing.T) []byte {
	t.Helper()
	b, err := Render(UnitOptions{Binary: "/usr/bin/courier", Root: StateRoot})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestRenderGolden(t *testing.T) {
	got := goldenUnit(t)
	path := filepath.Join("testdata", "courier.service.golden")
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./service/ -run TestRenderGolden -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("the rendered unit differs from %s (if the change is intended, run go test ./service/ -run TestRenderGolden -update):\n%s", path, got)
	}
}

func TestRenderRoots(t *testing.T) {
	for _, tc := range []struct {
		name, root   string
		want, absent []string
	}{
		{"state directory", StateRoot,
			[]string{"StateDirectory=courier\n", "StateDirectoryMode=0700\n", "ProtectHome=yes\n"},
			[]string{"ReadWritePaths=", "BindPaths=", "ProtectHome=tmpfs"}},
		{"elsewhere", "/srv/courier",
			[]string{"ReadWritePaths=/srv/courier\n", "ProtectHome=yes\n", "--root /srv/courier "},
			[]string{"StateDirectory=", "BindPaths="}},
		{"under /home", "/home/ci/.courier",
			[]string{"ProtectHome=tmpfs\n", "BindPaths=/home/ci/.courier\n"},
			[]string{"StateDirectory=", "ProtectHome=yes", "ReadWritePaths="}},
		{"under /root", "/root/.courier",
			[]string{"ProtectHome=tmpfs\n", "BindPaths=/root/.courier\n"}, nil},
		{"home-like but not home", "/homework/courier",
			[]string{"ProtectHome=yes\n", "ReadWritePaths=/homework/courier\n"}, nil},
		{"space and specials", "/srv/my agent/100%/$x",
			[]string{`--root "/srv/my agent/100%%/$$x" `, `ReadWritePaths="/srv/my agent/100%%/$x"` + "\n"}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, err := Render(UnitOptions{Binary: "/usr/bin/courier", Root: tc.root})
			if err != nil {
				t.Fatal(err)
			}
			s := string(b)
			for _, w := range tc.want {
				if !strings.Contains(s, w) {
					t.Errorf("unit lacks %q:\n%s", w, s)
				}
			}
			for _, a := range tc.absent {
				if strings.Contains(s, a) {
					t.Errorf("unit has %q:\n%s", a, s)
				}
			}
		})
	}
}

// TestUnitHardening pins the settings the exposure score weighs too lightly
// to notice one by one.
func TestUnitHardening(t *testing.T) {
	unit := string(goldenUnit(t))
	for _, line := range []string{
		"Type=notify", "NotifyAccess=main", "WatchdogSec=60s", "Restart=on-failure", "RestartSec=5s",
		"RestartPreventExitStatus=78", "TimeoutStopSec=30s", "UMask=0077",
		"NoNewPrivileges=yes", "CapabilityBoundingSet=", "AmbientCapabilities=", "ProtectSystem=strict",
		"ProtectHome=yes", "PrivateTmp=yes", "PrivateMounts=yes", "PrivateDevices=yes",
		"ProtectKernelTunables=yes", "ProtectKernelModules=yes", "ProtectKernelLogs=yes",
		"ProtectControlGroups=yes", "ProtectClock=yes", "ProtectHostname=yes", "ProtectProc=invisible",
		"RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX", "RestrictNamespaces=yes", "RestrictRealtime=yes",
		"RestrictSUIDSGID=yes", "LockPersonality=yes", "MemoryDenyWriteExecute=yes",
		"SystemCallArchitectures=native", "SystemCallFilter=@system-service",
		"SystemCallFilter=~@privileged @resources",
		"ExecStart=/usr/bin/courier --root /var/lib/courier --log-format json service-run",
	} {
		if !strings.Contains(unit, "\n"+line+"\n") {
			t.Errorf("the unit lacks the line %q", line)
		}
	}
}

func TestRenderUser(t *testing.T) {
	b, err := Render(UnitOptions{Binary: "/usr/bin/courier", Root: StateRoot, User: "courier"})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), "\nUser=courier\n") {
		t.Errorf("no User=courier:\n%s", b)
	}
	if strings.Contains(string(goldenUnit(t)), "User=") {
		t.Error("User= written without a user")
	}
}

func TestRenderRefuses(t *testing.T) {
	for _, o := range []UnitOptions{
		{Binary: "courier", Root: StateRoot},
		{Binary: "/usr/bin/courier", Root: "var/lib/courier"},
		{Binary: "/usr/bin/courier", Root: ""},
		{Binary: "/usr/bin/courier", Root: "/"},
		{Binary: "/usr/bin/courier", Root: "/var/lib/courier/"},
		{Binary: "/usr/bin/courier", Root: "/var/lib/../courier"},
		{Binary: "/usr/bin/courier", Root: "/srv/a:b"},
		{Binary: "/usr/bin/courier", Root: "/srv/a\nExecStartPre=/bin/rm"},
		{Binary: `/usr/bin/cour"ier`, Root: StateRoot},
		{Binary: `/usr/bin/cour\ier`, Root: StateRoot},
		{Binary: "/usr/bin/courier", Root: StateRoot, User: "root\nUser=x"},
		{Binary: "/usr/bin/courier", Root: StateRoot, User: "Bad User"},
	} {
		if b, err := Render(o); err == nil {
			t.Errorf("Render(%+q) = nil error, unit:\n%s", o, b)
		}
	}
}

// systemdAnalyze returns the path of systemd-analyze, failing the test
// (never skipping it) when it is missing.
func systemdAnalyze(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Fatalf("systemd-analyze is not installed; these checks of the unit need it: install it in CI with `apt-get install -y systemd` (it needs no running systemd)")
	}
	return p
}

// writeUnit renders a unit whose ExecStart is a real executable (verify
// checks it) into a temporary folder and returns the unit's path.
func writeUnit(t *testing.T, opts UnitOptions) string {
	t.Helper()
	b, err := Render(opts)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), UnitName)
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// realBinary copies /bin/true to dir/name, so that the binary path can
// hold characters that need quoting.
func realBinary(t *testing.T, dir, name string) string {
	t.Helper()
	src, err := exec.LookPath("true")
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, b, 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestUnitVerifies runs `systemd-analyze verify` on the unit. verify exits
// 0 on unknown keys and many other mistakes, so any output is a failure.
func TestUnitVerifies(t *testing.T) {
	sa := systemdAnalyze(t)
	tmp := t.TempDir()
	plain := realBinary(t, filepath.Join(tmp, "bin"), "courier")
	odd := realBinary(t, filepath.Join(tmp, "my tools", "100%", "$HOME"), "courier")
	for _, tc := range []struct {
		name string
		opts UnitOptions
	}{
		{"state directory", UnitOptions{Binary: plain, Root: StateRoot}},
		{"elsewhere", UnitOptions{Binary: plain, Root: "/srv/courier"}},
		{"under home", UnitOptions{Binary: plain, Root: "/home/ci/.courier"}},
		{"quoted binary and root", UnitOptions{Binary: odd, Root: "/srv/my agent/100%/$x"}},
		{"as a user", UnitOptions{Binary: plain, Root: StateRoot, User: "courier-test-nonexistent"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			unit := writeUnit(t, tc.opts)
			cmd := exec.Command(sa, "verify", unit)
			// Offline: no bus, no running systemd; keep the pager out.
			cmd.Env = append(os.Environ(), "SYSTEMD_PAGER=", "SYSTEMD_LOG_COLOR=0")
			out, err := cmd.CombinedOutput()
			if err != nil || len(bytes.TrimSpace(out)) > 0 {
				b, _ := os.ReadFile(unit)
				t.Errorf("systemd-analyze verify %s: %v\n%s\nunit:\n%s", unit, err, out, b)
			}
		})
	}
}

var exposureLine = regexp.MustCompile(`(?m)Overall exposure level for \S+: (\d+(?:\.\d+)?) (\S+)`)

// TestUnitSecurity scores the unit's hardening offline; see maxExposure.
func TestUnitSecurity(t *testing.T) {
	sa := systemdAnalyze(t)
	plain := realBinary(t, filepath.Join(t.TempDir(), "bin"), "courier")
	for _, root := range []string{StateRoot, "/srv/courier", "/home/ci/.courier"} {
		t.Run(root, func(t *testing.T) {
			unit := writeUnit(t, UnitOptions{Binary: plain, Root: root})
			cmd := exec.Command(sa, "security", "--offline=yes", "--no-pager", unit)
			cmd.Env = append(os.Environ(), "SYSTEMD_PAGER=", "SYSTEMD_LOG_COLOR=0", "SYSTEMD_COLORS=0")
			out, _ := cmd.CombinedOutput() // exits non-zero when over its own threshold
			m := exposureLine.FindSubmatch(out)
			if m == nil {
				t.Fatalf("systemd-analyze security printed no overall exposure level:\n%s", out)
			}
			score, err := strconv.ParseFloat(string(m[1]), 64)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("exposure %.1f %s", score, m[2])
			if score > maxExposure {
				t.Errorf("exposure %.1f %s is above %.1f; what systemd-analyze found:\n%s", score, m[2], maxExposure, out)
			}
		})
	}
}
