package jira

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeJira is Jira's REST API v2 as far as the integration uses it, in the
// exact shapes Jira answers with: Cloud (Basic auth, /search/jql with
// nextPageToken, /issue/{id}/changelog) or Data Center (Bearer auth,
// /search with startAt/total, /user/search). Its search evaluates the JQL
// the way Jira does: the date literal is read in the user's time zone, at
// minute resolution.
type fakeJira struct {
	t     testing.TB
	srv   *httptest.Server
	cloud bool
	// credentials it accepts
	email, token, pat string
	// userZone is the user's zone (myself.timeZone, and JQL's zone);
	// outZone is the zone Jira writes timestamps in.
	userZone, outZone *time.Location

	// Page caps, like Jira's own maxResults limits, small to force paging.
	searchMax, commentMax, changelogMax, userMax, projectMax int
	// embedComments and embedHistories: how many comments and histories a
	// search result carries (the rest need their own requests).
	embedComments, embedHistories int

	mu       sync.Mutex
	expired  bool
	projects []*fakeProject
	issues   []*fakeIssue
	users    []*fakeUser
	nextID   int
	// faults are answered instead of the real thing, first match first.
	faults []*fault
	// afterSearch runs (without the lock) after each search page is
	// served, with the number of search requests so far.
	afterSearch func(n int)
	searches    int
	jqls        []string
	searchLog   []string // "jql|startAt|token"
	auth        map[string]int
	requests    []string
}

type fakeProject struct {
	id        int
	key, name string
	noBrowse  bool
	// searchStatus, when set, answers this project's searches.
	searchStatus int
}

type fakeUser struct {
	accountID, key, name, display, email string
	active                               bool
}

type fakeHistory struct {
	id      int
	author  *fakeUser
	created time.Time
	field   string
	from    string
	to      string
}

type fakeComment struct {
	id               int
	author           *fakeUser
	body             string
	created, updated time.Time
}

type fakeIssue struct {
	id               int
	num              int
	project          *fakeProject
	summary          string
	status           string
	assignee         *fakeUser
	reporter         *fakeUser
	created, updated time.Time
	histories        []fakeHistory
	comments         []fakeComment
	storyPoints      float64
}

func (i *fakeIssue) key() string { return fmt.Sprintf("%s-%d", i.project.key, i.num) }

type fault struct {
	path    string // a prefix of the URL path
	query   string // a substring of the raw query ("" = any)
	status  int
	header  http.Header
	body    string
	times   int // answers left; < 0 forever
	served  int
	afterOK int // let this many matching requests through first
}

const (
	fakeEmail = "bot@example.com"
	fakeToken = "ATATT3xFfGF0-cloud-api-token-7c1e"
	fakePAT   = "NjQ5OTE2NzYxMzYxOiDC-datacenter-pat-2b9f"
)

func newFakeJira(t testing.TB, cloud bool, userZone string) *fakeJira {
	t.Helper()
	uz, err := time.LoadLocation(userZone)
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeJira{t: t, cloud: cloud, email: fakeEmail, token: fakeToken, pat: fakePAT, userZone: uz, outZone: time.UTC,
		searchMax: 1000, commentMax: 1000, changelogMax: 1000, userMax: 1000, projectMax: 50,
		embedComments: 20, embedHistories: 100, nextID: 10000, auth: map[string]int{}}
	if !cloud {
		// Data Center writes times in the server's zone.
		f.outZone, _ = time.LoadLocation("Europe/Berlin")
	}
	f.srv = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeJira) id() int { f.nextID++; return f.nextID }

func (f *fakeJira) addProject(key, name string) *fakeProject {
	f.mu.Lock()
	defer f.mu.Unlock()
	p := &fakeProject{id: f.id(), key: key, name: name}
	f.projects = append(f.projects, p)
	return p
}

func (f *fakeJira) addUser(name, display string) *fakeUser {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := f.id()
	u := &fakeUser{accountID: fmt.Sprintf("5b10ac8d82e05b22cc7d%04d", n), key: fmt.Sprintf("JIRAUSER%d", n), name: name,
		display: display, email: name + "@example.com", active: true}
	f.users = append(f.users, u)
	return u
}

