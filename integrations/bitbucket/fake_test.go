package bitbucket

// The fake Bitbucket: a real HTTP server on 127.0.0.1 that answers both
// flavours' REST APIs with bodies shaped as Atlassian publishes them, and
// serves git through the real `git http-backend`.
//
// Sources of the answers' shapes (field names, nesting, paging envelopes):
//   - Cloud: the REST API 2.0 reference and its OpenAPI document,
//     https://developer.atlassian.com/cloud/bitbucket/rest/api-group-pullrequests/
//     (paginated_pullrequests, pullrequest, the activity example with its
//     "comment", "approval" and "changes_request" entries and inline
//     comments), .../api-group-repositories/ (repository, paginated
//     repositories, links.clone), .../api-group-workspaces/ (project),
//     .../api-group-users/ (GET /user, account), and the error body
//     {"type": "error", "error": {"message": ...}}.
//   - Data Center: the REST API reference,
//     https://developer.atlassian.com/server/bitbucket/rest/v906/api-group-pull-requests/
//     (RestPullRequest, the activities example with APPROVED, REVIEWED
//     and COMMENTED entries, commentAnchor, nested replies), .../api-group-project/
//     and .../api-group-repository/ (RestProject, RestRepository with
//     links.clone), .../api-group-system-maintenance/ (application-properties),
//     the paged envelope {size, limit, start, isLastPage, nextPageStart,
//     values} and the error body {"errors": [{"message": ...}]}.

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/cgi"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

const fakeToken = "bbtok-0123456789abcdef"

// t0 is when the fake's objects begin.
var t0 = time.Date(2025, 3, 1, 9, 0, 0, 0, time.UTC)

type fUser struct {
	id         int64
	slug, name string
}

func (u fUser) uuid() string { return fmt.Sprintf("{00000000-0000-4000-8000-%012d}", u.id) }

var (
	alice = fUser{1, "alice", "Alice Liddell"}
	bob   = fUser{2, "bob", "Bob Dobbs"}
)

type fAct struct {
	id      int64
	kind    string // approval, unapproval, changes, comment
	at      time.Time
	user    fUser
	comment *fComment
}

type fComment struct {
	id       int64
	text     string
	path     string
	line     int
	created  time.Time
	updated  time.Time
	replies  []*fComment
	parentID int64
}

type fPull struct {
	id               int64
	title, state     string
	created, updated time.Time
	author           fUser
	acts             []*fAct
}

type fRepo struct {
	owner, slug string
	id          int64
	pulls       []*fPull
	bare        string
	created     time.Time
}

type fakeFault struct {
	path       string // substring of the request path
	status     int
	times      int // -1: for ever
	retryAfter string
}

type fake struct {
	t       *testing.T
	flavour string
	srv     *httptest.Server
	gitRoot string

	mu       sync.Mutex
	now      time.Time
	owners   []string
	repos    []*fRepo
	nextID   int64
	expired  bool
	faults   []*fakeFault
	onPage   func(path string, page int)
	block    func(path string) // may block a request (kill tests)
	requests []string
}

func newFake(t *testing.T, flavour string) *fake {
	t.Helper()
	f := &fake{t: t, flavour: flavour, now: t0.Add(24 * time.Hour), nextID: 100, gitRoot: t.TempDir()}
	f.srv = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fake) set(fn func()) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fn()
}

func (f *fake) id() int64 { f.nextID++; return f.nextID }

func (f *fake) addOwner(name string) { f.set(func() { f.owners = append(f.owners, name) }) }

// addRepo creates a repo with a bare git repository of n commits.
func (f *fake) addRepo(owner, slug string, commits int) *fRepo {
	f.t.Helper()
	dir := owner
	if f.flavour == DataCenter {
		dir = strings.ToLower(owner)
	}
	bare := filepath.Join(f.gitRoot, dir, slug+".git")
	gitRun(f.t, "", "init", "-q", "--bare", "-b", "main", bare)
	r := &fRepo{owner: owner, slug: slug, bare: bare, created: t0}
	f.set(func() { r.id = f.id(); f.repos = append(f.repos, r) })
	f.commit(r, commits)
	return r
}

