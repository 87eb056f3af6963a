// Package bitbucket exports projects, repositories and pull requests with
// their activity (approvals, requests for changes, comments) from Bitbucket
// Cloud (REST API 2.0) or Bitbucket Data Center (REST API 1.0), one client
// per flavour behind one config, over the shared HTTP layer
// (integrations/httpx). Commits, branches and tags come through the git
// integration's mirrors. README.md has the config and every field.
package bitbucket

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"courier/integrations"
	"courier/integrations/httpx"
	"courier/sessions"
)

// Type is the integration's name.
const Type = "bitbucket"

// Flavours.
const (
	Cloud      = "cloud"
	DataCenter = "datacenter"
)

// cloudAPI is Bitbucket Cloud's API, the default url of the cloud flavour.
const cloudAPI = "https://api.bitbucket.org"

var (
	// pageSize is asked of every list (Cloud caps pagelen at 50 for pull
	// requests, 100 elsewhere; Data Center's limit defaults to 25 and is
	// capped by the server). It is also how many records go between two
	// checkpoints. A variable: tests page small.
	pageSize = 50
	// backoffInitial is httpx's first retry pause (tests shorten it).
	backoffInitial = 500 * time.Millisecond
)

const (
	parallelRepos = 2
	userAgent     = "courier-bitbucket"
)

func init() {
	integrations.Register(integrations.Registration{
		Type:      Type,
		NewConfig: func() integrations.Config { c := &Config{}; c.SetToDefault(); return c },
		New: func(opts integrations.Options, cfg integrations.Config) (integrations.Integration, error) {
			return New(opts, cfg.(*Config))
		},
		Objects: []string{integrations.ObjectRepos, integrations.ObjectProjects},
	})
}

// Config of the bitbucket integration.
type Config struct {
	// Flavour is cloud (Bitbucket Cloud) or datacenter (Bitbucket Data
	// Center or Server).
	Flavour string `json:"flavour" yaml:"flavour"`
	// URL is the API's base: https://api.bitbucket.org for Cloud (the
	// default), the server's base URL for Data Center.
	URL string `json:"url" yaml:"url"`
	// Token is an access token (sent as Bearer), or with Username the
	// password of Basic authentication (a Cloud API token with the
	// account's e-mail, a Data Center personal token or password).
	Token integrations.Secret `json:"token" yaml:"token"`
	// Username switches to Basic authentication.
	Username string `json:"username" yaml:"username"`
	// Workspaces (Cloud) whose repositories and projects are exported.
	Workspaces []string `json:"workspaces" yaml:"workspaces"`
	// Projects (Data Center project keys) whose repositories are exported.
	Projects []string `json:"projects" yaml:"projects"`
	// Repos, as workspace/slug (Cloud) or PROJECT/slug (Data Center),
	// narrow the export to exactly these repositories.
	Repos []string `json:"repos" yaml:"repos"`
	// CAFile is a PEM bundle added to the system's roots.
	CAFile string `json:"ca_file" yaml:"ca_file"`
}

// SetToDefault empties the config but for the flavour, cloud.
func (c *Config) SetToDefault() { *c = Config{Flavour: Cloud} }

// String shows the config without its token.
func (c Config) String() string {
	return fmt.Sprintf("{flavour:%s url:%s token:%s username:%s workspaces:%v projects:%v repos:%v ca_file:%s}",
		c.Flavour, c.URL, c.Token, c.Username, c.Workspaces, c.Projects, c.Repos, c.CAFile)
}

// GoString is String, so that %#v does not print the token either.
func (c Config) GoString() string { return c.String() }

// Validate names the key of every problem.
func (c *Config) Validate() error {
	var errs []error
	switch c.Flavour {
	case Cloud, DataCenter:
		if _, err := c.base(); err != nil {
			errs = append(errs, err)
		}
	default:
		errs = append(errs, fmt.Errorf("flavour: %q is neither %s nor %s", c.Flavour, Cloud, DataCenter))
	}
	if strings.TrimSpace(string(c.Token)) == "" {
		errs = append(errs, errors.New("token: required (a Bitbucket access token, API token or password)"))
	} else if strings.ContainsAny(string(c.Token), " \t\r\n") {
		errs = append(errs, errors.New("token: contains white space (a copy-paste mistake?)"))
	}
	if strings.ContainsAny(c.Username, ":\r\n") {
		errs = append(errs, errors.New("username: must not contain ':' or a line break"))
	}
	if c.Flavour == Cloud && len(c.Projects) > 0 {
		errs = append(errs, errors.New("projects: Data Center project keys; with flavour cloud, name workspaces"))
	}
	if c.Flavour == DataCenter && len(c.Workspaces) > 0 {
		errs = append(errs, errors.New("workspaces: Bitbucket Cloud only; with flavour datacenter, name projects"))
	}
	if len(c.Workspaces)+len(c.Projects)+len(c.Repos) == 0 {
		if c.Flavour == DataCenter {
			errs = append(errs, errors.New("projects, repos: give at least one"))
		} else {
			errs = append(errs, errors.New("workspaces, repos: give at least one"))
		}
	}
	errs = append(errs, names("workspaces", c.Workspaces)...)
	errs = append(errs, names("projects", c.Projects)...)
	seen := map[string]int{}
	for i, r := range c.Repos {
		owner, slug, ok := strings.Cut(r, "/")
		if !ok || owner == "" || slug == "" || strings.Contains(slug, "/") || strings.ContainsAny(r, " \t\r\n") {
			errs = append(errs, fmt.Errorf("repos[%d]: %q is not %s/slug", i, r, c.ownerWord()))
			continue
		}
		if j, dup := seen[strings.ToLower(r)]; dup {
			errs = append(errs, fmt.Errorf("repos[%d]: %q is repos[%d] again", i, r, j))
		}
		seen[strings.ToLower(r)] = i
	}
	return errors.Join(errs...)
}