// addIssue creates an issue updated (and created) at t.
func (f *fakeJira) addIssue(p *fakeProject, summary string, t time.Time) *fakeIssue {
	f.mu.Lock()
	defer f.mu.Unlock()
	num := 1
	for _, i := range f.issues {
		if i.project == p && i.num >= num {
			num = i.num + 1
		}
	}
	var rep *fakeUser
	if len(f.users) > 0 {
		rep = f.users[0]
	}
	is := &fakeIssue{id: f.id(), num: num, project: p, summary: summary, status: "To Do", reporter: rep,
		created: t, updated: t, storyPoints: 3}
	f.issues = append(f.issues, is)
	return is
}

// update changes an issue's status at t (a changelog entry).
func (f *fakeJira) update(is *fakeIssue, status string, t time.Time) {
	f.mu.Lock()
	defer f.mu.Unlock()
	is.histories = append(is.histories, fakeHistory{id: f.id(), author: is.reporter, created: t, field: "status", from: is.status, to: status})
	is.status, is.updated = status, t
}

// comment adds a comment at t (which updates the issue, as in Jira).
func (f *fakeJira) comment(is *fakeIssue, body string, t time.Time) *fakeComment {
	f.mu.Lock()
	defer f.mu.Unlock()
	is.comments = append(is.comments, fakeComment{id: f.id(), author: is.reporter, body: body, created: t, updated: t})
	if t.After(is.updated) {
		is.updated = t
	}
	return &is.comments[len(is.comments)-1]
}

func (f *fakeJira) addFault(ft *fault) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.faults = append(f.faults, ft)
}

// set runs fn with the fake's lock held: every change the tests make
// while the server runs goes through it.
func (f *fakeJira) set(fn func()) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fn()
}

func (f *fakeJira) setAfterSearch(fn func(n int)) { f.set(func() { f.afterSearch = fn }) }

func (f *fakeJira) setExpired(v bool) {
	f.mu.Lock()
	f.expired = v
	f.mu.Unlock()
}

func (f *fakeJira) config(extra string) string {
	auth := fmt.Sprintf(`"email": %q, "api_token": %q`, f.email, f.token)
	if !f.cloud {
		auth = fmt.Sprintf(`"personal_access_token": %q`, f.pat)
	}
	if extra != "" {
		extra = ", " + extra
	}
	return fmt.Sprintf(`{"url": %q, %s%s}`, f.srv.URL, auth, extra)
}

func (f *fakeJira) wantAuth() string {
	if f.cloud {
		return "Basic " + base64.StdEncoding.EncodeToString([]byte(f.email+":"+f.token))
	}
	return "Bearer " + f.pat
}

// ---- serving ----

func (f *fakeJira) jt(t time.Time) string {
	return t.In(f.outZone).Format("2006-01-02T15:04:05.000-0700")
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json;charset=UTF-8")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func jiraError(w http.ResponseWriter, status int, msgs ...string) {
	writeJSON(w, status, map[string]any{"errorMessages": msgs, "errors": map[string]string{}})
}

