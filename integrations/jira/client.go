package jira

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"courier/integrations/httpx"
)

// client speaks Jira's REST API through the shared HTTP layer (retries,
// rate limits, TLS, credentials kept out of messages).
type client struct {
	base *url.URL
	http *http.Client
	// hint is the config keys a refused login points at.
	hint string
}

func basicAuth(email, token string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(email+":"+token))
}

// errCredentials marks a refused login: it fails the whole export, never
// one project.
var errCredentials = errors.New("the Jira credentials were refused")

// credentialsError is a refused login, saying which keys to check.
type credentialsError struct {
	status int
	hint   string
	reason string
}

func (e *credentialsError) Error() string {
	if e.reason != "" {
		return fmt.Sprintf("the Jira credentials were refused (%d, %s): check %s", e.status, e.reason, e.hint)
	}
	return fmt.Sprintf("the Jira credentials were refused (%d): check %s", e.status, e.hint)
}

func (e *credentialsError) Is(target error) bool { return target == errCredentials }

func isCredentials(err error) bool { return errors.Is(err, errCredentials) }

// apiError is a non-2xx answer, with Jira's own messages when its body is
// Jira's error shape ({"errorMessages": [...], "errors": {...}}).
type apiError struct {
	Method string
	Path   string
	Status int
	Msg    string
}

func (e *apiError) Error() string {
	s := fmt.Sprintf("%s %s: HTTP %d", e.Method, e.Path, e.Status)
	if e.Msg != "" {
		s += ": " + e.Msg
	}
	return s
}

// check turns a non-2xx answer into an apiError or a credentialsError.
func (c *client) check(resp *http.Response) error {
	err := httpx.Check(resp)
	if err == nil {
		return nil
	}
	var he *httpx.Error
	if !errors.As(err, &he) {
		return err
	}
	// Data Center answers a login that needs a CAPTCHA (after failed
	// attempts) with 403 and this header, before checking any permission.
	if reason := resp.Header.Get("X-Seraph-LoginReason"); he.Status == http.StatusForbidden &&
		(strings.Contains(reason, "AUTHENTICATION_DENIED") || strings.Contains(reason, "AUTHENTICATED_FAILED")) {
		return &credentialsError{status: he.Status, hint: c.hint, reason: "Jira wants a CAPTCHA solved after failed logins: log in once in a browser"}
	}
	if he.Status == http.StatusUnauthorized {
		return &credentialsError{status: he.Status, hint: c.hint}
	}
	return &apiError{Method: resp.Request.Method, Path: resp.Request.URL.Path, Status: he.Status, Msg: jiraMessage(he.Body)}
}

// jiraMessage extracts Jira's messages from an error body, or a short form
// of a body that is not Jira's (a proxy's HTML page).
func jiraMessage(body string) string {
	var e struct {
		ErrorMessages []string          `json:"errorMessages"`
		Errors        map[string]string `json:"errors"`
		Message       string            `json:"message"`
	}
	if json.Unmarshal([]byte(body), &e) == nil {
		msgs := append([]string(nil), e.ErrorMessages...)
		for k, v := range e.Errors {
			msgs = append(msgs, k+": "+v)
		}
		if e.Message != "" {
			msgs = append(msgs, e.Message)
		}
		if len(msgs) > 0 {
			return strings.Join(msgs, "; ")
		}
	}
	if strings.HasPrefix(strings.TrimSpace(body), "<") {
		return "(an HTML page, not Jira's JSON: a proxy or login page?)"
	}
	if len(body) > 300 {
		body = body[:300] + "…"
	}
	return body
}

// get fetches base/path?q and decodes the JSON answer into out. Path
// elements that come from data must be escaped by the caller.
func (c *client) get(ctx context.Context, path string, q url.Values, out any) error {
	u := c.base.JoinPath(path)
	u.RawQuery = q.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return err
	}
	req.Header.Set("Accept", "application/json")
	resp, err := c.http.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return context.Cause(ctx)
		}
		return err
	}
	if err := c.check(resp); err != nil {
		return err
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("GET %s: read the answer: %w", u.Path, err)
	}
	return nil
}

// rateLimit reads Jira's rate limiting: 429 with Retry-After (seconds),
// else X-RateLimit-Reset (Cloud: an ISO 8601 time). Jira never rate limits
// with 403, so unlike the default a 403 is always an answer.
func rateLimit(resp *http.Response) (time.Duration, bool) {
	if resp.StatusCode != http.StatusTooManyRequests {
		return 0, false
	}
	now := time.Now()
	if ra, ok := httpx.RetryAfter(resp.Header, now); ok {
		return max(ra, time.Second), true
	}
	if v := resp.Header.Get("X-RateLimit-Reset"); v != "" {
		if t, err := time.Parse(time.RFC3339, v); err == nil {
			return max(t.Sub(now), time.Second), true
		}
		if s, err := strconv.ParseInt(v, 10, 64); err == nil {
			return max(time.Until(time.Unix(s, 0)), time.Second), true
		}
	}
	return 10 * time.Second, true
}