func (c *Config) ownerWord() string {
	if c.Flavour == DataCenter {
		return "PROJECT"
	}
	return "workspace"
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

// base checks url and returns it without a trailing slash (nor a trailing
// /2.0 or /rest/api/1.0, which are accepted and dropped).
func (c *Config) base() (*url.URL, error) {
	raw := strings.TrimSpace(c.URL)
	if raw == "" {
		if c.Flavour == DataCenter {
			return nil, errors.New("url: required with flavour datacenter (the server's base URL, https://bitbucket.example.com)")
		}
		raw = cloudAPI
	}
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, errors.New("url: must be an http(s) URL such as https://bitbucket.example.com")
	}
	if u.User != nil {
		return nil, errors.New("url: must not carry credentials; put them in username and token")
	}
	if u.RawQuery != "" || u.Fragment != "" {
		return nil, errors.New("url: must not have a query or a fragment")
	}
	p := strings.TrimSuffix(u.Path, "/")
	p = strings.TrimSuffix(strings.TrimSuffix(p, "/2.0"), "/rest/api/1.0")
	u.Path, u.RawPath = strings.TrimSuffix(p, "/"), ""
	return u, nil
}

// Bitbucket is one configured instance.
type Bitbucket struct {
	opts integrations.Options
	cfg  Config
	log  zerolog.Logger
	api  api
	base *url.URL
	// host names the server in record ids: bitbucket.org for Cloud's API.
	host string
	http *http.Client

	mu       sync.Mutex
	root     *sessions.Session // while exporting: told of rate-limit waits
	reposCur int64
	reposAll int64
}

// New builds an instance from a validated config.
func New(opts integrations.Options, cfg *Config) (*Bitbucket, error) {
	u, err := cfg.base()
	if err != nil {
		return nil, err
	}
	b := &Bitbucket{opts: opts, cfg: *cfg, log: opts.Logger, base: u, host: u.Host}
	if u.Host == "api.bitbucket.org" {
		b.host = "bitbucket.org"
	}
	tr, err := httpx.New(httpx.Options{
		CAFile:         cfg.CAFile,
		UserAgent:      userAgent,
		Logger:         opts.Logger,
		Auth:           b.auth,
		RateLimit:      rateLimit,
		BackoffInitial: backoffInitial,
		OnWait:         func(time.Duration, string) { b.touch() },
	})
	if err != nil {
		return nil, err
	}
	b.http = tr.Client()
	c := &client{b: b}
	if cfg.Flavour == DataCenter {
		b.api = &dcAPI{c: c}
	} else {
		b.api = &cloudAPIClient{c: c}
	}
	return b, nil
}

// auth sets the credentials; httpx adds them only for the host a request
// chain started at, and client.get refuses to follow a page link to
// another host.
func (b *Bitbucket) auth(r *http.Request) {
	if b.cfg.Username != "" {
		r.SetBasicAuth(b.cfg.Username, string(b.cfg.Token))
		return
	}
	r.Header.Set("Authorization", "Bearer "+string(b.cfg.Token))
}

func (b *Bitbucket) touch() {
	b.mu.Lock()
	root, cur, all := b.root, b.reposCur, b.reposAll
	b.mu.Unlock()
	if root != nil {
		root.Progress(cur, all)
	}
}

func (b *Bitbucket) progress(done, total int64) {
	b.mu.Lock()
	b.reposCur, b.reposAll = done, total
	root := b.root
	b.mu.Unlock()
	if root != nil {
		root.Progress(done, total)
	}
}

// id is a record's stable id: bitbucket:<host>:<model>:<key>.
func (b *Bitbucket) id(model, key string) string {
	return "bitbucket:" + b.host + ":" + model + ":" + key
}

// redact removes the token from text, should a server ever echo it.
func (b *Bitbucket) redact(s string) string {
	if b.cfg.Token == "" {
		return s
	}
	return strings.ReplaceAll(s, string(b.cfg.Token), "[redacted]")
}
