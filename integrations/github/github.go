// Package github exports repositories, users, pull requests (with their
// reviews and review comments), issues and issue comments from GitHub or
// GitHub Enterprise Server through its REST API, with
// github.com/google/go-github over the shared HTTP layer (httpx): retries,
// rate limits (primary and secondary) waited out as progress, TLS always
// verified. See README.md for the config and every field of every model.
package github

import (
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	gh "github.com/google/go-github/v92/github"

	"courier/integrations"
	"courier/integrations/httpx"
	"courier/internal/safefile"
	"courier/sessions"
)

// Type is the integration's name.
const Type = "github"

// DefaultURL is the public GitHub API.
const DefaultURL = "https://api.github.com/"

// Tunables (variables so that tests can shrink them).
var (
	// perPage is the page size of every list (GitHub's maximum).
	perPage = 100
	// parallelRepos is how many repos are exported at once.
	parallelRepos = 2
	// settle is how far behind the server's clock the incremental cursor
	// stays: objects updated more recently are sent but not yet passed, so
	// one updated later in the same second is not lost (see cursor.go).
	settle = 5 * time.Second
	// maxRounds bounds the listings of one repo's pull requests when
	// objects moved while it paged through them (see cursor.go).
	maxRounds = 3
	// backoffInitial is the first retry pause of the HTTP layer.
	backoffInitial = 500 * time.Millisecond
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

// Config of the github integration.
type Config struct {
	// URL is the API's base: the public API by default; for GitHub
	// Enterprise Server its host ("https://ghe.example.com", /api/v3/ is
	// added) or the full API base.
	URL string `json:"url" yaml:"url"`
	// Token is a personal access token (classic or fine-grained) or an
	// app installation token.
	Token integrations.Secret `json:"token" yaml:"token"`
	// Organizations whose repos (and members) are exported.
	Organizations []string `json:"organizations" yaml:"organizations"`
	// Users whose own repos (and who themselves) are exported.
	Users []string `json:"users" yaml:"users"`
	// Repos, "owner/name": when given, only these repos are exported.
	Repos []string `json:"repos" yaml:"repos"`
	// CAFile is a PEM bundle trusted besides the system's roots.
	CAFile string `json:"ca_file" yaml:"ca_file"`
}

// SetToDefault points at the public API with nothing to export.
func (c *Config) SetToDefault() { *c = Config{URL: DefaultURL} }

// Validate names the key of each problem. It never shows the token.
func (c *Config) Validate() error {
	var errs []error
	if u, err := url.Parse(c.URL); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		errs = append(errs, fmt.Errorf("url: %q is not an http(s) URL (the API base, e.g. %s or https://ghe.example.com/api/v3/)", c.URL, DefaultURL))
	} else if u.User != nil {
		errs = append(errs, errors.New("url: must not hold credentials: give the token in token"))
	}
	switch {
	case c.Token == "":
		errs = append(errs, errors.New("token: required (a personal access token or an app installation token)"))
	case strings.ContainsAny(string(c.Token), " \t\r\n"):
		errs = append(errs, errors.New("token: must not contain spaces or line breaks"))
	}
	if len(c.Organizations)+len(c.Users)+len(c.Repos) == 0 {
		errs = append(errs, errors.New("organizations, users, repos: give at least one organization, user or owner/name repo"))
	}
	for key, names := range map[string][]string{"organizations": c.Organizations, "users": c.Users} {
		for i, n := range names {
			if !validLogin(n) {
				errs = append(errs, fmt.Errorf("%s[%d]: %q is not a GitHub login (letters, digits and hyphens)", key, i, n))
			}
		}
	}
	for i, r := range c.Repos {
		owner, name, ok := strings.Cut(r, "/")
		if !ok || !validLogin(owner) || name == "" || strings.ContainsAny(name, "/ \t") {
			errs = append(errs, fmt.Errorf("repos[%d]: %q is not owner/name", i, r))
		}
	}
	if c.CAFile != "" {
		if b, err := safefile.Read("ca_file", c.CAFile, 0, 0); err != nil {
			errs = append(errs, err)
		} else if blk, _ := pem.Decode(b); blk == nil {
			errs = append(errs, fmt.Errorf("ca_file: %s holds no PEM certificate", c.CAFile))
		}
	}
	slices.SortFunc(errs, func(a, b error) int { return strings.Compare(a.Error(), b.Error()) })
	return errors.Join(errs...)
}

