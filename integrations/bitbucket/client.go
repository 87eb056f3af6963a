package bitbucket

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"courier/integrations/git"
	"courier/integrations/httpx"
)

// client speaks either flavour's JSON over the shared HTTP layer.
type client struct{ b *Bitbucket }

// AuthError is a request the server refused for the credentials: it fails
// the whole integration.
type AuthError struct {
	URL    string
	Status int
}

func (e *AuthError) Error() string {
	return fmt.Sprintf("bitbucket: %s: the credentials were rejected (HTTP %d); check token (and username): it may be wrong, expired or revoked", e.URL, e.Status)
}

// StatusError is an answer other than 2xx (after httpx's retries) about
// one object: an entity error, the export goes on.
type StatusError struct {
	What   string
	Status int
	Msg    string
}

func (e *StatusError) Error() string {
	return fmt.Sprintf("%s: HTTP %d: %s", e.What, e.Status, e.Msg)
}

// isEntity reports whether err concerns one object (a repo, a workspace,
// a project, a repo whose git fetch failed) rather than the whole export.
func isEntity(err error) bool {
	var se *StatusError
	return errors.As(err, &se) || git.IsRepoError(err)
}

// get fetches the API path (relative to the base URL, elements escaped by
// the caller) or an absolute URL on the same host (Cloud's "next" links),
// and decodes the JSON answer into out. It returns the answer's Date.
func (c *client) get(ctx context.Context, what, ref string, q url.Values, out any) (time.Time, error) {
	b := c.b
	var u *url.URL
	if strings.HasPrefix(ref, "http://") || strings.HasPrefix(ref, "https://") {
		var err error
		if u, err = url.Parse(ref); err != nil {
			return time.Time{}, fmt.Errorf("%s: bad page link: %w", what, err)
		}
		// A link elsewhere would take the credentials with it.
		if u.Scheme != b.base.Scheme || u.Host != b.base.Host {
			return time.Time{}, &StatusError{What: what, Status: 0, Msg: fmt.Sprintf("the server's page link points at %s://%s, not at url (%s)", u.Scheme, u.Host, b.base)}
		}
	} else {
		u = b.base.JoinPath(ref)
		u.RawQuery = q.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return time.Time{}, err
	}
	req.Header.Set("Accept", "application/json")
	resp, err := b.http.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return time.Time{}, context.Cause(ctx)
		}
		return time.Time{}, errors.New(b.redact(fmt.Sprintf("%s: %v", what, err)))
	}
	if err := httpx.Check(resp); err != nil {
		var he *httpx.Error
		if errors.As(err, &he) {
			if he.Status == http.StatusUnauthorized {
				return time.Time{}, &AuthError{URL: b.base.String(), Status: he.Status}
			}
			return time.Time{}, &StatusError{What: what, Status: he.Status, Msg: b.redact(message(he.Body))}
		}
		return time.Time{}, err
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return time.Time{}, fmt.Errorf("%s: read the answer: %w", what, err)
	}
	d, _ := http.ParseTime(resp.Header.Get("Date"))
	return d, nil
}

// message extracts Bitbucket's error text: Cloud's {"type": "error",
// "error": {"message": ...}}, Data Center's {"errors": [{"message": ...}]}.
func message(body string) string {
	var e struct {
		Error *struct {
			Message string `json:"message"`
			Detail  string `json:"detail"`
		} `json:"error"`
		Errors []struct {
			Message string `json:"message"`
		} `json:"errors"`
	}
	if json.Unmarshal([]byte(body), &e) == nil {
		var msgs []string
		if e.Error != nil {
			msgs = append(msgs, strings.TrimSpace(e.Error.Message+" "+e.Error.Detail))
		}
		for _, m := range e.Errors {
			msgs = append(msgs, m.Message)
		}
		if len(msgs) > 0 {
			return strings.Join(msgs, "; ")
		}
	}
	if strings.HasPrefix(strings.TrimSpace(body), "<") {
		return "(an HTML page, not Bitbucket's JSON: a proxy or login page?)"
	}
	if len(body) > 300 {
		body = body[:300] + "…"
	}
	return body
}

// rateLimit reads Bitbucket's rate limiting: Cloud and Data Center both
// answer 429, Data Center with Retry-After (and X-RateLimit-* headers),
// Cloud usually without. A 403 is always a permission answer.
func rateLimit(resp *http.Response) (time.Duration, bool) {
	if resp.StatusCode != http.StatusTooManyRequests {
		return 0, false
	}
	if ra, ok := httpx.RetryAfter(resp.Header, time.Now()); ok {
		return max(ra, time.Second), true
	}
	if s, err := strconv.ParseInt(resp.Header.Get("X-RateLimit-Reset"), 10, 64); err == nil {
		return max(time.Until(time.Unix(s, 0)), time.Second), true
	}
	return 30 * time.Second, true
}

// maxPages bounds one listing: a server whose "next" never ends must not
// hold the export forever.
const maxPages = 100000

// cloudPages reads a Cloud paginated list ({"values", "next"}) from path,
// calling fn with each page; fn returns false to stop early.
func cloudPages[T any](ctx context.Context, c *client, what, path string, q url.Values, fn func([]T) bool) (time.Time, error) {
	var first time.Time
	ref := path
	for n := 0; n < maxPages; n++ {
		var pg struct {
			Next   string `json:"next"`
			Values []T    `json:"values"`
		}
		d, err := c.get(ctx, what, ref, q, &pg)
		if err != nil {
			return first, err
		}
		if n == 0 {
			first = d
		}
		if !fn(pg.Values) || pg.Next == "" || len(pg.Values) == 0 {
			return first, nil
		}
		ref, q = pg.Next, nil
	}
	return first, fmt.Errorf("%s: more than %d pages", what, maxPages)
}

// dcPages reads a Data Center paged list ({"values", "isLastPage",
// "nextPageStart"}) from path.
func dcPages[T any](ctx context.Context, c *client, what, path string, q url.Values, fn func([]T) bool) (time.Time, error) {
	var first time.Time
	start := 0
	for n := 0; n < maxPages; n++ {
		var pg struct {
			IsLastPage    bool `json:"isLastPage"`
			NextPageStart *int `json:"nextPageStart"`
			Values        []T  `json:"values"`
		}
		pq := url.Values{}
		for k, v := range q {
			pq[k] = v
		}
		pq.Set("start", strconv.Itoa(start))
		pq.Set("limit", strconv.Itoa(pageSize))
		d, err := c.get(ctx, what, path, pq, &pg)
		if err != nil {
			return first, err
		}
		if n == 0 {
			first = d
		}
		if !fn(pg.Values) || pg.IsLastPage || len(pg.Values) == 0 {
			return first, nil
		}
		if pg.NextPageStart != nil && *pg.NextPageStart > start {
			start = *pg.NextPageStart
		} else {
			start += len(pg.Values)
		}
	}
	return first, fmt.Errorf("%s: more than %d pages", what, maxPages)
}
