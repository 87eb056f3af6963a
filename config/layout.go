package config

import (
	"os"
	"os/user"
	"path/filepath"
	"strings"
)

// FileName is the config file's name inside the root folder.
const FileName = "config.yaml"

// dirMode keeps the root folder private: it holds credentials, the queue and
// logs that may quote customer data.
const dirMode = 0o700

// DefaultRoot is the root folder used when neither --root nor COURIER_ROOT is
// given: /var/lib/courier for root (the systemd service), ~/.courier for
// anyone else (manual use). If no home folder can be found it falls back to
// ".courier" in the working directory rather than failing, because a root is
// always required and the caller can still override it.
func DefaultRoot() string {
	if os.Geteuid() == 0 {
		return "/var/lib/courier"
	}
	if home, err := os.UserHomeDir(); err == nil && home != "" {
		return filepath.Join(home, ".courier")
	}
	// $HOME can be unset under some service managers; the passwd entry is
	// still right.
	if u, err := user.Current(); err == nil && u.HomeDir != "" {
		return filepath.Join(u.HomeDir, ".courier")
	}
	return ".courier"
}

// Layout names the files and folders under a root folder. It only computes
// paths; EnsureDirs creates the folders.
type Layout struct {
	Root string
}

// Config is the path of config.yaml.
func (l Layout) Config() string { return filepath.Join(l.Root, FileName) }

// DB is the Pebble folder: queue, tokens and command journal.
func (l Layout) DB() string { return filepath.Join(l.Root, "db") }

// Logs is the folder of per-command logs.
func (l Layout) Logs() string { return filepath.Join(l.Root, "logs") }

// Log is the file holding the last run of a command (e.g. "service-run").
// See IntegrationLog for how the name is sanitized.
func (l Layout) Log(command string) string {
	return filepath.Join(l.Logs(), SafeName(command))
}

// IntegrationLog is the file holding the last run of one integration.
//
// The id comes from the backend, so it is sanitized with SafeName: a hostile
// or buggy id such as "../../etc/x" must not make the agent write outside its
// root.
func (l Layout) IntegrationLog(id string) string {
	return filepath.Join(l.Logs(), "integrations", SafeName(id))
}

// Cache holds git mirrors and other integration caches.
func (l Layout) Cache() string { return filepath.Join(l.Root, "cache") }

// Exports is the local sink of manual exports without a backend.
func (l Layout) Exports() string { return filepath.Join(l.Root, "exports") }

// Run holds runtime files of a running service, such as its listen address.
func (l Layout) Run() string { return filepath.Join(l.Root, "run") }

// EnsureDirs creates the root and every folder of the layout with mode 0700.
// Existing folders are left as they are.
func (l Layout) EnsureDirs() error {
	dirs := []string{
		l.Root, l.DB(), l.Logs(), filepath.Join(l.Logs(), "integrations"),
		l.Cache(), l.Exports(), l.Run(),
	}
	for _, d := range dirs {
		if err := os.MkdirAll(d, dirMode); err != nil {
			return err
		}
	}
	return nil
}

// SafeName turns name into a single path element: every character outside
// [A-Za-z0-9._-] becomes '_', and "", "." and ".." become "_". Names that are
// already safe, such as "service-run" or "int_1", are unchanged.
func SafeName(name string) string {
	if name == "" || name == "." || name == ".." {
		return "_"
	}
	return strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9',
			r == '.', r == '_', r == '-':
			return r
		}
		return '_'
	}, name)
}
