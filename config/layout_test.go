package config_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"courier/config"
)

func TestLayoutPaths(t *testing.T) {
	l := config.Layout{Root: "/r"}
	for _, tt := range []struct{ got, want string }{
		{l.Config(), "/r/config.yaml"},
		{l.DB(), "/r/db"},
		{l.Logs(), "/r/logs"},
		{l.Log("service-run"), "/r/logs/service-run"},
		{l.IntegrationLog("int_1"), "/r/logs/integrations/int_1"},
		{l.Cache(), "/r/cache"},
		{l.Exports(), "/r/exports"},
		{l.Run(), "/r/run"},
		// Names from outside are sanitized into one path element.
		{l.IntegrationLog("../../x"), "/r/logs/integrations/.._.._x"},
		{l.IntegrationLog(".."), "/r/logs/integrations/_"},
		{l.IntegrationLog(""), "/r/logs/integrations/_"},
		{l.Log("a/b c"), "/r/logs/a_b_c"},
		{l.IntegrationLog("gít:ä/é"), "/r/logs/integrations/g_t____"},
	} {
		if tt.got != tt.want {
			t.Errorf("got %s, want %s", tt.got, tt.want)
		}
	}
}

func TestIntegrationLogStaysUnderRoot(t *testing.T) {
	l := config.Layout{Root: "/r"}
	for _, id := range []string{"../../etc/passwd", "/abs", `..\..\x`, "a/../../b", "."} {
		p := l.IntegrationLog(id)
		if filepath.Dir(p) != "/r/logs/integrations" {
			t.Errorf("IntegrationLog(%q) = %s escapes its folder", id, p)
		}
	}
}

func TestEnsureDirs(t *testing.T) {
	l := config.Layout{Root: filepath.Join(t.TempDir(), "root")}
	if err := l.EnsureDirs(); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{l.Root, l.DB(), l.Logs(), filepath.Dir(l.IntegrationLog("x")), l.Cache(), l.Exports(), l.Run()} {
		assertMode(t, d, 0o700|os.ModeDir)
	}
	if err := l.EnsureDirs(); err != nil {
		t.Fatalf("second call: %v", err)
	}
}

func TestDefaultRoot(t *testing.T) {
	if os.Geteuid() == 0 {
		if got := config.DefaultRoot(); got != "/var/lib/courier" {
			t.Fatalf("as root: %s", got)
		}
		return
	}
	home := t.TempDir()
	t.Setenv("HOME", home)
	if got := config.DefaultRoot(); got != filepath.Join(home, ".courier") {
		t.Fatalf("as a user: %s", got)
	}
	if !strings.HasSuffix(config.DefaultRoot(), ".courier") {
		t.Fatal("unexpected root")
	}
}