// commit pushes n new commits to the repo's main branch.
func (f *fake) commit(r *fRepo, n int) {
	f.t.Helper()
	if n == 0 {
		return
	}
	work := f.t.TempDir()
	gitRun(f.t, "", "clone", "-q", r.bare, work)
	for i := 0; i < n; i++ {
		name := filepath.Join(work, "f.txt")
		old, _ := os.ReadFile(name)
		if err := os.WriteFile(name, append(old, []byte(fmt.Sprintf("line %d\n", len(old)))...), 0o644); err != nil {
			f.t.Fatal(err)
		}
		gitRun(f.t, work, "add", "f.txt")
		gitRun(f.t, work, "commit", "-q", "-m", fmt.Sprintf("change %d", i))
	}
	gitRun(f.t, work, "push", "-q", "origin", "HEAD:main")
}

func gitRun(t *testing.T, dir string, args ...string) {
	t.Helper()
	cmd := exec.Command("git", append([]string{"-c", "user.name=Test", "-c", "user.email=test@example.com", "-c", "init.defaultBranch=main"}, args...)...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GIT_CONFIG_NOSYSTEM=1", "HOME="+t.TempDir())
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("git %v: %v\n%s", args, err, out)
	}
}

// addPull adds a pull request updated at upd, with an approval by bob and
// a comment by bob with a reply by alice, and an inline comment.
func (f *fake) addPull(r *fRepo, title string, upd time.Time) *fPull {
	var p *fPull
	f.set(func() {
		p = &fPull{id: int64(len(r.pulls) + 1), title: title, state: "OPEN", created: upd.Add(-time.Hour), updated: upd, author: alice}
		c := &fComment{id: f.id(), text: "looks fine", created: upd.Add(-30 * time.Minute), updated: upd.Add(-30 * time.Minute)}
		c.replies = []*fComment{{id: f.id(), text: "thanks", created: upd.Add(-20 * time.Minute), updated: upd.Add(-20 * time.Minute), parentID: c.id}}
		inline := &fComment{id: f.id(), text: "typo here", path: "f.txt", line: 2, created: upd.Add(-10 * time.Minute), updated: upd.Add(-10 * time.Minute)}
		p.acts = []*fAct{
			{id: f.id(), kind: "comment", at: c.created, user: bob, comment: c},
			{id: f.id(), kind: "comment", at: inline.created, user: bob, comment: inline},
			{id: f.id(), kind: "approval", at: upd, user: bob},
		}
		r.pulls = append(r.pulls, p)
	})
	return p
}

// review adds a request for changes by alice to p, updating it at at.
func (f *fake) review(p *fPull, kind string, at time.Time) {
	f.set(func() {
		p.acts = append(p.acts, &fAct{id: f.id(), kind: kind, at: at, user: alice})
		p.updated = at
	})
}

func (f *fake) repo(owner, slug string) *fRepo {
	for _, r := range f.repos {
		if strings.EqualFold(r.owner, owner) && r.slug == slug {
			return r
		}
	}
	return nil
}

func (f *fake) config(extra string) string {
	base := fmt.Sprintf(`{"flavour": %q, "url": %q, "token": %q`, f.flavour, f.srv.URL, fakeToken)
	if extra != "" {
		base += ", " + extra
	}
	return base + "}"
}

func (f *fake) ownersKey() string {
	if f.flavour == DataCenter {
		return "projects"
	}
	return "workspaces"
}

// --- serving ---

