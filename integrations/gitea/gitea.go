// Package gitea exports repositories, users, pull requests with their
// reviews and review comments, issues and issue comments from a Gitea or
// Forgejo server, with code.gitea.io/sdk/gitea over the shared HTTP layer
// (integrations/httpx). It emits the same models as the github integration
// (integrations/forge); see README.md for the config and every field.
package gitea

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	sdk "code.gitea.io/sdk/gitea"
	"github.com/hashicorp/go-version"
	"github.com/rs/zerolog"

	"courier/integrations"
	"courier/integrations/git"
	"courier/integrations/httpx"
	"courier/sessions"
)

// Type is the integration's name.
const Type = "gitea"

// pageSize is asked of every list; Gitea caps it at MAX_RESPONSE_ITEMS
// (50 by default) and the listing follows whatever it returns. It is also
// how many records go between two checkpoints. (A variable: tests page
// small.)
var pageSize = 50

const (
	// parallelRepos is how many repos are exported at once.
	parallelRepos = 2
	// userAgent is sent with every request.
	userAgent = "courier-gitea"
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

// Config of the gitea integration.
type Config struct {
	// URL is the server's base URL, as opened in a browser
	// (https://gitea.example.com, or with a sub-path). A trailing /api/v1
	// is accepted and dropped.
	URL string `json:"url" yaml:"url"`
	// Token is an access token; it is a secret and never logged.
	Token integrations.Secret `json:"token" yaml:"token"`
	// Organizations whose repositories (and members) are exported.
	Organizations []string `json:"organizations" yaml:"organizations"`
	// Users whose own repositories (and account) are exported.
	Users []string `json:"users" yaml:"users"`
	// Repos, as owner/name, narrow the export to exactly these
	// repositories; empty means every repository of Organizations and
	// Users.
	Repos []string `json:"repos" yaml:"repos"`
	// CAFile is a PEM bundle added to the system's roots (a private CA).
	CAFile string `json:"ca_file" yaml:"ca_file"`
}

// SetToDefault empties the config: there is no default server.
func (c *Config) SetToDefault() { *c = Config{} }

// String shows the config without its token.
func (c Config) String() string {
	tok := ""
	if c.Token != "" {
		tok = "[redacted]"
	}
	return fmt.Sprintf("{url:%s token:%s organizations:%v users:%v repos:%v ca_file:%s}",
		c.URL, tok, c.Organizations, c.Users, c.Repos, c.CAFile)
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
		errs = append(errs, errors.New("token: required (a Gitea access token with read scopes)"))
	} else if strings.ContainsAny(string(c.Token), " \t\r\n") {
		errs = append(errs, errors.New("token: contains white space (a copy-paste mistake?)"))
	}
	if len(c.Organizations)+len(c.Users)+len(c.Repos) == 0 {
		errs = append(errs, errors.New("organizations, users, repos: give at least one"))
	}
	errs = append(errs, names("organizations", c.Organizations)...)
	errs = append(errs, names("users", c.Users)...)
	seen := map[string]int{}
	for i, r := range c.Repos {
		owner, name, ok := strings.Cut(r, "/")
		if !ok || owner == "" || name == "" || strings.Contains(name, "/") || strings.TrimSpace(r) != r {
			errs = append(errs, fmt.Errorf("repos[%d]: %q is not owner/name", i, r))
			continue
		}
		if j, dup := seen[strings.ToLower(r)]; dup {
			errs = append(errs, fmt.Errorf("repos[%d]: %q is repos[%d] again", i, r, j))
		}
		seen[strings.ToLower(r)] = i
	}
	return errors.Join(errs...)
}

func names(key string, list []string) []error {
	var errs []error
	seen := map[string]int{}
	for i, n := range list {
		if n == "" || strings.ContainsAny(n, "/ \t\r\n") {
			errs = append(errs, fmt.Errorf("%s[%d]: %q is not a name", key, i, n))
			continue
		}
		if j, dup := seen[strings.ToLower(n)]; dup {
			errs = append(errs, fmt.Errorf("%s[%d]: %q is %s[%d] again", key, i, n, key, j))
		}
		seen[strings.ToLower(n)] = i
	}
	return errs
}

// baseURL checks url and returns it without a trailing slash or /api/v1.
func baseURL(raw string) (*url.URL, error) {
	if strings.TrimSpace(raw) == "" {
		return nil, errors.New("url: required (the Gitea server's base URL, https://gitea.example.com)")
	}
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, errors.New("url: must be an http(s) URL such as https://gitea.example.com")
	}
	if u.User != nil {
		return nil, errors.New("url: must not carry credentials; put the token in token")
	}
	if u.RawQuery != "" || u.Fragment != "" {
		return nil, errors.New("url: must not have a query or a fragment")
	}
	u.Path = strings.TrimSuffix(strings.TrimSuffix(strings.TrimSuffix(u.Path, "/"), "/api/v1"), "/")
	u.RawPath = ""
	return u, nil
}

// Gitea is one configured instance.
type Gitea struct {
	opts integrations.Options
	cfg  Config
	log  zerolog.Logger
	base string // base URL, no trailing slash
	host string // in record ids
	http *http.Client

	// rootOnce logs once that the server's clone URLs are not under url.
	rootOnce sync.Once

	mu       sync.Mutex
	root     *sessions.Session // while exporting: told of rate-limit waits
	reposCur int64
	reposAll int64
}

