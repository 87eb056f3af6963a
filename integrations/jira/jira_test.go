package jira

import (
	"context"
	"encoding/base64"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"courier/integrations"
	"courier/sessions"
)

func base64Std(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

// memStore is a session store in memory, for tests that need no queue.
type memStore struct {
	mu     sync.Mutex
	tokens map[string]string
	n      int
}

func (m *memStore) Append(_ context.Context, _ string, payloads [][]byte) error {
	m.mu.Lock()
	m.n += len(payloads)
	m.mu.Unlock()
	return nil
}

func (m *memStore) PutToken(_ context.Context, path, token string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.tokens == nil {
		m.tokens = map[string]string{}
	}
	m.tokens[path] = token
	return nil
}

func (m *memStore) Token(path string) (string, bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	t, ok := m.tokens[path]
	return t, ok, nil
}

func newMemRun() *sessions.Run {
	return sessions.NewRun(sessions.RunOptions{IntegrationID: testID, Store: &memStore{}})
}

func newTestJira(t *testing.T, cfg string) *Jira {
	t.Helper()
	c, err := integrations.DecodeConfig(Type, []byte(cfg))
	if err != nil {
		t.Fatal(err)
	}
	j, err := New(integrations.Options{ID: testID, Logger: zerolog.New(zerolog.NewTestWriter(t))}, c.(*Config))
	if err != nil {
		t.Fatal(err)
	}
	return j
}

func TestConfigValidate(t *testing.T) {
	ca := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(ca, []byte("not a cert"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, cfg string
		want      []string // substrings of the error; none: valid
	}{
		{"cloud", `{"url": "https://acme.atlassian.net", "email": "a@b.c", "api_token": "tok-123456"}`, nil},
		{"datacenter with a path", `{"url": "https://jira.corp/jira/", "personal_access_token": "pat-123456", "projects": ["PROJ", "OPS_2"], "time_zone": "Europe/Berlin", "ca_file": "` + ca + `"}`, nil},
		{"yaml", "url: https://acme.atlassian.net\nemail: a@b.c\napi_token: tok-123456\nprojects: [PROJ]\n", nil},
		{"no url", `{"email": "a@b.c", "api_token": "tok-123456"}`, []string{"url: required"}},
		{"bad scheme", `{"url": "ftp://x", "email": "a@b.c", "api_token": "tok-123456"}`, []string{"url: scheme must be https or http"}},
		{"credentials in url", `{"url": "https://a%40b.c:tok-secret-1@acme.atlassian.net", "email": "a@b.c", "api_token": "tok-123456"}`, []string{"url: must not hold credentials"}},
		{"no credentials", `{"url": "https://acme.atlassian.net"}`, []string{"credentials missing", "email + api_token", "personal_access_token"}},
		{"both forms", `{"url": "https://acme.atlassian.net", "email": "a@b.c", "api_token": "tok-123456", "personal_access_token": "pat-123456"}`, []string{"either email + api_token", "not both"}},
		{"email alone", `{"url": "https://acme.atlassian.net", "email": "a@b.c"}`, []string{"api_token: required with email"}},
		{"token alone", `{"url": "https://acme.atlassian.net", "api_token": "tok-123456"}`, []string{"email: required with api_token"}},
		{"not an email", `{"url": "https://acme.atlassian.net", "email": "bot", "api_token": "tok-123456"}`, []string{"email: not an email address"}},
		{"spaces in token", `{"url": "https://jira.corp", "personal_access_token": " pat-123456 "}`, []string{"personal_access_token: has leading or trailing spaces"}},
		{"bad project key", `{"url": "https://jira.corp", "personal_access_token": "pat-123456", "projects": ["PROJ", "a b"]}`, []string{`projects[1]: "a b" is not a project key`}},
		{"duplicate project", `{"url": "https://jira.corp", "personal_access_token": "pat-123456", "projects": ["PROJ", "proj"]}`, []string{"projects[1]: proj is projects[0] again"}},
		{"bad zone", `{"url": "https://jira.corp", "personal_access_token": "pat-123456", "time_zone": "Mars/Olympus"}`, []string{`time_zone: "Mars/Olympus" is not a time zone name`}},
		{"missing ca file", `{"url": "https://jira.corp", "personal_access_token": "pat-123456", "ca_file": "/nonexistent/ca.pem"}`, []string{"ca_file:"}},
		{"unknown key", `{"url": "https://jira.corp", "personal_access_token": "pat-123456", "token": "x"}`, []string{`unknown key "token"`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := integrations.DecodeConfig(Type, []byte(tc.cfg))
			if len(tc.want) == 0 {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
			for _, secret := range []string{"tok-123456", "pat-123456", "tok-secret-1"} {
				if strings.Contains(err.Error(), secret) {
					t.Errorf("error %q repeats a secret", err)
				}
			}
		})
	}
}

func TestJQLBound(t *testing.T) {
	zone := func(name string) *time.Location {
		l, err := time.LoadLocation(name)
		if err != nil {
			t.Fatal(err)
		}
		return l
	}
	at := func(s string) time.Time {
		v, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	for _, tc := range []struct {
		zone    string
		high    string
		lit     string
		instant string
	}{
		{"UTC", "2024-03-05T15:04:30.250Z", "2024/03/05 15:03", "2024-03-05T15:03:00Z"},
		{"America/New_York", "2024-03-05T15:04:30.250Z", "2024/03/05 10:03", "2024-03-05T15:03:00Z"},
		{"America/New_York", "2024-03-05T15:04:00Z", "2024/03/05 10:03", "2024-03-05T15:03:00Z"},
		// Across midnight in the user's zone.
		{"Europe/Berlin", "2024-03-05T23:00:10Z", "2024/03/05 23:59", "2024-03-05T22:59:00Z"},
		// Offsets that are not whole hours.
		{"Asia/Kolkata", "2024-03-05T15:04:30Z", "2024/03/05 20:33", "2024-03-05T15:03:00Z"},
		{"Asia/Kathmandu", "2024-03-05T15:04:30Z", "2024/03/05 20:48", "2024-03-05T15:03:00Z"},
		// Clocks going back: 01:29 New York happens twice on 3 November
		// 2024 and Jira may read the later one, so the bound steps back
		// before the repeated hour.
		{"America/New_York", "2024-11-03T05:30:00Z", "2024/11/03 00:29", "2024-11-03T04:29:00Z"},
		// Clocks going forward: nothing ambiguous.
		{"America/New_York", "2024-03-10T07:30:00Z", "2024/03/10 03:29", "2024-03-10T07:29:00Z"},
	} {
		lit, instant := jqlBound(at(tc.high), zone(tc.zone))
		if lit != tc.lit || !instant.Equal(at(tc.instant)) {
			t.Errorf("%s %s: %q %s, want %q %s", tc.zone, tc.high, lit, instant.UTC().Format(time.RFC3339), tc.lit, tc.instant)
		}
		// Whatever the zone, Jira's reading of the literal is not after
		// the watermark.
		if r, err := time.ParseInLocation(jqlLayout, lit, zone(tc.zone)); err != nil || r.After(at(tc.high)) {
			t.Errorf("%s: literal %q reads as %s, after %s", tc.zone, lit, r, tc.high)
		}
	}
	// Unknown zone: whatever zone Jira reads the literal in, it is before
	// the watermark, and the token keeps everything Jira may return.
	high := at("2024-03-05T15:04:30Z")
	lit, earliest := jqlBound(high, nil)
	for _, name := range []string{"Etc/GMT+12", "UTC", "Pacific/Kiritimati"} {
		r, _ := time.ParseInLocation(jqlLayout, lit, zone(name))
		if r.After(high) || r.Before(earliest) {
			t.Errorf("unknown zone: %q read in %s is %s (watermark %s, earliest %s)", lit, name, r, high, earliest)
		}
	}
}

func TestJiraTime(t *testing.T) {
	for s, want := range map[string]string{
		"2024-01-02T03:04:05.000+0000": "2024-01-02T03:04:05Z",
		"2024-01-02T04:04:05.123+0100": "2024-01-02T03:04:05.123Z",
		"2024-01-01T22:04:05.000-0500": "2024-01-02T03:04:05Z",
		"2024-01-02T03:04:05Z":         "2024-01-02T03:04:05Z",
	} {
		v, err := parseJiraTime(s)
		if err != nil || v.Format(time.RFC3339Nano) != want {
			t.Errorf("%s: %s %v, want %s", s, v.Format(time.RFC3339Nano), err, want)
		}
	}
}

func TestRateLimitHeaders(t *testing.T) {
	resp := func(code int, h http.Header) *http.Response { return &http.Response{StatusCode: code, Header: h} }
	if d, ok := rateLimit(resp(429, http.Header{"Retry-After": {"7"}})); !ok || d != 7*time.Second {
		t.Errorf("Retry-After: %s %v", d, ok)
	}
	reset := time.Now().Add(20 * time.Second).UTC().Format(time.RFC3339)
	if d, ok := rateLimit(resp(429, http.Header{"X-Ratelimit-Reset": {reset}})); !ok || d < 15*time.Second || d > 21*time.Second {
		t.Errorf("X-RateLimit-Reset: %s %v", d, ok)
	}
	if _, ok := rateLimit(resp(403, http.Header{"Retry-After": {"7"}})); ok {
		t.Error("a 403 is a permission answer in Jira, not a rate limit")
	}
	if _, ok := rateLimit(resp(503, http.Header{"Retry-After": {"7"}})); ok {
		t.Error("a 503 is retried by the HTTP layer, not waited as a rate limit")
	}
}

func TestValidate(t *testing.T) {
	ctx := context.Background()
	f := newFakeJira(t, true, "America/New_York")
	f.addProject("PROJ", "Project")
	hidden := f.addProject("SEC", "Secret")
	f.set(func() { hidden.noBrowse = true })

	v := newTestJira(t, f.config(`"projects": ["PROJ"]`)).Validate(ctx)
	if !v.Valid || len(v.Errors) != 0 || v.Details["deployment_type"] != "Cloud" || v.Details["user_time_zone"] != "America/New_York" ||
		v.Details["time_zone"] != "America/New_York" || v.Details["auth"] != "api_token" {
		t.Fatalf("valid config: %+v", v)
	}

	v = newTestJira(t, f.config(`"projects": ["PROJ", "NOPE", "SEC"], "time_zone": "Europe/Berlin"`)).Validate(ctx)
	if v.Valid || len(v.Errors) != 2 || !strings.Contains(v.Errors[0], "projects: NOPE: no such project, or the user cannot see it (404)") ||
		!strings.Contains(v.Errors[1], "projects: SEC:") {
		t.Fatalf("missing projects: %+v", v)
	}
	if v.Details["time_zone"] != "Europe/Berlin" || !strings.Contains(v.Details["time_zone_note"].(string), "overrides the user's America/New_York") {
		t.Fatalf("time zone override: %+v", v.Details)
	}

	v = newTestJira(t, f.config("")).Validate(ctx)
	if !v.Valid || v.Details["projects_visible"] != 2 {
		t.Fatalf("no filter: %+v", v)
	}

	f.setExpired(true)
	v = newTestJira(t, f.config("")).Validate(ctx)
	if v.Valid || len(v.Errors) != 1 || v.Errors[0] != "the Jira credentials were refused (401): check email/api_token" {
		t.Fatalf("expired: %+v", v)
	}

	// Cloud refuses a password given as the api_token with 403.
	f.setExpired(false)
	f.addFault(&fault{path: "/rest/api/2/myself", status: http.StatusForbidden, times: 1,
		body: `{"errorMessages":["Basic authentication with passwords is deprecated. Use an API token."],"errors":{}}`})
	v = newTestJira(t, f.config("")).Validate(ctx)
	if v.Valid || len(v.Errors) != 1 || v.Errors[0] != "the Jira credentials were refused (403, Basic authentication with passwords is deprecated. Use an API token.): check email/api_token" {
		t.Fatalf("password: %+v", v)
	}

	dc := newFakeJira(t, false, "Europe/Berlin")
	dc.addProject("PROJ", "Project")
	v = newTestJira(t, dc.config(`"projects": ["PROJ"]`)).Validate(ctx)
	if !v.Valid || v.Details["deployment_type"] != "Server" || v.Details["auth"] != "personal_access_token" || v.Details["time_zone"] != "Europe/Berlin" {
		t.Fatalf("data center: %+v", v)
	}
	for _, e := range v.Errors {
		if strings.Contains(e, fakePAT) || strings.Contains(e, fakeToken) {
			t.Fatalf("a problem repeats a secret: %q", e)
		}
	}
}

func TestOnboard(t *testing.T) {
	ctx := context.Background()
	for _, cloud := range []bool{true, false} {
		f := newFakeJira(t, cloud, "UTC")
		f.userMax, f.projectMax = 1, 1
		f.addUser("alice", "Alice Adams")
		f.addUser("bob", "Bob Brown")
		f.addProject("PROJ", "Project")
		f.addProject("OPS", "Operations")
		j := newTestJira(t, f.config(`"projects": ["PROJ"]`))
		var objs []integrations.Object
		collect := func(o integrations.Object) error { objs = append(objs, o); return nil }
		if err := j.Onboard(ctx, integrations.ObjectProjects, collect); err != nil {
			t.Fatal(err)
		}
		if len(objs) != 2 || objs[0].Name != "PROJ: Project" || !strings.HasPrefix(objs[0].ID, "jira:127.0.0.1:") || objs[0].Data["key"] != "PROJ" {
			t.Fatalf("projects (cloud %v): %+v", cloud, objs)
		}
		objs = nil
		if err := j.Onboard(ctx, integrations.ObjectUsers, collect); err != nil {
			t.Fatal(err)
		}
		if len(objs) != 2 || objs[1].Name != "Bob Brown" || !strings.Contains(objs[1].ID, ":user:") {
			t.Fatalf("users (cloud %v): %+v", cloud, objs)
		}
		if err := j.Onboard(ctx, integrations.ObjectRepos, collect); !errors.Is(err, integrations.ErrUnsupportedObject) {
			t.Fatalf("repos: %v", err)
		}
	}
}