func (f *fakeJira) serve(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	f.auth[r.Header.Get("Authorization")]++
	f.requests = append(f.requests, r.Method+" "+r.URL.Path)
	for _, ft := range f.faults {
		if !strings.HasPrefix(r.URL.Path, ft.path) || !strings.Contains(r.URL.RawQuery, ft.query) || ft.times == 0 {
			continue
		}
		if ft.afterOK > 0 {
			ft.afterOK--
			break
		}
		if ft.times > 0 {
			ft.times--
		}
		ft.served++
		f.mu.Unlock()
		for k, v := range ft.header {
			w.Header()[k] = v
		}
		w.Header().Set("Content-Type", "application/json;charset=UTF-8")
		w.WriteHeader(ft.status)
		_, _ = w.Write([]byte(ft.body))
		return
	}
	if r.Header.Get("Authorization") != f.wantAuthLocked() || f.expired {
		f.mu.Unlock()
		if f.cloud {
			w.Header().Set("WWW-Authenticate", `Basic realm="protected-area"`)
			jiraError(w, http.StatusUnauthorized, "Client must be authenticated to access this resource.")
		} else {
			w.Header().Set("X-Seraph-LoginReason", "AUTHENTICATED_FAILED")
			jiraError(w, http.StatusUnauthorized, "You are not authenticated. Authentication required to perform this operation.")
		}
		return
	}
	f.mu.Unlock()
	if r.Method != http.MethodGet {
		jiraError(w, http.StatusMethodNotAllowed, "Method not allowed")
		return
	}
	p := strings.TrimPrefix(r.URL.Path, "/rest/api/2/")
	q := r.URL.Query()
	switch {
	case p == "myself":
		f.myself(w)
	case p == "serverInfo":
		f.serverInfo(w)
	case p == "field":
		writeJSON(w, 200, []map[string]any{
			{"id": "summary", "key": "summary", "name": "Summary", "custom": false, "orderable": true, "navigable": true, "searchable": true, "clauseNames": []string{"summary"}, "schema": map[string]any{"type": "string", "system": "summary"}},
			{"id": "customfield_10016", "key": "customfield_10016", "name": "Story Points", "custom": true, "orderable": true, "navigable": true, "searchable": true, "clauseNames": []string{"cf[10016]", "Story Points"}, "schema": map[string]any{"type": "number", "custom": "com.atlassian.jira.plugin.system.customfieldtypes:float", "customId": 10016}},
		})
	case p == "project" && !f.cloud:
		f.projectList(w)
	case p == "project/search" && f.cloud:
		f.projectSearch(w, q)
	case strings.HasPrefix(p, "project/"):
		f.projectGet(w, strings.TrimPrefix(p, "project/"))
	case p == "mypermissions":
		f.myPermissions(w, q)
	case p == "search":
		if f.cloud {
			jiraError(w, http.StatusGone, "The requested API has been removed. Please migrate to the /rest/api/3/search/jql API. A full migration guideline is available at https://developer.atlassian.com/changelog/#CHANGE-2046")
			return
		}
		f.search(w, r, q)
	case p == "search/jql" && f.cloud:
		f.search(w, r, q)
	case strings.HasPrefix(p, "issue/"):
		f.issueRoutes(w, strings.Split(strings.TrimPrefix(p, "issue/"), "/"), q)
	case p == "users/search" && f.cloud:
		f.userSearch(w, q)
	case p == "user/search" && !f.cloud:
		if q.Get("username") == "" {
			jiraError(w, http.StatusBadRequest, "The username query parameter was not provided")
			return
		}
		f.userSearch(w, q)
	default:
		http.Error(w, "<html><body>Oops, you've found a dead link.</body></html>", http.StatusNotFound)
	}
}

func (f *fakeJira) wantAuthLocked() string { return f.wantAuth() }

func (f *fakeJira) base() string { return f.srv.URL }

func (f *fakeJira) userJSON(u *fakeUser) any {
	if u == nil {
		return nil
	}
	avatars := map[string]string{"48x48": f.base() + "/secure/useravatar?avatarId=10122", "16x16": f.base() + "/secure/useravatar?size=xsmall&avatarId=10122"}
	if f.cloud {
		return map[string]any{"self": f.base() + "/rest/api/2/user?accountId=" + u.accountID, "accountId": u.accountID,
			"emailAddress": u.email, "avatarUrls": avatars, "displayName": u.display, "active": u.active,
			"timeZone": f.userZone.String(), "accountType": "atlassian"}
	}
	return map[string]any{"self": f.base() + "/rest/api/2/user?username=" + u.name, "name": u.name, "key": u.key,
		"emailAddress": u.email, "avatarUrls": avatars, "displayName": u.display, "active": u.active, "timeZone": f.userZone.String()}
}

func (f *fakeJira) myself(w http.ResponseWriter) {
	me := &fakeUser{accountID: "557058:f58131cb-b67d-43c7-b30d-6b58d40bd077", key: "JIRAUSER10000", name: "courier", display: "Courier Bot", email: fakeEmail, active: true}
	m := f.userJSON(me).(map[string]any)
	m["locale"] = "en_US"
	m["groups"] = map[string]any{"size": 1, "items": []any{}}
	m["applicationRoles"] = map[string]any{"size": 1, "items": []any{}}
	m["expand"] = "groups,applicationRoles"
	writeJSON(w, 200, m)
}