// New builds an instance from a validated config.
func New(opts integrations.Options, cfg *Config) (*Gitea, error) {
	u, err := baseURL(cfg.URL)
	if err != nil {
		return nil, err
	}
	g := &Gitea{opts: opts, cfg: *cfg, log: opts.Logger, base: u.String(), host: u.Host}
	tr, err := httpx.New(httpx.Options{
		CAFile:    cfg.CAFile,
		UserAgent: userAgent,
		Logger:    opts.Logger,
		OnWait:    func(time.Duration, string) { g.touch() },
	})
	if err != nil {
		return nil, err
	}
	g.http = tr.Client()
	return g, nil
}

// touch shows the stall watchdog that a long wait (a rate limit) is alive.
func (g *Gitea) touch() {
	g.mu.Lock()
	root, cur, all := g.root, g.reposCur, g.reposAll
	g.mu.Unlock()
	if root != nil {
		root.Progress(cur, all)
	}
}

func (g *Gitea) progress(done, total int64) {
	g.mu.Lock()
	g.reposCur, g.reposAll = done, total
	root := g.root
	g.mu.Unlock()
	if root != nil {
		root.Progress(done, total)
	}
}

// client returns an SDK client whose requests end with ctx, and the
// server's version. The token goes in the SDK's Authorization header,
// which net/http drops on a redirect to another host; httpx never logs
// headers.
func (g *Gitea) client(ctx context.Context) (*sdk.Client, string, error) {
	opts := []sdk.ClientOption{
		sdk.SetHTTPClient(g.http),
		sdk.SetToken(string(g.cfg.Token)),
		sdk.SetContext(ctx),
		sdk.SetUserAgent(userAgent),
	}
	// Ask the version ourselves (the SDK's own check hides the answer's
	// status, so a rejected token would look like an unreachable server).
	probe, err := sdk.NewClient(g.base, append(opts, sdk.SetGiteaVersion(""))...)
	if err != nil {
		return nil, "", g.scrub(err)
	}
	raw, resp, err := probe.ServerVersion()
	if err := g.check("GET /api/v1/version", resp, err); err != nil {
		var se *StatusError
		if errors.As(err, &se) {
			return nil, "", fmt.Errorf("gitea: %s does not answer like a Gitea server: %w", g.base, err)
		}
		var ae *AuthError
		if errors.As(err, &ae) {
			return nil, "", err
		}
		return nil, "", fmt.Errorf("gitea: cannot reach %s: %w", g.base, err)
	}
	ver := apiVersion(raw)
	if ver == "" {
		g.log.Debug().Str("version", raw).Msg("server version not recognised; SDK version checks off")
	}
	c, err := sdk.NewClient(g.base, append(opts, sdk.SetGiteaVersion(ver))...)
	if err != nil {
		return nil, "", g.scrub(fmt.Errorf("gitea: %s: %w", g.base, err))
	}
	return c, raw, nil
}

// apiVersion is the Gitea version whose API a server speaks, for the
// SDK's feature checks: Forgejo says "7.0.1+gitea-1.21.11", Gitea
// "1.23.8"; "" (checks off) when it does not parse, as for a build
// without a release version ("development").
func apiVersion(raw string) string {
	if _, g, ok := strings.Cut(raw, "+gitea-"); ok {
		raw = g
	}
	raw = strings.TrimPrefix(strings.TrimSpace(raw), "v")
	if _, err := version.NewVersion(raw); err != nil || raw == "" {
		return ""
	}
	return raw
}

// id is a record's stable id: gitea:<host>:<model>:<id>.
func (g *Gitea) id(model string, id int64) string {
	return fmt.Sprintf("gitea:%s:%s:%d", g.host, model, id)
}

// AuthError is a request the server refused for the token: it fails the
// whole integration.
type AuthError struct {
	URL    string
	Status int
	What   string
}

func (e *AuthError) Error() string {
	return fmt.Sprintf("gitea: %s at %s: the token was rejected (HTTP %d); check token: it may be wrong, expired or revoked", e.What, e.URL, e.Status)
}

// StatusError is an HTTP answer other than 2xx (after httpx's retries)
// about one object: an entity error, the export goes on.
type StatusError struct {
	What   string
	Status int
	Msg    string
}

func (e *StatusError) Error() string {
	return fmt.Sprintf("%s: HTTP %d: %s", e.What, e.Status, e.Msg)
}

// check turns an SDK answer into nil, an *AuthError (401), a *StatusError
// (any other answer), or a plain error (no answer: network, cancellation).
func (g *Gitea) check(what string, resp *sdk.Response, err error) error {
	if err == nil {
		return nil
	}
	if resp != nil && resp.Response != nil {
		if resp.StatusCode == http.StatusUnauthorized {
			return &AuthError{URL: g.base, Status: resp.StatusCode, What: what}
		}
		return &StatusError{What: what, Status: resp.StatusCode, Msg: g.redact(strings.TrimSpace(err.Error()))}
	}
	return g.scrub(fmt.Errorf("%s: %w", what, err))
}

// redact removes the token from text, should a server or a library ever
// echo it.
func (g *Gitea) redact(s string) string {
	if g.cfg.Token == "" {
		return s
	}
	return strings.ReplaceAll(s, string(g.cfg.Token), "[redacted]")
}

// scrub returns err, or an error with its text redacted if it held the
// token (losing its chain: a secret matters more).
func (g *Gitea) scrub(err error) error {
	if err == nil || string(g.cfg.Token) == "" || !strings.Contains(err.Error(), string(g.cfg.Token)) {
		return err
	}
	return errors.New(g.redact(err.Error()))
}

// isEntity reports whether err concerns one object (a repo, an
// organization, a repo whose git fetch failed) rather than the whole
// export.
func isEntity(err error) bool {
	var se *StatusError
	return errors.As(err, &se) || git.IsRepoError(err)
}
