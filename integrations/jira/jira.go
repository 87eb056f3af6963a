// Package jira exports projects, issues (with their changelog), issue
// comments and users of Jira Cloud and Jira Data Center over Jira's REST API
// (version 2 on both; see README.md for the config, the models and how the
// incremental export works).
package jira

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"time"
	_ "time/tzdata" // Jira names the user's zone; a host without zoneinfo must still find it

	"courier/integrations"
	"courier/integrations/httpx"
	"courier/internal/safefile"
)

// Type is the integration's name.
const Type = "jira"

func init() {
	integrations.Register(integrations.Registration{
		Type:      Type,
		NewConfig: func() integrations.Config { c := &Config{}; c.SetToDefault(); return c },
		New: func(opts integrations.Options, cfg integrations.Config) (integrations.Integration, error) {
			return New(opts, cfg.(*Config))
		},
		Objects: []string{integrations.ObjectProjects, integrations.ObjectUsers},
	})
}

// Config of the jira integration. Exactly one of the two credential forms
// is given: email + api_token (Jira Cloud, HTTP Basic) or
// personal_access_token (Data Center, Bearer).
type Config struct {
	// URL is the site: https://acme.atlassian.net, or a Data Center base
	// URL, possibly with a context path (https://jira.corp/jira).
	URL                 string              `json:"url" yaml:"url"`
	Email               string              `json:"email" yaml:"email"`
	APIToken            integrations.Secret `json:"api_token" yaml:"api_token"`
	PersonalAccessToken integrations.Secret `json:"personal_access_token" yaml:"personal_access_token"`
	// Projects, when given, are the only project keys exported.
	Projects []string `json:"projects" yaml:"projects"`
	// CAFile adds a PEM bundle to the system's roots (a private CA).
	CAFile string `json:"ca_file" yaml:"ca_file"`
	// TimeZone overrides the user's time zone that Jira reports (an IANA
	// name): the zone JQL date literals are read in.
	TimeZone string `json:"time_zone" yaml:"time_zone"`
}

// SetToDefault empties the config: every key is either required or
// optional without a default.
func (c *Config) SetToDefault() { *c = Config{} }