func (f *fakeJira) serverInfo(w http.ResponseWriter) {
	if f.cloud {
		writeJSON(w, 200, map[string]any{"baseUrl": f.base(), "version": "1001.0.0-SNAPSHOT", "versionNumbers": []int{1001, 0, 0},
			"deploymentType": "Cloud", "buildNumber": 100287, "buildDate": "2025-06-10T00:00:00.000+0000",
			"serverTime": f.jt(time.Now()), "scmInfo": "8a2e8c9b6d", "serverTitle": "Jira"})
		return
	}
	writeJSON(w, 200, map[string]any{"baseUrl": f.base(), "version": "9.12.4", "versionNumbers": []int{9, 12, 4},
		"deploymentType": "Server", "buildNumber": 9120004, "buildDate": "2024-02-27T00:00:00.000+0100",
		"databaseBuildNumber": 9120004, "serverTime": f.jt(time.Now()), "scmInfo": "2b4b5d0a0b", "serverTitle": "Corp Jira"})
}

func (f *fakeJira) projectJSON(p *fakeProject) map[string]any {
	return map[string]any{"expand": "description,lead,issueTypes,url,projectKeys,permissions,insight",
		"self": f.base() + "/rest/api/2/project/" + strconv.Itoa(p.id), "id": strconv.Itoa(p.id), "key": p.key,
		"description": "The " + p.name + " project", "lead": f.userJSON(f.usersOrNil()), "name": p.name,
		"avatarUrls":     map[string]string{"48x48": f.base() + "/secure/projectavatar?avatarId=10424"},
		"projectTypeKey": "software", "simplified": false, "style": "classic", "isPrivate": false,
		"projectCategory": map[string]any{"self": f.base() + "/rest/api/2/projectCategory/10000", "id": "10000", "name": "Engineering", "description": ""},
		"properties":      map[string]any{}}
}

func (f *fakeJira) usersOrNil() *fakeUser {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.users) == 0 {
		return nil
	}
	return f.users[0]
}

func (f *fakeJira) projectList(w http.ResponseWriter) {
	f.mu.Lock()
	ps := slices.Clone(f.projects)
	f.mu.Unlock()
	out := []any{}
	for _, p := range ps {
		out = append(out, f.projectJSON(p))
	}
	writeJSON(w, 200, out)
}

func pageArgs(q map[string][]string, capMax int) (start, max int) {
	get := func(k string, def int) int {
		if v, ok := q[k]; ok && len(v) > 0 {
			if n, err := strconv.Atoi(v[0]); err == nil {
				return n
			}
		}
		return def
	}
	start, max = get("startAt", 0), get("maxResults", 50)
	return start, min(max, capMax)
}

func (f *fakeJira) projectSearch(w http.ResponseWriter, q map[string][]string) {
	f.mu.Lock()
	ps := slices.Clone(f.projects)
	f.mu.Unlock()
	start, max := pageArgs(q, f.projectMax)
	var vals []any
	for i := start; i < len(ps) && i < start+max; i++ {
		vals = append(vals, f.projectJSON(ps[i]))
	}
	writeJSON(w, 200, map[string]any{"self": f.base() + "/rest/api/2/project/search", "maxResults": max, "startAt": start,
		"total": len(ps), "isLast": start+max >= len(ps), "values": vals})
}

func (f *fakeJira) findProject(keyOrID string) *fakeProject {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, p := range f.projects {
		if strings.EqualFold(p.key, keyOrID) || strconv.Itoa(p.id) == keyOrID {
			return p
		}
	}
	return nil
}

func (f *fakeJira) projectGet(w http.ResponseWriter, keyOrID string) {
	p := f.findProject(keyOrID)
	if p == nil || p.noBrowse {
		jiraError(w, http.StatusNotFound, fmt.Sprintf("No project could be found with key '%s'.", keyOrID))
		return
	}
	writeJSON(w, 200, f.projectJSON(p))
}

