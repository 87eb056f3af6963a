package service

import (
	"bytes"
	_ "embed"
	"fmt"
	"path/filepath"
	"regexp"
	"strings"
	"text/template"
)

// UnitName is the name of the systemd unit.
const UnitName = "courier.service"

// StateRoot is the root folder that systemd manages itself
// (StateDirectory=courier): created with the right owner and mode before
// every start. Any other root is made writable with ReadWritePaths= and
// must exist; Install creates it.
const StateRoot = "/var/lib/courier"

// UnitOptions is what the unit depends on.
type UnitOptions struct {
	// Binary is the absolute path of the courier executable.
	Binary string
	// Root is the absolute path of the agent's folder (--root).
	Root string
	// User runs the service as that user instead of root; optional. The
	// user must own Root: systemd chowns StateRoot, Install chowns a root
	// it creates, and an existing one is left as it is (DefaultUser picks
	// its owner).
	User string
}

//go:embed courier.service.tmpl
var unitTemplate string

var unitTmpl = template.Must(template.New(UnitName).Funcs(template.FuncMap{
	"execPath": execPath,
	"execArg":  execArg,
	"pathArg":  pathArg,
}).Parse(unitTemplate))

// homeDirs are the folders that ProtectHome= hides.
var homeDirs = []string{"/home", "/root", "/run/user"}

// userName is what useradd accepts by default (and systemd's User= check).
var userName = regexp.MustCompile(`^[a-z_][a-z0-9_-]{0,30}$`)

// Render returns the unit file for opts. It fails on paths that are not
// absolute and clean, or that hold characters the unit file cannot carry
// (control characters, quotes, backslashes; a colon in Root).
func Render(opts UnitOptions) ([]byte, error) {
	if err := checkPath("binary", opts.Binary); err != nil {
		return nil, err
	}
	if err := checkPath("root", opts.Root); err != nil {
		return nil, err
	}
	if strings.Contains(opts.Root, ":") {
		// BindPaths= splits on colons.
		return nil, fmt.Errorf("service: root %q: a colon cannot be written in a systemd unit; choose another --root", opts.Root)
	}
	if opts.Root == "/" {
		return nil, fmt.Errorf("service: root cannot be /")
	}
	if opts.User != "" && !userName.MatchString(opts.User) {
		return nil, fmt.Errorf("service: user %q is not a valid user name", opts.User)
	}
	data := struct {
		UnitOptions
		StateDirectory string
		BindRoot       bool
		ReadWriteRoot  bool
	}{UnitOptions: opts}
	switch {
	case opts.Root == StateRoot:
		data.StateDirectory = filepath.Base(StateRoot)
	case underHome(opts.Root):
		data.BindRoot = true
	default:
		data.ReadWriteRoot = true
	}
	var b bytes.Buffer
	if err := unitTmpl.Execute(&b, data); err != nil {
		return nil, fmt.Errorf("service: rendering the unit: %w", err)
	}
	return b.Bytes(), nil
}

func underHome(p string) bool {
	for _, h := range homeDirs {
		if p == h || strings.HasPrefix(p, h+"/") {
			return true
		}
	}
	return false
}

func checkPath(what, p string) error {
	switch {
	case p == "":
		return fmt.Errorf("service: %s: no path given", what)
	case !filepath.IsAbs(p):
		return fmt.Errorf("service: %s %q must be an absolute path", what, p)
	case filepath.Clean(p) != p:
		return fmt.Errorf("service: %s %q must be a clean path (try %q)", what, p, filepath.Clean(p))
	case strings.ContainsAny(p, "\"'\\"), strings.ContainsFunc(p, func(r rune) bool { return r < ' ' || r == 0x7f }):
		return fmt.Errorf("service: %s %q: quotes, backslashes and control characters cannot be written in a systemd unit", what, p)
	}
	return nil
}

// pathArg writes a path for a setting that expands specifiers (%) and
// splits on whitespace (ReadWritePaths=, BindPaths=).
func pathArg(p string) string {
	p = strings.ReplaceAll(p, "%", "%%")
	if strings.ContainsAny(p, " \t") {
		return `"` + p + `"`
	}
	return p
}

// execPath writes the executable of ExecStart=: specifiers are expanded
// there, environment variables are not.
func execPath(p string) string { return pathArg(p) }

// execArg writes an argument of ExecStart=, where environment variables
// ($) are expanded too.
func execArg(p string) string {
	return pathArg(strings.ReplaceAll(p, "$", "$$"))
}
