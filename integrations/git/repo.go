package git

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"path/filepath"
	"regexp"
	"strings"
)

// repoSpec is one configured repository, resolved: what git is given, what
// people may see, its stable name and where its mirror lives.
type repoSpec struct {
	index int
	// source is what git fetches from: the configured URL (possibly with
	// credentials; never logged) or the absolute form of a local path.
	source string
	// display is source with credentials removed: for records, logs and
	// error messages.
	display string
	// name is the repo's stable name in record ids and session paths.
	name string
	// local is a plain filesystem path (not a file:// URL): its mirror is
	// made by a local clone, which hardlinks objects instead of packing.
	local bool
	// secrets are strings to scrub from git's messages (userinfo parts).
	secrets []string
	// config is per-command git configuration: the credentials of an
	// http(s) URL, as an Authorization header given through the
	// environment, so that they are never on a command line (ps).
	config [][2]string
	// mirror is the bare mirror's folder (set by the integration).
	mirror string
}

// label is how problems name the repo: "repos[1] https://host/x.git".
func (r repoSpec) label() string { return fmt.Sprintf("repos[%d] %s", r.index, r.display) }

// parseRepo resolves one configured repo. A value is a URL when it has a
// scheme ("https://", "ssh://", "file://"), scp-like ssh ("user@host:path")
// when a colon comes before any slash, and a local path otherwise (as git
// itself decides).
//
// A relative local path is resolved against base (the agent's root), or
// the current folder when base is empty.
func parseRepo(index int, raw, base string) (repoSpec, error) {
	s := repoSpec{index: index}
	v := strings.TrimSpace(raw)
	if v == "" {
		return s, errors.New("empty: give a path or a URL")
	}
	if v != raw {
		return s, errors.New("has leading or trailing spaces")
	}
	switch {
	case strings.Contains(v, "://"):
		u, err := url.Parse(v)
		if err != nil {
			return s, fmt.Errorf("not a valid URL: %s", redactText(err.Error(), secretsOfRaw(v)))
		}
		s.secrets = secretsOf(u)
		s.source = v
		s.display = redactURL(u)
		if (u.Scheme == "http" || u.Scheme == "https") && u.User != nil {
			// git would take user:password from the URL on its command
			// line; give them as a header through the environment instead.
			pass, _ := u.User.Password()
			basic := base64.StdEncoding.EncodeToString([]byte(u.User.Username() + ":" + pass))
			bare := *u
			bare.User = nil
			s.source = bare.String()
			s.config = [][2]string{{"http." + u.Scheme + "://" + u.Host + "/.extraHeader", "Authorization: Basic " + basic}}
			s.secrets = append(s.secrets, basic)
		}
		if u.Scheme == "file" {
			if u.Path == "" {
				return s, errors.New("file URL without a path")
			}
			s.name = trimGitSuffix(filepath.Clean(u.Path))
		} else {
			if u.Host == "" {
				return s, errors.New("URL without a host")
			}
			s.name = trimGitSuffix(strings.TrimPrefix(u.Path, "/"))
		}
	case isSCPLike(v):
		host, path, _ := strings.Cut(v, ":")
		if at := strings.LastIndex(host, "@"); at >= 0 && strings.Contains(host[:at], ":") {
			return s, errors.New("scp-like address with a password: use ssh keys")
		}
		s.source, s.display = v, v
		s.name = trimGitSuffix(strings.TrimPrefix(path, "/"))
	default:
		if base != "" && !filepath.IsAbs(v) {
			v = filepath.Join(base, v)
		}
		abs, err := filepath.Abs(v)
		if err != nil {
			return s, fmt.Errorf("resolve path: %w", err)
		}
		s.source, s.display, s.local = abs, abs, true
		s.name = trimGitSuffix(abs)
	}
	if s.name == "" || s.name == "/" || s.name == "." {
		return s, errors.New("has no repository path to name it by")
	}
	return s, nil
}

// isSCPLike reports git's scp-like syntax: a colon before any slash.
func isSCPLike(v string) bool {
	colon := strings.IndexByte(v, ':')
	slash := strings.IndexByte(v, '/')
	return colon > 0 && (slash < 0 || colon < slash)
}

// trimGitSuffix turns "/srv/api.git", "/home/u/api/.git" and "acme/api.git"
// into "/srv/api", "/home/u/api" and "acme/api".
func trimGitSuffix(p string) string {
	p = strings.TrimRight(p, "/")
	p = strings.TrimSuffix(p, "/.git")
	p = strings.TrimSuffix(p, ".git")
	return strings.TrimRight(p, "/")
}

// redactURL drops credentials: all userinfo of http(s) and other schemes
// (a lone user name there is often a token), the password of ssh URLs.
func redactURL(u *url.URL) string {
	c := *u
	if c.User != nil {
		_, hasPw := c.User.Password()
		switch {
		case isSSHScheme(c.Scheme) && hasPw:
			c.User = url.User(c.User.Username())
		case !isSSHScheme(c.Scheme):
			c.User = nil
		}
	}
	return c.String()
}

// secretsOf lists the userinfo parts of u that must never be shown, in raw
// and escaped forms: a password, and for schemes other than ssh a lone user
// name (often a token, as in https://TOKEN@host/...).
func secretsOf(u *url.URL) []string {
	if u.User == nil {
		return nil
	}
	var out []string
	add := func(s string) {
		if len(s) >= 3 { // shorter ones would scrub ordinary words
			out = append(out, s)
		}
	}
	pw, hasPw := u.User.Password()
	switch {
	case hasPw:
		add(u.User.String())
		add(pw)
		add(url.QueryEscape(pw))
		add(url.PathEscape(pw))
	case !isSSHScheme(u.Scheme):
		add(u.User.Username())
		add(u.User.String())
	}
	return out
}

func isSSHScheme(s string) bool { return s == "ssh" || s == "git+ssh" || s == "ssh+git" }

// secretsOfRaw finds the userinfo of a URL that net/url cannot parse.
func secretsOfRaw(v string) []string {
	_, rest, ok := strings.Cut(v, "://")
	if !ok {
		return nil
	}
	if at := strings.LastIndex(rest, "@"); at >= 0 {
		if slash := strings.IndexByte(rest, '/'); slash < 0 || at < slash {
			return []string{rest[:at]}
		}
	}
	return nil
}

// userinfoRe matches the userinfo of any URL in a text.
var userinfoRe = regexp.MustCompile(`([A-Za-z][A-Za-z0-9+.-]*://)[^/\s'"]*@`)

// redactText scrubs credentials from a message: known secrets first, then
// the userinfo of anything that looks like a URL.
func redactText(s string, secrets []string) string {
	for _, sec := range secrets {
		s = strings.ReplaceAll(s, sec, "***")
	}
	return userinfoRe.ReplaceAllString(s, "${1}***@")
}

// mirrorDirName is a folder name derived from the repo: its readable tail
// plus a short hash of its credential-free address, so it is stable when a
// token in the URL is rotated and unique per address.
func mirrorDirName(r repoSpec) string {
	sum := sha256.Sum256([]byte(r.display))
	var b strings.Builder
	for _, c := range r.name {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '.', c == '-', c == '_':
			b.WriteRune(c)
		default:
			b.WriteByte('_')
		}
	}
	readable := strings.Trim(b.String(), "._-")
	if len(readable) > 40 {
		readable = strings.TrimLeft(readable[len(readable)-40:], "._-")
	}
	if readable == "" {
		readable = "repo"
	}
	return readable + "-" + hex.EncodeToString(sum[:6]) + ".git"
}