func (f *fakeJira) myPermissions(w http.ResponseWriter, q map[string][]string) {
	key := ""
	if v := q["projectKey"]; len(v) > 0 {
		key = v[0]
	}
	p := f.findProject(key)
	if p == nil {
		jiraError(w, http.StatusNotFound, fmt.Sprintf("No project could be found with key '%s'.", key))
		return
	}
	writeJSON(w, 200, map[string]any{"permissions": map[string]any{"BROWSE_PROJECTS": map[string]any{
		"id": "10", "key": "BROWSE_PROJECTS", "name": "Browse Projects", "type": "PROJECT",
		"description": "Ability to browse projects and the issues within them.", "havePermission": !p.noBrowse}}})
}

// jqlRe is the only JQL shape the integration sends.
var jqlRe = regexp.MustCompile(`^project = (\d+)(?: AND updated >= "(\d{4}/\d{2}/\d{2} \d{2}:\d{2})")? ORDER BY updated ASC, key ASC$`)

func (f *fakeJira) search(w http.ResponseWriter, r *http.Request, q map[string][]string) {
	jql := ""
	if v := q["jql"]; len(v) > 0 {
		jql = v[0]
	}
	m := jqlRe.FindStringSubmatch(jql)
	if m == nil {
		jiraError(w, http.StatusBadRequest, fmt.Sprintf("Error in the JQL Query: unexpected query %q.", jql))
		return
	}
	if fields := first(q["fields"]); fields != "*all" {
		jiraError(w, http.StatusBadRequest, "test: the integration must ask for fields=*all")
		return
	}
	if first(q["expand"]) != "changelog" {
		jiraError(w, http.StatusBadRequest, "test: the integration must expand the changelog")
		return
	}
	p := f.findProject(m[1])
	if p == nil {
		jiraError(w, http.StatusBadRequest, fmt.Sprintf("The value '%s' does not exist for the field 'project'.", m[1]))
		return
	}
	f.mu.Lock()
	status := p.searchStatus
	f.mu.Unlock()
	if status != 0 {
		jiraError(w, status, "You do not have the permission to see the specified project.")
		return
	}
	var bound time.Time
	if m[2] != "" {
		// As Jira does: the literal is a wall time in the searching user's
		// zone, at minute resolution.
		b, err := time.ParseInLocation("2006/01/02 15:04", m[2], f.userZone)
		if err != nil {
			jiraError(w, http.StatusBadRequest, fmt.Sprintf("Date value '%s' for field 'updated' is invalid.", m[2]))
			return
		}
		bound = b
	}
	f.mu.Lock()
	var hits []*fakeIssue
	for _, is := range f.issues {
		if is.project == p && (bound.IsZero() || !is.updated.Before(bound)) {
			hits = append(hits, is)
		}
	}
	slices.SortStableFunc(hits, func(a, b *fakeIssue) int {
		if c := a.updated.Compare(b.updated); c != 0 {
			return c
		}
		return a.num - b.num
	})
	f.searches++
	n := f.searches
	f.jqls = append(f.jqls, jql)
	var start, max int
	var token string
	if f.cloud {
		_, max = pageArgs(q, f.searchMax)
		token = first(q["nextPageToken"])
		if token != "" {
			b, err := base64.RawURLEncoding.DecodeString(token)
			off, err2 := strconv.Atoi(strings.TrimPrefix(string(b), "offset:"))
			if err != nil || err2 != nil {
				f.mu.Unlock()
				jiraError(w, http.StatusBadRequest, "Invalid nextPageToken.")
				return
			}
			start = off
		}
	} else {
		start, max = pageArgs(q, f.searchMax)
	}
	f.searchLog = append(f.searchLog, fmt.Sprintf("%s|%d|%s", jql, start, token))
	var out []any
	for i := start; i < len(hits) && i < start+max; i++ {
		out = append(out, f.issueJSON(hits[i]))
	}
	total := len(hits)
	after := f.afterSearch
	f.mu.Unlock()
	if out == nil {
		out = []any{}
	}
	if f.cloud {
		resp := map[string]any{"issues": out, "isLast": start+max >= total}
		if start+max < total {
			resp["nextPageToken"] = base64.RawURLEncoding.EncodeToString([]byte("offset:" + strconv.Itoa(start+max)))
		}
		writeJSON(w, 200, resp)
	} else {
		writeJSON(w, 200, map[string]any{"expand": "schema,names", "startAt": start, "maxResults": max, "total": total, "issues": out})
	}
	if after != nil {
		after(n)
	}
}