// project reads one project by key (or id).
func (c *client) project(ctx context.Context, key string) (apiProject, error) {
	var p apiProject
	err := c.get(ctx, "rest/api/2/project/"+url.PathEscape(key), url.Values{"expand": {"description,lead"}}, &p)
	return p, err
}

// canBrowse asks whether the user may browse a project. known is false
// when Jira's answer names neither permission key (very old versions).
func (c *client) canBrowse(ctx context.Context, key string) (ok, known bool, err error) {
	var r struct {
		Permissions map[string]struct {
			HavePermission bool `json:"havePermission"`
		} `json:"permissions"`
	}
	q := url.Values{"projectKey": {key}, "permissions": {"BROWSE_PROJECTS"}}
	if err := c.get(ctx, "rest/api/2/mypermissions", q, &r); err != nil {
		return false, false, err
	}
	for _, k := range []string{"BROWSE_PROJECTS", "BROWSE"} {
		if p, found := r.Permissions[k]; found {
			return p.HavePermission, true, nil
		}
	}
	return false, false, nil
}

// allProjects lists every project the user can see: Cloud pages through
// /project/search; Data Center answers /project with all of them at once.
func (c *client) allProjects(ctx context.Context, cloud bool, fn func(apiProject) error) error {
	if !cloud {
		var ps []apiProject
		if err := c.get(ctx, "rest/api/2/project", url.Values{"expand": {"description,lead"}}, &ps); err != nil {
			return err
		}
		for _, p := range ps {
			if err := fn(p); err != nil {
				return err
			}
		}
		return nil
	}
	seen := map[string]bool{}
	for start := 0; ; {
		var pg struct {
			StartAt    int          `json:"startAt"`
			MaxResults int          `json:"maxResults"`
			Total      int          `json:"total"`
			IsLast     bool         `json:"isLast"`
			Values     []apiProject `json:"values"`
		}
		q := url.Values{"startAt": {strconv.Itoa(start)}, "maxResults": {strconv.Itoa(projectPageSize)},
			"expand": {"description,lead"}, "orderBy": {"key"}}
		if err := c.get(ctx, "rest/api/2/project/search", q, &pg); err != nil {
			return err
		}
		fresh := 0
		for _, p := range pg.Values {
			if seen[p.ID] {
				continue
			}
			seen[p.ID] = true
			fresh++
			if err := fn(p); err != nil {
				return err
			}
		}
		start += len(pg.Values)
		if pg.IsLast || len(pg.Values) == 0 || fresh == 0 || (pg.Total > 0 && start >= pg.Total) {
			return nil
		}
	}
}

// users lists every user. Cloud: /users/search (all users, including
// apps and inactive ones); Data Center: /user/search with username "."
// (matches everyone), inactive ones included. Both page by startAt and
// may answer a page shorter than asked while more follow, so only an empty
// page (or one with nothing new) ends the listing.
func (c *client) users(ctx context.Context, cloud bool, fn func(apiUser) error) error {
	seen := map[string]bool{}
	for start := 0; ; {
		var us []apiUser
		q := url.Values{"startAt": {strconv.Itoa(start)}, "maxResults": {strconv.Itoa(userPageSize)}}
		path := "rest/api/2/users/search"
		if !cloud {
			path = "rest/api/2/user/search"
			q.Set("username", ".")
			q.Set("includeInactive", "true")
			q.Set("includeActive", "true")
		}
		if err := c.get(ctx, path, q, &us); err != nil {
			return err
		}
		fresh := 0
		for _, u := range us {
			id := userID(&u)
			if seen[id] {
				continue
			}
			seen[id] = true
			fresh++
			if err := fn(u); err != nil {
				return err
			}
		}
		if len(us) == 0 || fresh == 0 {
			return nil
		}
		start += len(us)
	}
}

// searchPage is one page of an issue search, whichever endpoint gave it.
type searchPage struct {
	Issues []apiIssue
	// Remaining is how many results follow this page (Data Center), -1
	// when unknown (Cloud).
	Remaining int
	// Last says no page follows.
	Last bool
	// Next is Cloud's token for the next page.
	Next string
}

// searchFields and searchExpand ask for every field and the changelog.
const (
	searchFields = "*all"
	searchExpand = "changelog"
)

