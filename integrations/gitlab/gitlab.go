// Package gitlab exports projects, users, merge requests with their
// approvals, review states and diff notes, issues and notes from GitLab.com
// or a self-managed GitLab (API v4), with gitlab.com/gitlab-org/api/client-go
// over the shared HTTP layer (integrations/httpx). It emits the models of
// the github and gitea integrations (integrations/forge); commits, branches
// and tags come through the git integration's mirrors. See README.md.
package gitlab

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	gl "gitlab.com/gitlab-org/api/client-go/v2"

	"github.com/rs/zerolog"

	"courier/integrations"
	"courier/integrations/git"
	"courier/integrations/httpx"
	"courier/sessions"
)

// Type is the integration's name.
const Type = "gitlab"

// DefaultURL is GitLab.com.
const DefaultURL = "https://gitlab.com"

// pageSize is asked of every list (GitLab's maximum is 100) and is how
// many records go between two checkpoints. (A variable: tests page small.)
var pageSize int64 = 100

const (
	// parallelProjects is how many projects are exported at once.
	parallelProjects = 2
	userAgent        = "courier-gitlab"
)

func init() {
	integrations.Register(integrations.Registration{
		Type:      Type,
		NewConfig: func() integrations.Config { c := &Config{}; c.SetToDefault(); return c },
		New: func(opts integrations.Options, cfg integrations.Config) (integrations.Integration, error) {
			return New(opts, cfg.(*Config))
		},
		Objects: []string{integrations.ObjectRepos, integrations.ObjectUsers},
	})
}

// Config of the gitlab integration.
type Config struct {
	// URL is the server as opened in a browser; GitLab.com by default. A
	// trailing /api/v4 is accepted and dropped.
	URL string `json:"url" yaml:"url"`
	// Token is a personal, group or project access token (read_api and
	// read_repository scopes); a secret, never logged.
	Token integrations.Secret `json:"token" yaml:"token"`
	// Groups, by full path, whose projects (subgroups included) and
	// members are exported.
	Groups []string `json:"groups" yaml:"groups"`
	// Users whose personal projects and account are exported.
	Users []string `json:"users" yaml:"users"`
	// Projects, by full path (group/sub/name), exported besides those of
	// Groups and Users.
	Projects []string `json:"projects" yaml:"projects"`
	// CAFile is a PEM bundle added to the system's roots.
	CAFile string `json:"ca_file" yaml:"ca_file"`
}

// SetToDefault sets GitLab.com and nothing else.
func (c *Config) SetToDefault() { *c = Config{URL: DefaultURL} }

// String shows the config without its token.
func (c Config) String() string {
	return fmt.Sprintf("{url:%s token:%s groups:%v users:%v projects:%v ca_file:%s}",
		c.URL, c.Token, c.Groups, c.Users, c.Projects, c.CAFile)
}

// GoString is String, so that %#v does not print the token either.
func (c Config) GoString() string { return c.String() }

// Validate names the key of every problem.
func (c *Config) Validate() error {
	var errs []error
	if _, err := baseURL(c.URL); err != nil {
		errs = append(errs, err)
	}
	if strings.TrimSpace(string(c.Token)) == "" {
		errs = append(errs, errors.New("token: required (a GitLab personal, group or project access token with read_api and read_repository)"))
	} else if strings.ContainsAny(string(c.Token), " \t\r\n") {
		errs = append(errs, errors.New("token: contains white space (a copy-paste mistake?)"))
	}
	if len(c.Groups)+len(c.Users)+len(c.Projects) == 0 {
		errs = append(errs, errors.New("groups, users, projects: give at least one"))
	}
	errs = append(errs, paths("groups", c.Groups, 1)...)
	errs = append(errs, paths("users", c.Users, 1)...)
	errs = append(errs, paths("projects", c.Projects, 2)...)
	for i, u := range c.Users {
		if strings.Contains(u, "/") {
			errs = append(errs, fmt.Errorf("users[%d]: %q is not a user name (a group or project path?)", i, u))
		}
	}
	return errors.Join(errs...)
}

// paths checks a list of GitLab paths of at least min segments.
func paths(key string, list []string, minSegs int) []error {
	var errs []error
	seen := map[string]int{}
	for i, p := range list {
		segs := strings.Split(p, "/")
		bad := p == "" || strings.ContainsAny(p, " \t\r\n") || len(segs) < minSegs
		for _, s := range segs {
			bad = bad || s == ""
		}
		if bad {
			want := "a path such as acme or acme/platform"
			if minSegs > 1 {
				want = "a full path such as acme/api or acme/platform/api"
			}
			errs = append(errs, fmt.Errorf("%s[%d]: %q is not %s", key, i, p, want))
			continue
		}
		if j, dup := seen[strings.ToLower(p)]; dup {
			errs = append(errs, fmt.Errorf("%s[%d]: %q is %s[%d] again", key, i, p, key, j))
		}
		seen[strings.ToLower(p)] = i
	}
	return errs
}

// baseURL checks raw and returns it without a trailing slash or /api/v4.
func baseURL(raw string) (*url.URL, error) {
	if strings.TrimSpace(raw) == "" {
		return nil, errors.New("url: required (https://gitlab.com or your server's address)")
	}
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, errors.New("url: must be an http(s) URL such as https://gitlab.example.com")
	}
	if u.User != nil {
		return nil, errors.New("url: must not carry credentials; put the token in token")
	}
	if u.RawQuery != "" || u.Fragment != "" {
		return nil, errors.New("url: must not have a query or a fragment")
	}
	u.Path = strings.TrimSuffix(strings.TrimSuffix(strings.TrimSuffix(u.Path, "/"), "/api/v4"), "/")
	u.RawPath = ""
	return u, nil
}