func first(v []string) string {
	if len(v) == 0 {
		return ""
	}
	return v[0]
}

func (f *fakeJira) historyJSON(h fakeHistory) any {
	return map[string]any{"id": strconv.Itoa(h.id), "author": f.userJSON(h.author), "created": f.jt(h.created),
		"items": []any{map[string]any{"field": h.field, "fieldtype": "jira", "fieldId": h.field, "from": "1", "fromString": h.from, "to": "3", "toString": h.to}}}
}

func (f *fakeJira) commentJSON(is *fakeIssue, c fakeComment) any {
	m := map[string]any{"self": fmt.Sprintf("%s/rest/api/2/issue/%d/comment/%d", f.base(), is.id, c.id), "id": strconv.Itoa(c.id),
		"author": f.userJSON(c.author), "body": c.body, "updateAuthor": f.userJSON(c.author),
		"created": f.jt(c.created), "updated": f.jt(c.updated)}
	if f.cloud {
		m["jsdPublic"] = true
	}
	return m
}

// issueJSON is an issue as /search returns it with fields=*all and
// expand=changelog. Call with f.mu held.
func (f *fakeJira) issueJSON(is *fakeIssue) map[string]any {
	self := fmt.Sprintf("%s/rest/api/2/issue/%d", f.base(), is.id)
	var comments []any
	for i, c := range is.comments {
		if i < f.embedComments {
			comments = append(comments, f.commentJSON(is, c))
		}
	}
	if comments == nil {
		comments = []any{}
	}
	// Jira embeds the latest histories when it truncates.
	hs := is.histories
	if len(hs) > f.embedHistories {
		hs = hs[len(hs)-f.embedHistories:]
	}
	histories := []any{}
	for _, h := range hs {
		histories = append(histories, f.historyJSON(h))
	}
	statusCat := map[string]any{"self": f.base() + "/rest/api/2/statuscategory/2", "id": 2, "key": "new", "colorName": "blue-gray", "name": "To Do"}
	if is.status != "To Do" {
		statusCat = map[string]any{"self": f.base() + "/rest/api/2/statuscategory/4", "id": 4, "key": "indeterminate", "colorName": "yellow", "name": "In Progress"}
	}
	fields := map[string]any{
		"summary":     is.summary,
		"description": "Steps:\n# open the *page*\n# see {{error}}",
		"issuetype":   map[string]any{"self": f.base() + "/rest/api/2/issuetype/10001", "id": "10001", "description": "A task.", "iconUrl": "", "name": "Task", "subtask": false, "avatarId": 10318},
		"project": map[string]any{"self": f.base() + "/rest/api/2/project/" + strconv.Itoa(is.project.id), "id": strconv.Itoa(is.project.id),
			"key": is.project.key, "name": is.project.name, "projectTypeKey": "software", "avatarUrls": map[string]string{}},
		"status":               map[string]any{"self": f.base() + "/rest/api/2/status/3", "description": "", "iconUrl": "", "name": is.status, "id": "3", "statusCategory": statusCat},
		"priority":             map[string]any{"self": f.base() + "/rest/api/2/priority/3", "iconUrl": "", "name": "Medium", "id": "3"},
		"resolution":           nil,
		"resolutiondate":       nil,
		"labels":               []string{"backend"},
		"components":           []any{map[string]any{"self": f.base() + "/rest/api/2/component/10000", "id": "10000", "name": "API"}},
		"fixVersions":          []any{},
		"versions":             []any{},
		"assignee":             f.userJSON(is.assignee),
		"reporter":             f.userJSON(is.reporter),
		"creator":              f.userJSON(is.reporter),
		"created":              f.jt(is.created),
		"updated":              f.jt(is.updated),
		"lastViewed":           nil,
		"duedate":              "2024-04-01",
		"issuelinks":           []any{map[string]any{"id": "10300", "self": f.base() + "/rest/api/2/issueLink/10300", "type": map[string]any{"id": "10000", "name": "Blocks", "inward": "is blocked by", "outward": "blocks"}, "outwardIssue": map[string]any{"id": "99999", "key": "OTHER-1", "self": f.base() + "/rest/api/2/issue/99999"}}},
		"subtasks":             []any{},
		"timeoriginalestimate": 3600,
		"timeestimate":         nil,
		"timespent":            nil,
		"customfield_10016":    is.storyPoints,
		"customfield_10020":    nil,
		"watches":              map[string]any{"self": self + "/watchers", "watchCount": 1, "isWatching": false},
		"votes":                map[string]any{"self": self + "/votes", "votes": 0, "hasVoted": false},
		"comment": map[string]any{"comments": comments, "self": self + "/comment", "maxResults": len(comments),
			"total": len(is.comments), "startAt": 0},
	}
	return map[string]any{"expand": "operations,versionedRepresentations,editmeta,changelog,renderedFields",
		"id": strconv.Itoa(is.id), "self": self, "key": is.key(), "fields": fields,
		"changelog": map[string]any{"startAt": 0, "maxResults": len(histories), "total": len(is.histories), "histories": histories}}
}