// searchDC runs /rest/api/2/search (Data Center; Cloud has removed it)
// from startAt.
func (c *client) searchDC(ctx context.Context, jql string, startAt, limit int) (searchPage, error) {
	var r struct {
		StartAt    int        `json:"startAt"`
		MaxResults int        `json:"maxResults"`
		Total      int        `json:"total"`
		Issues     []apiIssue `json:"issues"`
	}
	q := url.Values{"jql": {jql}, "startAt": {strconv.Itoa(startAt)}, "maxResults": {strconv.Itoa(limit)},
		"fields": {searchFields}, "expand": {searchExpand}}
	if err := c.get(ctx, "rest/api/2/search", q, &r); err != nil {
		return searchPage{}, err
	}
	last := len(r.Issues) == 0 || r.StartAt+len(r.Issues) >= r.Total
	return searchPage{Issues: r.Issues, Remaining: max(r.Total-r.StartAt-len(r.Issues), 0), Last: last}, nil
}

// searchCloud runs Cloud's enhanced search, /rest/api/2/search/jql, which
// pages by nextPageToken and reports no total.
func (c *client) searchCloud(ctx context.Context, jql, token string, limit int) (searchPage, error) {
	var r struct {
		Issues        []apiIssue `json:"issues"`
		NextPageToken string     `json:"nextPageToken"`
		IsLast        *bool      `json:"isLast"`
	}
	q := url.Values{"jql": {jql}, "maxResults": {strconv.Itoa(limit)}, "fields": {searchFields}, "expand": {searchExpand}}
	if token != "" {
		q.Set("nextPageToken", token)
	}
	if err := c.get(ctx, "rest/api/2/search/jql", q, &r); err != nil {
		return searchPage{}, err
	}
	last := r.NextPageToken == "" || (r.IsLast != nil && *r.IsLast)
	return searchPage{Issues: r.Issues, Remaining: -1, Last: last, Next: r.NextPageToken}, nil
}

// comments reads every comment of an issue, oldest first. A total that
// changes between pages (a comment added or deleted meanwhile) restarts the
// listing once or twice, so a shift cannot skip one.
func (c *client) comments(ctx context.Context, issueID string) ([]apiComment, error) {
	for attempt := 0; ; attempt++ {
		var out []apiComment
		total, stable := -1, true
		for start := 0; ; {
			var pg apiCommentPage
			q := url.Values{"startAt": {strconv.Itoa(start)}, "maxResults": {strconv.Itoa(subPageSize)}, "orderBy": {"created"}}
			if err := c.get(ctx, "rest/api/2/issue/"+url.PathEscape(issueID)+"/comment", q, &pg); err != nil {
				return nil, err
			}
			if total >= 0 && pg.Total != total {
				stable = false
			}
			total = pg.Total
			out = append(out, pg.Comments...)
			start += len(pg.Comments)
			if len(pg.Comments) == 0 || start >= pg.Total {
				break
			}
		}
		if stable || attempt >= 2 {
			return out, nil
		}
	}
}

// changelog reads an issue's whole changelog when the search gave only
// part of it. Cloud pages through /issue/{id}/changelog; Data Center has
// no such endpoint but gives the whole changelog with the issue.
func (c *client) changelog(ctx context.Context, issueID string, cloud bool) ([]apiHistory, error) {
	if !cloud {
		var is apiIssue
		q := url.Values{"fields": {"updated"}, "expand": {"changelog"}}
		if err := c.get(ctx, "rest/api/2/issue/"+url.PathEscape(issueID), q, &is); err != nil {
			return nil, err
		}
		if is.Changelog == nil {
			return nil, nil
		}
		return is.Changelog.Histories, nil
	}
	var out []apiHistory
	seen := map[string]bool{}
	for start := 0; ; {
		var pg struct {
			StartAt    int          `json:"startAt"`
			MaxResults int          `json:"maxResults"`
			Total      int          `json:"total"`
			IsLast     bool         `json:"isLast"`
			Values     []apiHistory `json:"values"`
		}
		q := url.Values{"startAt": {strconv.Itoa(start)}, "maxResults": {strconv.Itoa(subPageSize)}}
		if err := c.get(ctx, "rest/api/2/issue/"+url.PathEscape(issueID)+"/changelog", q, &pg); err != nil {
			return nil, err
		}
		for _, h := range pg.Values {
			if !seen[h.ID] {
				seen[h.ID] = true
				out = append(out, h)
			}
		}
		start += len(pg.Values)
		if pg.IsLast || len(pg.Values) == 0 || start >= pg.Total {
			return out, nil
		}
	}
}

// fieldNames maps field ids to names (custom fields have ids only).
func (c *client) fieldNames(ctx context.Context) (map[string]string, error) {
	var fs []struct {
		ID   string `json:"id"`
		Name string `json:"name"`
	}
	if err := c.get(ctx, "rest/api/2/field", nil, &fs); err != nil {
		return nil, err
	}
	m := make(map[string]string, len(fs))
	for _, f := range fs {
		m[f.ID] = f.Name
	}
	return m, nil
}