// GitLab is one configured instance.
type GitLab struct {
	opts integrations.Options
	cfg  Config
	log  zerolog.Logger
	base string // no trailing slash
	host string // in record ids
	http *http.Client

	cloneOnce sync.Once

	mu     sync.Mutex
	root   *sessions.Session // while exporting: told of rate-limit waits
	curN   int64
	totalN int64
}

// New builds an instance from a validated config.
func New(opts integrations.Options, cfg *Config) (*GitLab, error) {
	u, err := baseURL(cfg.URL)
	if err != nil {
		return nil, err
	}
	g := &GitLab{opts: opts, cfg: *cfg, log: opts.Logger, base: u.String(), host: u.Host}
	tr, err := httpx.New(httpx.Options{
		CAFile:    cfg.CAFile,
		UserAgent: userAgent,
		Logger:    opts.Logger,
		RateLimit: rateLimit,
		OnWait:    func(time.Duration, string) { g.touch() },
	})
	if err != nil {
		return nil, err
	}
	g.http = tr.Client()
	return g, nil
}

// rateLimit reads GitLab's answers: a 429 carries Retry-After and
// RateLimit-Reset (Unix seconds); GitLab never answers 403 for a rate
// limit, so a 403 is a permission problem, not a wait.
func rateLimit(resp *http.Response) (time.Duration, bool) {
	if resp.StatusCode != http.StatusTooManyRequests {
		return 0, false
	}
	if ra, ok := httpx.RetryAfter(resp.Header, time.Now()); ok {
		return ra, true
	}
	if reset, err := strconv.ParseInt(resp.Header.Get("RateLimit-Reset"), 10, 64); err == nil {
		return max(time.Until(time.Unix(reset, 0))+time.Second, time.Second), true
	}
	return time.Minute, true
}

func (g *GitLab) touch() {
	g.mu.Lock()
	root, cur, all := g.root, g.curN, g.totalN
	g.mu.Unlock()
	if root != nil {
		root.Progress(cur, all)
	}
}

func (g *GitLab) progress(done, total int64) {
	g.mu.Lock()
	g.curN, g.totalN = done, total
	root := g.root
	g.mu.Unlock()
	if root != nil {
		root.Progress(done, total)
	}
}

// noLimit turns off the SDK's own rate limiter: httpx waits on GitLab's
// answers instead, and reports the waits as progress.
type noLimit struct{}

func (noLimit) Wait(context.Context) error { return nil }

// client is an SDK client over httpx. Its own retries are off (httpx
// retries, with the agent's bounds and logging).
func (g *GitLab) client() (*gl.Client, error) {
	c, err := gl.NewClient(string(g.cfg.Token),
		gl.WithBaseURL(g.base+"/api/v4"),
		gl.WithHTTPClient(g.http),
		gl.WithoutRetries(),
		gl.WithCustomLimiter(noLimit{}),
		gl.WithUserAgent(userAgent),
	)
	if err != nil {
		return nil, g.scrub(fmt.Errorf("gitlab: %s: %w", g.base, err))
	}
	return c, nil
}

// id is a record's stable id: gitlab:<host>:<model>:<id>.
func (g *GitLab) id(model string, id any) string {
	return fmt.Sprintf("gitlab:%s:%s:%v", g.host, model, id)
}

// AuthError is a request refused for the token (401): it fails the
// whole integration.
type AuthError struct {
	URL    string
	Status int
	What   string
	Msg    string
}

func (e *AuthError) Error() string {
	return fmt.Sprintf("gitlab: %s at %s: the token was rejected (HTTP %d: %s); check token: it may be wrong, expired or revoked", e.What, e.URL, e.Status, e.Msg)
}

// StatusError is any other non-2xx answer about one object: an entity
// error, the export goes on.
type StatusError struct {
	What   string
	Status int
	Msg    string
}

func (e *StatusError) Error() string {
	return fmt.Sprintf("%s: HTTP %d: %s", e.What, e.Status, e.Msg)
}

// check turns an SDK answer into nil, an *AuthError, a *StatusError, or a
// plain error (no answer: network, cancellation).
func (g *GitLab) check(what string, resp *gl.Response, err error) error {
	if err == nil {
		return nil
	}
	if resp != nil && resp.Response != nil && resp.StatusCode/100 != 2 {
		msg := err.Error()
		var er *gl.ErrorResponse
		if errors.As(err, &er) && er.Message != "" {
			msg = er.Message
		}
		msg = g.redact(strings.TrimSpace(msg))
		if resp.StatusCode == http.StatusUnauthorized {
			return &AuthError{URL: g.base, Status: resp.StatusCode, What: what, Msg: msg}
		}
		return &StatusError{What: what, Status: resp.StatusCode, Msg: msg}
	}
	return g.scrub(fmt.Errorf("%s: %w", what, err))
}

func (g *GitLab) redact(s string) string {
	if g.cfg.Token == "" {
		return s
	}
	return strings.ReplaceAll(s, string(g.cfg.Token), "[redacted]")
}

// scrub returns err, or an error with its text redacted if it held the
// token (losing its chain: a secret matters more).
func (g *GitLab) scrub(err error) error {
	if err == nil || g.cfg.Token == "" || !strings.Contains(err.Error(), string(g.cfg.Token)) {
		return err
	}
	return errors.New(g.redact(err.Error()))
}

// isEntity reports whether err concerns one object (a project, a group,
// a project whose git fetch failed) rather than the whole export.
func isEntity(err error) bool {
	var se *StatusError
	return errors.As(err, &se) || git.IsRepoError(err)
}