func (f *fakeJira) findIssue(idOrKey string) *fakeIssue {
	for _, is := range f.issues {
		if strconv.Itoa(is.id) == idOrKey || is.key() == idOrKey {
			return is
		}
	}
	return nil
}

func (f *fakeJira) issueRoutes(w http.ResponseWriter, parts []string, q map[string][]string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	is := f.findIssue(parts[0])
	if is == nil {
		jiraError(w, http.StatusNotFound, "Issue does not exist or you do not have permission to see it.")
		return
	}
	switch {
	case len(parts) == 1 && !f.cloud:
		m := f.issueJSON(is)
		all := []any{}
		for _, h := range is.histories {
			all = append(all, f.historyJSON(h))
		}
		m["changelog"] = map[string]any{"startAt": 0, "maxResults": len(all), "total": len(all), "histories": all}
		writeJSON(w, 200, m)
	case len(parts) == 2 && parts[1] == "comment":
		start, max := pageArgs(q, f.commentMax)
		out := []any{}
		for i := start; i < len(is.comments) && i < start+max; i++ {
			out = append(out, f.commentJSON(is, is.comments[i]))
		}
		writeJSON(w, 200, map[string]any{"startAt": start, "maxResults": max, "total": len(is.comments), "comments": out})
	case len(parts) == 2 && parts[1] == "changelog" && f.cloud:
		start, max := pageArgs(q, f.changelogMax)
		out := []any{}
		for i := start; i < len(is.histories) && i < start+max; i++ {
			out = append(out, f.historyJSON(is.histories[i]))
		}
		self := fmt.Sprintf("%s/rest/api/2/issue/%d/changelog?maxResults=%d&startAt=%d", f.base(), is.id, max, start)
		resp := map[string]any{"self": self, "maxResults": max, "startAt": start, "total": len(is.histories),
			"isLast": start+max >= len(is.histories), "values": out}
		if start+max < len(is.histories) {
			resp["nextPage"] = fmt.Sprintf("%s/rest/api/2/issue/%d/changelog?maxResults=%d&startAt=%d", f.base(), is.id, max, start+max)
		}
		writeJSON(w, 200, resp)
	default:
		http.Error(w, "<html><body>Oops, you've found a dead link.</body></html>", http.StatusNotFound)
	}
}

func (f *fakeJira) userSearch(w http.ResponseWriter, q map[string][]string) {
	f.mu.Lock()
	us := slices.Clone(f.users)
	f.mu.Unlock()
	start, max := pageArgs(q, f.userMax)
	out := []any{}
	for i := start; i < len(us) && i < start+max; i++ {
		out = append(out, f.userJSON(us[i]))
	}
	writeJSON(w, 200, out)
}

// ---- what the tests inspect ----

func (f *fakeJira) authHeaders() map[string]int {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := map[string]int{}
	for k, v := range f.auth {
		out[k] = v
	}
	return out
}

func (f *fakeJira) takeSearches() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := f.searchLog
	f.searchLog = nil
	return out
}