func validLogin(s string) bool {
	if s == "" || len(s) > 100 {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.') {
			return false
		}
	}
	return true
}

// GitHub is one configured instance.
type GitHub struct {
	opts   integrations.Options
	cfg    Config
	tr     *httpx.Transport
	client *gh.Client
	// host names records: "github.com" for the public API, the server's
	// host for GitHub Enterprise.
	host string

	// Export's root session, told of rate-limit waits so that they show as
	// progress (a stall watchdog must not fire while GitHub says wait).
	root     atomic.Pointer[sessions.Session]
	progress struct {
		sync.Mutex
		done, total int64
	}
}

// New builds an instance: the HTTP layer and the go-github client.
func New(opts integrations.Options, cfg *Config) (*GitHub, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("github config: %w", err)
	}
	g := &GitHub{opts: opts, cfg: *cfg}
	token := string(cfg.Token)
	tr, err := httpx.New(httpx.Options{
		CAFile:         cfg.CAFile,
		UserAgent:      "courier (github integration)",
		Auth:           func(r *http.Request) { r.Header.Set("Authorization", "Bearer "+token) },
		RateLimit:      rateLimit,
		OnWait:         g.onWait,
		BackoffInitial: backoffInitial,
		Logger:         opts.Logger,
	})
	if err != nil {
		return nil, fmt.Errorf("github: %w", err)
	}
	g.tr = tr
	clientOpts := []gh.ClientOptionsFunc{
		gh.WithHTTPClient(tr.Client()),
		// The HTTP layer waits out rate limits; go-github must not refuse
		// requests on its own until a reset.
		gh.WithDisableRateLimitCheck(),
		gh.WithUserAgent("courier"),
	}
	base := cfg.URL
	if !strings.HasSuffix(base, "/") {
		base += "/"
	}
	if base != DefaultURL {
		clientOpts = append(clientOpts, gh.WithEnterpriseURLs(base, base))
	}
	c, err := gh.NewClient(clientOpts...)
	if err != nil {
		return nil, fmt.Errorf("github: url: %w", err)
	}
	g.client = c
	bu, err := url.Parse(c.BaseURL())
	if err != nil {
		return nil, fmt.Errorf("github: url: %w", err)
	}
	g.host = bu.Host
	if g.host == "api.github.com" {
		g.host = "github.com"
	}
	return g, nil
}

// onWait is the HTTP layer telling of a wait (a rate limit, a retry).
func (g *GitHub) onWait(d time.Duration, reason string) {
	ev := g.opts.Logger.Debug()
	if reason == "rate limited" {
		ev = g.opts.Logger.Info()
	}
	ev.Dur("wait_ms", d).Str("reason", reason).Msg("waiting for GitHub")
	if root := g.root.Load(); root != nil {
		g.progress.Lock()
		done, total := g.progress.done, g.progress.total
		g.progress.Unlock()
		root.Progress(done, total)
	}
}

// setProgress sets the root session's progress (repos done of total).
func (g *GitHub) setProgress(root *sessions.Session, done, total int64) {
	g.progress.Lock()
	g.progress.done, g.progress.total = done, total
	g.progress.Unlock()
	root.Progress(done, total)
}

func (g *GitHub) id(model string, id int64) string {
	return fmt.Sprintf("github:%s:%s:%d", g.host, model, id)
}

// close releases idle connections.
func (g *GitHub) close() { g.tr.CloseIdleConnections() }

// ErrUnauthorized is GitHub refusing the token (401): it is expired,
// revoked or wrong. It fails the whole integration.
var ErrUnauthorized = errors.New("github: the token was rejected (HTTP 401): it is expired, revoked or wrong; set a valid token in `token`")

// classify turns go-github's errors into ours: a 401 is ErrUnauthorized;
// every message names the request (its URL has no credential) and what
// GitHub said.
func classify(err error) error {
	if err == nil {
		return nil
	}
	var er *gh.ErrorResponse
	if errors.As(err, &er) && er.Response != nil && er.Response.StatusCode == http.StatusUnauthorized {
		return fmt.Errorf("%w (GitHub said: %s)", ErrUnauthorized, er.Message)
	}
	return err
}

// hasStatus reports whether err is GitHub answering with code.
func hasStatus(err error, code int) bool {
	var er *gh.ErrorResponse
	return errors.As(err, &er) && er.Response != nil && er.Response.StatusCode == code
}