// projectKeyRe is what a project key may hold. Jira's default pattern is
// stricter ([A-Z][A-Z0-9_]+); Data Center lets an admin change it.
var projectKeyRe = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9_]*$`)

// Validate names the key of every problem. It never repeats a secret.
func (c *Config) Validate() error {
	var errs []error
	if _, err := parseBaseURL(c.URL); err != nil {
		errs = append(errs, fmt.Errorf("url: %w", err))
	}
	cloud := c.Email != "" || c.APIToken != ""
	dc := c.PersonalAccessToken != ""
	switch {
	case cloud && dc:
		errs = append(errs, errors.New("give either email + api_token (Jira Cloud) or personal_access_token (Data Center), not both"))
	case !cloud && !dc:
		errs = append(errs, errors.New("credentials missing: give email + api_token (Jira Cloud) or personal_access_token (Data Center)"))
	case cloud && c.Email == "":
		errs = append(errs, errors.New("email: required with api_token (the Atlassian account's email)"))
	case cloud && c.APIToken == "":
		errs = append(errs, errors.New("api_token: required with email (create one at https://id.atlassian.com/manage-profile/security/api-tokens)"))
	}
	if cloud && c.Email != "" && !strings.Contains(c.Email, "@") {
		errs = append(errs, errors.New("email: not an email address"))
	}
	for name, v := range map[string]string{"api_token": string(c.APIToken), "personal_access_token": string(c.PersonalAccessToken)} {
		if v != "" && strings.TrimSpace(v) != v {
			errs = append(errs, fmt.Errorf("%s: has leading or trailing spaces", name))
		}
	}
	seen := map[string]int{}
	for i, k := range c.Projects {
		if !projectKeyRe.MatchString(k) {
			errs = append(errs, fmt.Errorf("projects[%d]: %q is not a project key (letters, digits and _, starting with a letter)", i, k))
			continue
		}
		if j, dup := seen[strings.ToUpper(k)]; dup {
			errs = append(errs, fmt.Errorf("projects[%d]: %s is projects[%d] again", i, k, j))
			continue
		}
		seen[strings.ToUpper(k)] = i
	}
	if c.TimeZone != "" {
		if _, err := time.LoadLocation(c.TimeZone); err != nil {
			errs = append(errs, fmt.Errorf("time_zone: %q is not a time zone name (use an IANA name such as Europe/Berlin)", c.TimeZone))
		}
	}
	if c.CAFile != "" {
		if _, err := safefile.Read("ca_file", c.CAFile, 0, 0); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// parseBaseURL checks the site's URL and returns it without a trailing
// slash. A URL holding credentials is refused without repeating them.
func parseBaseURL(raw string) (*url.URL, error) {
	if raw == "" {
		return nil, errors.New("required: the Jira site, e.g. https://acme.atlassian.net")
	}
	u, err := url.Parse(raw)
	if err != nil {
		return nil, errors.New("not a valid URL")
	}
	if u.User != nil {
		return nil, errors.New("must not hold credentials: use email + api_token or personal_access_token")
	}
	if u.Scheme != "https" && u.Scheme != "http" {
		return nil, fmt.Errorf("scheme must be https or http, not %q", u.Scheme)
	}
	if u.Host == "" {
		return nil, errors.New("has no host")
	}
	if u.RawQuery != "" || u.Fragment != "" {
		return nil, errors.New("must be the site's base URL, without a query or fragment")
	}
	u.Path = strings.TrimRight(u.Path, "/")
	u.RawPath = ""
	return u, nil
}

// authHint is what a refused login asks the user to check.
func (c *Config) authHint() string {
	if c.PersonalAccessToken != "" {
		return "personal_access_token"
	}
	return "email/api_token"
}

// Jira is one configured instance.
type Jira struct {
	opts integrations.Options
	cfg  Config
	api  *client
	host string

	// waitMu guards onWait: what the running export does when the HTTP
	// layer waits (a rate limit, a retry), so the wait shows as progress.
	waitMu sync.Mutex
	onWait func()
}

// Tunables (variables so tests can shrink them).
var (
	// pageSize is maxResults of an issue search page.
	pageSize = 100
	// subPageSize is maxResults of comment and changelog pages.
	subPageSize = 100
	// userPageSize is maxResults of a user search page.
	userPageSize = 1000
	// projectPageSize is maxResults of a project page (Cloud).
	projectPageSize = 50
	// parallelProjects is how many projects are exported at once.
	parallelProjects = 2
	// parallelIssues is how many issues of a page fetch their comments or
	// changelog at once.
	parallelIssues = 4
	// backoffInitial is the HTTP layer's first retry pause.
	backoffInitial = 500 * time.Millisecond
)

// New builds an instance from a validated config.
func New(opts integrations.Options, cfg *Config) (*Jira, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("jira config: %w", err)
	}
	base, _ := parseBaseURL(cfg.URL)
	j := &Jira{opts: opts, cfg: *cfg, host: base.Host}
	auth := basicAuth(cfg.Email, string(cfg.APIToken))
	if cfg.PersonalAccessToken != "" {
		auth = "Bearer " + string(cfg.PersonalAccessToken)
	}
	tr, err := httpx.New(httpx.Options{
		CAFile:         cfg.CAFile,
		UserAgent:      "courier",
		Auth:           func(r *http.Request) { r.Header.Set("Authorization", auth) },
		RateLimit:      rateLimit,
		OnWait:         j.waited,
		BackoffInitial: backoffInitial,
		Logger:         opts.Logger,
	})
	if err != nil {
		return nil, fmt.Errorf("jira: %w", err)
	}
	j.api = &client{base: base, http: tr.Client(), hint: cfg.authHint()}
	return j, nil
}

// waited is told of every wait of the HTTP layer.
func (j *Jira) waited(d time.Duration, reason string) {
	j.opts.Logger.Info().Dur("wait_ms", d).Str("reason", reason).Msg("waiting before asking Jira again")
	j.waitMu.Lock()
	f := j.onWait
	j.waitMu.Unlock()
	if f != nil {
		f()
	}
}

func (j *Jira) setOnWait(f func()) {
	j.waitMu.Lock()
	j.onWait = f
	j.waitMu.Unlock()
}

// recordID is a record's stable id: jira:<host>:<model>:<id>.
func (j *Jira) recordID(model, id string) string {
	return "jira:" + j.host + ":" + model + ":" + id
}

// Validate checks that the credentials work, reports the deployment and
// the user's time zone, and that every configured project exists and can
// be browsed.
func (j *Jira) Validate(ctx context.Context) integrations.Validation {
	v := integrations.Validation{Valid: true, Errors: []string{}, Details: map[string]any{}}
	s, err := j.connect(ctx)
	if err != nil {
		v.Problem(err.Error())
		if j.cfg.PersonalAccessToken != "" && strings.HasSuffix(j.host, ".atlassian.net") {
			v.Problem("personal_access_token: Jira Cloud does not accept personal access tokens; give email + api_token")
		}
		return v
	}
	v.Details["deployment_type"] = s.deployment
	v.Details["version"] = s.version
	v.Details["auth"] = map[bool]string{true: "personal_access_token", false: "api_token"}[j.cfg.PersonalAccessToken != ""]
	v.Details["user"] = s.me.DisplayName
	v.Details["user_time_zone"] = s.me.TimeZone
	v.Details["time_zone"] = s.zoneName
	if s.zoneNote != "" {
		v.Details["time_zone_note"] = s.zoneNote
	}
	if s.cloud && j.cfg.PersonalAccessToken != "" {
		v.Problem("personal_access_token: this is Jira Cloud, which needs email + api_token")
	}
	if len(j.cfg.Projects) == 0 {
		n, err := j.countProjects(ctx, s)
		if err != nil {
			v.Problem(fmt.Sprintf("cannot list projects: %v", err))
		} else {
			v.Details["projects_visible"] = n
			if n == 0 {
				v.Problem("projects: the user sees no project; nothing would be exported")
			}
		}
		return v
	}
	var details []map[string]any
	for _, key := range j.cfg.Projects {
		d := map[string]any{"key": key, "found": false, "browsable": false}
		details = append(details, d)
		p, err := j.api.project(ctx, key)
		if err != nil {
			if isCredentials(err) {
				v.Problem(err.Error())
				break
			}
			v.Problem(fmt.Sprintf("projects: %s: %s", key, projectProblem(err)))
			continue
		}
		d["found"], d["id"], d["name"] = true, p.ID, p.Name
		ok, known, err := j.api.canBrowse(ctx, key)
		switch {
		case err != nil:
			v.Problem(fmt.Sprintf("projects: %s: cannot check permissions: %v", key, err))
		case known && !ok:
			v.Problem(fmt.Sprintf("projects: %s: the user lacks the Browse Projects permission", key))
		default:
			d["browsable"] = true
		}
	}
	v.Details["projects"] = details
	return v
}

// projectProblem says why a project cannot be read.
func projectProblem(err error) string {
	var ae *apiError
	if errors.As(err, &ae) && (ae.Status == 404 || ae.Status == 403) {
		return fmt.Sprintf("no such project, or the user cannot see it (%d)", ae.Status)
	}
	return err.Error()
}

// Onboard lists every project the user can see (the projects filter does
// not apply: onboarding is how a person picks it) or every user.
func (j *Jira) Onboard(ctx context.Context, objectType string, emit func(integrations.Object) error) error {
	switch objectType {
	case integrations.ObjectProjects, integrations.ObjectUsers:
	default:
		return fmt.Errorf("%w: %q (jira lists projects and users)", integrations.ErrUnsupportedObject, objectType)
	}
	s, err := j.connect(ctx)
	if err != nil {
		return err
	}
	if objectType == integrations.ObjectUsers {
		return j.api.users(ctx, s.cloud, func(u apiUser) error {
			m := j.user(&u)
			return emit(integrations.Object{ID: j.recordID(ModelUser, m.ID), Name: m.DisplayName,
				Data: map[string]any{"id": m.ID, "email": m.Email, "active": m.Active, "account_type": m.AccountType, "username": m.Username}})
		})
	}
	return j.api.allProjects(ctx, s.cloud, func(p apiProject) error {
		return emit(integrations.Object{ID: j.recordID(ModelProject, p.ID), Name: p.Key + ": " + p.Name,
			Data: map[string]any{"id": p.ID, "key": p.Key, "name": p.Name, "project_type": p.ProjectTypeKey}})
	})
}

// site is what an operation learns first: who the user is, which Jira this
// is and the zone JQL reads dates in.
type site struct {
	cloud      bool
	deployment string
	version    string
	me         apiUser
	// zone is the zone of JQL date literals; nil when unknown (then
	// bounds are widened by the largest offset there is).
	zone     *time.Location
	zoneName string
	zoneNote string
}

// connect reads /myself (the credentials) and /serverInfo (the deployment).
func (j *Jira) connect(ctx context.Context) (*site, error) {
	s := &site{}
	if err := j.api.get(ctx, "rest/api/2/myself", nil, &s.me); err != nil {
		if isCredentials(err) {
			return nil, err
		}
		// Every signed-in user may read /myself: a 403 there is a login
		// Jira does not accept (Cloud answers a password given as the
		// api_token so).
		var ae *apiError
		if errors.As(err, &ae) && ae.Status == http.StatusForbidden {
			return nil, &credentialsError{status: ae.Status, hint: j.api.hint, reason: ae.Msg}
		}
		return nil, fmt.Errorf("cannot reach Jira at %s: %w", j.api.base.Redacted(), err)
	}
	var info apiServerInfo
	if err := j.api.get(ctx, "rest/api/2/serverInfo", nil, &info); err != nil {
		return nil, fmt.Errorf("read Jira's server info: %w", err)
	}
	s.deployment, s.version = info.DeploymentType, info.Version
	s.cloud = strings.EqualFold(info.DeploymentType, "Cloud")
	name := j.cfg.TimeZone
	if name == "" {
		name = s.me.TimeZone
	} else if s.me.TimeZone != "" && s.me.TimeZone != name {
		s.zoneNote = fmt.Sprintf("time_zone %s overrides the user's %s", name, s.me.TimeZone)
	}
	if name != "" {
		loc, err := time.LoadLocation(name)
		if err == nil {
			s.zone, s.zoneName = loc, name
		} else {
			s.zoneNote = fmt.Sprintf("unknown time zone %q; JQL bounds are widened by %s", name, unknownZoneMargin)
		}
	} else {
		s.zoneNote = fmt.Sprintf("Jira reported no time zone for the user; JQL bounds are widened by %s (set time_zone)", unknownZoneMargin)
	}
	if s.zoneNote != "" && s.zone == nil {
		j.opts.Logger.Warn().Msg(s.zoneNote)
	}
	return s, nil
}

func (j *Jira) countProjects(ctx context.Context, s *site) (int, error) {
	n := 0
	err := j.api.allProjects(ctx, s.cloud, func(apiProject) error { n++; return nil })
	return n, err
}