func (f *fake) serve(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	f.requests = append(f.requests, r.URL.Path)
	now, expired, block := f.now, f.expired, f.block
	var fault *fakeFault
	for _, ft := range f.faults {
		if ft.times != 0 && strings.Contains(r.URL.Path, ft.path) {
			if ft.times > 0 {
				ft.times--
			}
			fault = ft
			break
		}
	}
	f.mu.Unlock()
	w.Header().Set("Date", now.Format(http.TimeFormat))
	if strings.Contains(r.URL.Path, ".git/") {
		f.serveGit(w, r)
		return
	}
	if block != nil {
		block(r.URL.Path)
	}
	if !f.authorized(r.Header.Get("Authorization"), false) || expired {
		f.fail(w, http.StatusUnauthorized, "Unauthorized")
		return
	}
	if fault != nil {
		if fault.retryAfter != "" {
			w.Header().Set("Retry-After", fault.retryAfter)
		}
		f.fail(w, fault.status, "fault injected by the test")
		return
	}
	var body any
	var status int
	if f.flavour == DataCenter {
		body, status = f.serveDC(r)
	} else {
		body, status = f.serveCloud(r)
	}
	if status != http.StatusOK {
		f.fail(w, status, "not found")
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(body)
}

func (f *fake) authorized(h string, git bool) bool {
	switch {
	case h == "Bearer "+fakeToken:
		return !git || f.flavour == DataCenter
	case strings.HasPrefix(h, "Basic "):
		r := &http.Request{Header: http.Header{"Authorization": {h}}}
		u, p, ok := r.BasicAuth()
		if !ok || p != fakeToken {
			return false
		}
		return !git || u != "x-token-auth" || f.flavour == Cloud
	}
	return false
}

func (f *fake) fail(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	if f.flavour == DataCenter {
		_ = json.NewEncoder(w).Encode(map[string]any{"errors": []any{map[string]any{"context": nil, "message": msg, "exceptionName": nil}}})
		return
	}
	_ = json.NewEncoder(w).Encode(map[string]any{"type": "error", "error": map[string]any{"message": msg}})
}

// serveGit hands a git request to git http-backend, after the same
// credentials check as the API (git sends them from the first request on,
// through http.extraHeader).
func (f *fake) serveGit(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	expired := f.expired
	f.mu.Unlock()
	if !f.authorized(r.Header.Get("Authorization"), true) || expired {
		w.Header().Set("WWW-Authenticate", `Basic realm="Bitbucket"`)
		http.Error(w, "Unauthorized", http.StatusUnauthorized)
		return
	}
	root := ""
	if f.flavour == DataCenter {
		root = "/scm"
	}
	h := &cgi.Handler{Path: gitBackend(f.t), Root: root,
		Env: []string{"GIT_PROJECT_ROOT=" + f.gitRoot, "GIT_HTTP_EXPORT_ALL=1"}}
	h.ServeHTTP(w, r)
}

var (
	backendOnce sync.Once
	backendPath string
)

func gitBackend(t *testing.T) string {
	backendOnce.Do(func() {
		out, err := exec.Command("git", "--exec-path").Output()
		if err == nil {
			backendPath = filepath.Join(strings.TrimSpace(string(out)), "git-http-backend")
		}
	})
	if backendPath == "" {
		t.Error("git --exec-path failed: no git-http-backend")
	}
	return backendPath
}

func (f *fake) pageOf(r *http.Request, path string, n int) (from, to, page int) {
	q := r.URL.Query()
	if f.flavour == DataCenter {
		from, _ = strconv.Atoi(q.Get("start"))
		size, _ := strconv.Atoi(q.Get("limit"))
		if size <= 0 {
			size = 25
		}
		page = from/size + 1
		to = min(from+size, n)
	} else {
		page, _ = strconv.Atoi(q.Get("page"))
		page = max(page, 1)
		size, _ := strconv.Atoi(q.Get("pagelen"))
		if size <= 0 {
			size = 10
		}
		from = min((page-1)*size, n)
		to = min(from+size, n)
	}
	// Called with f.mu held by the handler.
	hook := f.onPage
	if hook != nil {
		defer hook(path, page)
	}
	return from, to, page
}

// paged wraps values[from:to] of n in the flavour's envelope.
func (f *fake) paged(r *http.Request, values []any) any {
	from, to, page := f.pageOf(r, r.URL.Path, len(values))
	if f.flavour == DataCenter {
		limit, _ := strconv.Atoi(r.URL.Query().Get("limit"))
		env := map[string]any{"size": to - from, "limit": limit, "start": from, "isLastPage": to >= len(values), "values": values[from:to]}
		if to < len(values) {
			env["nextPageStart"] = to
		}
		return env
	}
	pagelen, _ := strconv.Atoi(r.URL.Query().Get("pagelen"))
	env := map[string]any{"size": len(values), "page": page, "pagelen": pagelen, "values": values[from:to]}
	if to < len(values) {
		q := r.URL.Query()
		q.Set("page", strconv.Itoa(page+1))
		env["next"] = f.srv.URL + r.URL.Path + "?" + q.Encode()
	}
	return env
}

// sortedPulls are a repo's pull requests newest update first (Cloud's
// sort=-updated_on; what the fake also does for Data Center's NEWEST).
func sortedPulls(r *fRepo) []*fPull {
	ps := slices.Clone(r.pulls)
	slices.SortStableFunc(ps, func(a, b *fPull) int { return b.updated.Compare(a.updated) })
	return ps
}

func iso(t time.Time) string { return t.UTC().Format("2006-01-02T15:04:05.000000+00:00") }

// --- Cloud ---

func (f *fake) cloudAccount(u fUser) map[string]any {
	return map[string]any{
		"display_name": u.name, "uuid": u.uuid(), "type": "user", "nickname": u.slug,
		"account_id": fmt.Sprintf("557058:%08d", u.id),
		"links": map[string]any{"self": map[string]any{"href": f.srv.URL + "/2.0/users/" + u.uuid()},
			"html":   map[string]any{"href": f.srv.URL + "/" + u.uuid() + "/"},
			"avatar": map[string]any{"href": f.srv.URL + "/avatar/" + u.slug}},
	}
}

func (f *fake) cloudRepo(r *fRepo) map[string]any {
	full := r.owner + "/" + r.slug
	return map[string]any{
		"type": "repository", "uuid": fmt.Sprintf("{10000000-0000-4000-8000-%012d}", r.id), "full_name": full,
		"name": r.slug, "slug": r.slug, "description": "the " + r.slug + " repository", "scm": "git",
		"is_private": true, "fork_policy": "no_public_forks", "language": "go", "has_issues": false, "has_wiki": false,
		"created_on": iso(r.created), "updated_on": iso(r.created.Add(time.Hour)), "size": 1024,
		"mainbranch": map[string]any{"type": "branch", "name": "main"},
		"owner":      map[string]any{"type": "team", "display_name": r.owner, "uuid": "{20000000-0000-4000-8000-000000000001}"},
		"workspace":  map[string]any{"type": "workspace", "slug": r.owner, "name": r.owner, "uuid": "{20000000-0000-4000-8000-000000000001}"},
		"project":    map[string]any{"type": "project", "key": "CORE", "uuid": "{30000000-0000-4000-8000-000000000001}", "name": "Core"},
		"links": map[string]any{
			"self": map[string]any{"href": f.srv.URL + "/2.0/repositories/" + full},
			"html": map[string]any{"href": f.srv.URL + "/" + full},
			"clone": []any{
				map[string]any{"name": "https", "href": strings.Replace(f.srv.URL, "http://", "http://alice@", 1) + "/" + full + ".git"},
				map[string]any{"name": "ssh", "href": "git@bitbucket.org:" + full + ".git"},
			},
		},
	}
}

func (f *fake) cloudPull(r *fRepo, p *fPull) map[string]any {
	full := r.owner + "/" + r.slug
	ref := func(branch string) map[string]any {
		return map[string]any{"branch": map[string]any{"name": branch},
			"commit":     map[string]any{"type": "commit", "hash": "0123456789ab"},
			"repository": map[string]any{"type": "repository", "full_name": full, "name": r.slug}}
	}
	return map[string]any{
		"type": "pullrequest", "id": p.id, "title": p.title, "description": "about " + p.title,
		"rendered": map[string]any{"title": map[string]any{"raw": p.title, "markup": "markdown", "html": "<p>" + p.title + "</p>"}},
		"state":    p.state, "draft": false, "author": f.cloudAccount(p.author),
		"source": ref(fmt.Sprintf("feature-%d", p.id)), "destination": ref("main"),
		"merge_commit": nil, "comment_count": 3, "task_count": 0, "close_source_branch": true, "closed_by": nil, "reason": "",
		"created_on": iso(p.created), "updated_on": iso(p.updated),
		"reviewers":    []any{f.cloudAccount(bob)},
		"participants": []any{map[string]any{"type": "participant", "user": f.cloudAccount(bob), "role": "REVIEWER", "approved": true, "state": "approved", "participated_on": iso(p.updated)}},
		"links": map[string]any{
			"self":     map[string]any{"href": fmt.Sprintf("%s/2.0/repositories/%s/pullrequests/%d", f.srv.URL, full, p.id)},
			"html":     map[string]any{"href": fmt.Sprintf("%s/%s/pull-requests/%d", f.srv.URL, full, p.id)},
			"activity": map[string]any{"href": fmt.Sprintf("%s/2.0/repositories/%s/pullrequests/%d/activity", f.srv.URL, full, p.id)},
		},
	}
}

func (f *fake) cloudComment(r *fRepo, p *fPull, c *fComment, author fUser) map[string]any {
	m := map[string]any{
		"type": "pullrequest_comment", "id": c.id, "created_on": iso(c.created), "updated_on": iso(c.updated),
		"content": map[string]any{"type": "rendered", "raw": c.text, "markup": "markdown", "html": "<p>" + c.text + "</p>"},
		"user":    f.cloudAccount(author), "deleted": false,
		"pullrequest": map[string]any{"type": "pullrequest", "id": p.id, "title": p.title},
		"links":       map[string]any{"html": map[string]any{"href": fmt.Sprintf("%s/%s/%s/pull-requests/%d/_/diff#comment-%d", f.srv.URL, r.owner, r.slug, p.id, c.id)}},
	}
	if c.path != "" {
		m["inline"] = map[string]any{"from": nil, "to": c.line, "path": c.path}
	}
	if c.parentID != 0 {
		m["parent"] = map[string]any{"id": c.parentID}
	}
	return m
}

func (f *fake) serveCloud(r *http.Request) (any, int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	parts := strings.Split(strings.Trim(r.URL.Path, "/"), "/")
	if len(parts) < 2 || parts[0] != "2.0" {
		return nil, http.StatusNotFound
	}
	switch {
	case len(parts) == 2 && parts[1] == "user":
		return f.cloudAccount(alice), http.StatusOK
	case len(parts) == 4 && parts[1] == "workspaces" && parts[3] == "projects":
		if !slices.Contains(f.owners, parts[2]) {
			return nil, http.StatusNotFound
		}
		var vs []any
		for _, k := range []string{"CORE", "WEB"} {
			vs = append(vs, map[string]any{"type": "project", "key": k, "uuid": "{30000000-0000-4000-8000-" + fmt.Sprintf("%012d", len(k)) + "}",
				"name": strings.ToLower(k) + " project", "description": "", "is_private": true,
				"created_on": iso(t0), "updated_on": iso(t0), "has_publicly_visible_repos": false,
				"links": map[string]any{"html": map[string]any{"href": f.srv.URL + "/" + parts[2] + "/workspace/projects/" + k}}})
		}
		return f.paged(r, vs), http.StatusOK
	case len(parts) == 3 && parts[1] == "repositories":
		if !slices.Contains(f.owners, parts[2]) {
			return nil, http.StatusNotFound
		}
		var vs []any
		for _, rp := range f.repos {
			if rp.owner == parts[2] {
				vs = append(vs, f.cloudRepo(rp))
			}
		}
		return f.paged(r, vs), http.StatusOK
	}
	if len(parts) < 4 || parts[1] != "repositories" {
		return nil, http.StatusNotFound
	}
	rp := f.repo(parts[2], parts[3])
	if rp == nil {
		return nil, http.StatusNotFound
	}
	switch {
	case len(parts) == 4:
		return f.cloudRepo(rp), http.StatusOK
	case len(parts) == 5 && parts[4] == "pullrequests":
		var vs []any
		for _, p := range sortedPulls(rp) {
			vs = append(vs, f.cloudPull(rp, p))
		}
		return f.paged(r, vs), http.StatusOK
	case len(parts) == 7 && parts[4] == "pullrequests" && parts[6] == "activity":
		n, _ := strconv.ParseInt(parts[5], 10, 64)
		if n < 1 || int(n) > len(rp.pulls) {
			return nil, http.StatusNotFound
		}
		p := rp.pulls[n-1]
		ref := map[string]any{"type": "pullrequest", "id": p.id, "title": p.title}
		var vs []any
		for i := len(p.acts) - 1; i >= 0; i-- { // newest first
			a := p.acts[i]
			switch a.kind {
			case "approval":
				vs = append(vs, map[string]any{"approval": map[string]any{"date": iso(a.at), "pullrequest": ref, "user": f.cloudAccount(a.user)}, "pull_request": ref})
			case "changes":
				vs = append(vs, map[string]any{"changes_request": map[string]any{"date": iso(a.at), "pullrequest": ref, "user": f.cloudAccount(a.user)}, "pull_request": ref})
			case "comment":
				for _, rep := range a.comment.replies {
					vs = append(vs, map[string]any{"comment": f.cloudComment(rp, p, rep, alice), "pull_request": ref})
				}
				vs = append(vs, map[string]any{"comment": f.cloudComment(rp, p, a.comment, a.user), "pull_request": ref})
			}
		}
		vs = append(vs, map[string]any{"update": map[string]any{"state": "OPEN", "title": p.title, "date": iso(p.created),
			"author": f.cloudAccount(p.author), "source": map[string]any{"branch": map[string]any{"name": "feature"}}}, "pull_request": ref})
		return f.paged(r, vs), http.StatusOK
	}
	return nil, http.StatusNotFound
}

// --- Data Center ---

func (f *fake) dcUser(u fUser) map[string]any {
	return map[string]any{"name": u.slug, "emailAddress": u.slug + "@example.com", "id": u.id, "displayName": u.name,
		"active": true, "slug": u.slug, "type": "NORMAL",
		"links": map[string]any{"self": []any{map[string]any{"href": f.srv.URL + "/users/" + u.slug}}}}
}

func (f *fake) dcProject(key string) map[string]any {
	return map[string]any{"key": key, "id": int64(len(key)) * 7, "name": strings.ToLower(key) + " project", "description": "The " + key + " project",
		"public": false, "type": "NORMAL", "links": map[string]any{"self": []any{map[string]any{"href": f.srv.URL + "/projects/" + key}}}}
}

func (f *fake) dcRepo(r *fRepo) map[string]any {
	return map[string]any{
		"slug": r.slug, "id": r.id, "name": r.slug, "description": "the " + r.slug + " repository", "hierarchyId": "e3c939f9ef4a7fae272e",
		"scmId": "git", "state": "AVAILABLE", "statusMessage": "Available", "forkable": true, "public": false, "archived": false,
		"project": f.dcProject(r.owner),
		"links": map[string]any{
			"clone": []any{
				map[string]any{"href": "ssh://git@localhost:7999/" + strings.ToLower(r.owner) + "/" + r.slug + ".git", "name": "ssh"},
				map[string]any{"href": strings.Replace(f.srv.URL, "http://", "http://admin@", 1) + "/scm/" + strings.ToLower(r.owner) + "/" + r.slug + ".git", "name": "http"},
			},
			"self": []any{map[string]any{"href": f.srv.URL + "/projects/" + r.owner + "/repos/" + r.slug + "/browse"}},
		},
	}
}

func (f *fake) dcPull(r *fRepo, p *fPull) map[string]any {
	ref := func(branch string) map[string]any {
		return map[string]any{"id": "refs/heads/" + branch, "displayId": branch, "type": "BRANCH", "latestCommit": "0123456789ab",
			"repository": map[string]any{"slug": r.slug, "name": r.slug, "project": map[string]any{"key": r.owner}}}
	}
	return map[string]any{
		"id": p.id, "version": 1, "title": p.title, "description": "about " + p.title, "state": p.state, "open": p.state == "OPEN",
		"closed": p.state != "OPEN", "draft": false, "createdDate": p.created.UnixMilli(), "updatedDate": p.updated.UnixMilli(),
		"fromRef": ref(fmt.Sprintf("feature-%d", p.id)), "toRef": ref("main"), "locked": false,
		"author":       map[string]any{"user": f.dcUser(p.author), "role": "AUTHOR", "approved": false, "status": "UNAPPROVED"},
		"reviewers":    []any{map[string]any{"user": f.dcUser(bob), "lastReviewedCommit": "0123456789ab", "role": "REVIEWER", "approved": true, "status": "APPROVED"}},
		"participants": []any{},
		"properties":   map[string]any{"commentCount": 3, "openTaskCount": 0, "resolvedTaskCount": 0},
		"links":        map[string]any{"self": []any{map[string]any{"href": fmt.Sprintf("%s/projects/%s/repos/%s/pull-requests/%d", f.srv.URL, r.owner, r.slug, p.id)}}},
	}
}

func (f *fake) dcComment(c *fComment, author fUser) map[string]any {
	m := map[string]any{"properties": map[string]any{"repositoryId": 84}, "id": c.id, "version": 1, "text": c.text,
		"author": f.dcUser(author), "createdDate": c.created.UnixMilli(), "updatedDate": c.updated.UnixMilli(),
		"comments": []any{}, "tasks": []any{}, "severity": "NORMAL", "state": "OPEN",
		"permittedOperations": map[string]any{"editable": true, "deletable": true}}
	var replies []any
	for _, r := range c.replies {
		replies = append(replies, f.dcComment(r, alice))
	}
	if replies != nil {
		m["comments"] = replies
	}
	return m
}

func (f *fake) serveDC(r *http.Request) (any, int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	p := strings.TrimPrefix(r.URL.Path, "/rest/api/1.0/")
	if p == r.URL.Path {
		return nil, http.StatusNotFound
	}
	parts := strings.Split(strings.Trim(p, "/"), "/")
	if len(parts) == 1 && parts[0] == "application-properties" {
		return map[string]any{"version": "9.6.0", "buildNumber": "9006000", "buildDate": "1718690000000", "displayName": "Bitbucket"}, http.StatusOK
	}
	if len(parts) < 2 || parts[0] != "projects" || !slices.Contains(f.owners, parts[1]) {
		return nil, http.StatusNotFound
	}
	key := parts[1]
	switch {
	case len(parts) == 2:
		return f.dcProject(key), http.StatusOK
	case len(parts) == 3 && parts[2] == "repos":
		var vs []any
		for _, rp := range f.repos {
			if rp.owner == key {
				vs = append(vs, f.dcRepo(rp))
			}
		}
		return f.paged(r, vs), http.StatusOK
	}
	if len(parts) < 4 || parts[2] != "repos" {
		return nil, http.StatusNotFound
	}
	rp := f.repo(key, parts[3])
	if rp == nil {
		return nil, http.StatusNotFound
	}
	switch {
	case len(parts) == 4:
		return f.dcRepo(rp), http.StatusOK
	case len(parts) == 5 && parts[4] == "pull-requests":
		var vs []any
		for _, pr := range sortedPulls(rp) {
			vs = append(vs, f.dcPull(rp, pr))
		}
		return f.paged(r, vs), http.StatusOK
	case len(parts) == 7 && parts[4] == "pull-requests" && parts[6] == "activities":
		n, _ := strconv.ParseInt(parts[5], 10, 64)
		if n < 1 || int(n) > len(rp.pulls) {
			return nil, http.StatusNotFound
		}
		pr := rp.pulls[n-1]
		var vs []any
		for i := len(pr.acts) - 1; i >= 0; i-- { // newest first
			a := pr.acts[i]
			act := map[string]any{"id": a.id, "createdDate": a.at.UnixMilli(), "user": f.dcUser(a.user)}
			switch a.kind {
			case "approval":
				act["action"] = "APPROVED"
			case "unapproval":
				act["action"] = "UNAPPROVED"
			case "changes":
				act["action"] = "REVIEWED"
			case "comment":
				act["action"], act["commentAction"] = "COMMENTED", "ADDED"
				act["comment"] = f.dcComment(a.comment, a.user)
				if a.comment.path != "" {
					act["commentAnchor"] = map[string]any{"line": a.comment.line, "lineType": "ADDED", "fileType": "TO",
						"path": a.comment.path, "srcPath": a.comment.path}
				}
			}
			vs = append(vs, act)
		}
		vs = append(vs, map[string]any{"id": pr.id * 1000, "createdDate": pr.created.UnixMilli(), "user": f.dcUser(pr.author), "action": "OPENED"})
		return f.paged(r, vs), http.StatusOK
	}
	return nil, http.StatusNotFound
}
