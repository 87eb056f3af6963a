package gitlab

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/cgi"
	"net/http/httptest"
	"net/url"
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

// fakeGL is a GitLab API v4 on 127.0.0.1 whose answers are copies of the
// SDK's examples (testdata/sdk, see NOTICE.md there) with ids, names,
// times and links changed, and git's smart HTTP (git http-backend) for the
// projects' repositories.
type fakeGL struct {
	t       *testing.T
	srv     *httptest.Server
	token   string
	gitRoot string

	mu       sync.Mutex
	now      time.Time // the server's clock: Date headers and update times
	nextID   int64
	users    []*fUser
	groups   []string // full paths
	members  map[string][]*fUser
	projects []*fProject
	expired  bool
	// intercept, when set, may answer a request itself (a fault).
	intercept func(w http.ResponseWriter, r *http.Request) bool
	// afterPage runs after a page of a list was written, unlocked.
	afterPage func(list string, page int)
}

type fUser struct {
	id    int64
	login string
	name  string
	bot   bool
}

type fProject struct {
	id     int64
	ns     string // namespace full path
	user   bool   // a user's namespace
	path   string // last segment
	mrs    []*fObj
	issues []*fObj
	commit int
}

func (p *fProject) full() string { return p.ns + "/" + p.path }

// fObj is a merge request or an issue.
type fObj struct {
	id, iid   int64
	title     string
	author    *fUser
	state     string
	created   time.Time
	updated   time.Time
	notes     []*fNote
	approvals []*fUser
	reviewers map[*fUser]string
	labels    []string
}

type fNote struct {
	id      int64
	author  *fUser
	body    string
	system  bool
	diff    string // path of a diff note
	line    int
	created time.Time
	updated time.Time
}

// example reads one of the SDK's examples.
func example(t *testing.T, name string) any {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "sdk", name))
	if err != nil {
		t.Fatal(err)
	}
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return v
}

// first is the first object of an example list, or the example itself.
func first(t *testing.T, name string) map[string]any {
	v := example(t, name)
	if l, ok := v.([]any); ok {
		return l[0].(map[string]any)
	}
	return v.(map[string]any)
}

func newFake(t *testing.T) *fakeGL {
	f := &fakeGL{t: t, token: "glpat-" + strings.Repeat("x", 20), gitRoot: t.TempDir(),
		now: time.Date(2024, 6, 1, 12, 0, 0, 0, time.UTC), nextID: 1000, members: map[string][]*fUser{}}
	f.srv = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeGL) url() string { return f.srv.URL }

func (f *fakeGL) id() int64 { f.nextID++; return f.nextID }

// tick moves the server's clock on and returns the new time.
func (f *fakeGL) tick() time.Time {
	f.now = f.now.Add(1500 * time.Millisecond)
	return f.now
}

func (f *fakeGL) user(login, name string) *fUser {
	f.mu.Lock()
	defer f.mu.Unlock()
	u := &fUser{id: f.id(), login: login, name: name}
	f.users = append(f.users, u)
	return u
}

func (f *fakeGL) group(path string, members ...*fUser) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.groups = append(f.groups, path)
	f.members[path] = members
}

// project adds a project with a repository of one commit.
func (f *fakeGL) project(ns, path string, user bool) *fProject {
	f.mu.Lock()
	p := &fProject{id: f.id(), ns: ns, user: user, path: path}
	f.projects = append(f.projects, p)
	f.mu.Unlock()
	bare := filepath.Join(f.gitRoot, p.full()+".git")
	f.git("", "init", "--quiet", "--bare", "--initial-branch=main", bare)
	f.commit(p, "README.md", "# "+path+"\n")
	return p
}

func (f *fakeGL) commit(p *fProject, file, content string) string {
	bare := filepath.Join(f.gitRoot, p.full()+".git")
	work := f.t.TempDir()
	f.git(work, "init", "--quiet", "--initial-branch=main")
	if p.commit > 0 {
		f.git(work, "fetch", "--quiet", bare, "main")
		f.git(work, "reset", "--quiet", "--hard", "FETCH_HEAD")
	}
	if err := os.WriteFile(filepath.Join(work, file), []byte(content), 0o644); err != nil {
		f.t.Fatal(err)
	}
	f.git(work, "add", file)
	f.git(work, "commit", "--quiet", "-m", "change "+file)
	f.git(work, "push", "--quiet", bare, "HEAD:refs/heads/main")
	p.commit++
	return f.git(work, "rev-parse", "HEAD")
}

func (f *fakeGL) git(dir string, args ...string) string {
	f.t.Helper()
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GIT_AUTHOR_NAME=Alice", "GIT_AUTHOR_EMAIL=alice@example.com",
		"GIT_COMMITTER_NAME=Alice", "GIT_COMMITTER_EMAIL=alice@example.com",
		"GIT_AUTHOR_DATE=2024-05-01T10:00:00+02:00", "GIT_COMMITTER_DATE=2024-05-01T10:00:00+02:00",
		"GIT_CONFIG_GLOBAL=/dev/null", "GIT_CONFIG_NOSYSTEM=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		f.t.Fatalf("git %v: %v: %s", args, err, out)
	}
	return strings.TrimSpace(string(out))
}

// mr adds a merge request (issue: an issue) created and updated now.
func (f *fakeGL) obj(p *fProject, issue bool, author *fUser, title string) *fObj {
	f.mu.Lock()
	defer f.mu.Unlock()
	at := f.tick()
	o := &fObj{id: f.id(), title: title, author: author, state: "opened", created: at, updated: at,
		reviewers: map[*fUser]string{}, labels: []string{"bug"}}
	if issue {
		o.iid = int64(len(p.issues) + 1)
		p.issues = append(p.issues, o)
	} else {
		o.iid = int64(len(p.mrs) + 1)
		p.mrs = append(p.mrs, o)
	}
	return o
}

// note adds a note to o, which updates o (GitLab touches the noteable).
func (f *fakeGL) note(o *fObj, author *fUser, body, diffPath string, system bool) *fNote {
	f.mu.Lock()
	defer f.mu.Unlock()
	at := f.tick()
	n := &fNote{id: f.id(), author: author, body: body, system: system, diff: diffPath, line: 2, created: at, updated: at}
	o.notes = append(o.notes, n)
	o.updated = at
	return n
}

// approve records an approval and its system note.
func (f *fakeGL) approve(o *fObj, u *fUser) {
	f.mu.Lock()
	o.approvals = append(o.approvals, u)
	f.mu.Unlock()
	f.note(o, u, "approved this merge request", "", true)
}

func (f *fakeGL) review(o *fObj, u *fUser, state string) {
	f.mu.Lock()
	o.reviewers[u] = state
	f.mu.Unlock()
	f.note(o, u, "requested changes", "", true)
}

// touch updates o now (an edit).
func (f *fakeGL) touch(o *fObj, title string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	o.title = title
	o.updated = f.tick()
}

// fault sets (nil: removes) the interceptor of requests.
func (f *fakeGL) fault(fn func(w http.ResponseWriter, r *http.Request) bool) {
	f.mu.Lock()
	f.intercept = fn
	f.mu.Unlock()
}

func (f *fakeGL) onPage(fn func(list string, page int)) {
	f.mu.Lock()
	f.afterPage = fn
	f.mu.Unlock()
}

func (f *fakeGL) expire() {
	f.mu.Lock()
	f.expired = true
	f.mu.Unlock()
}

func (f *fakeGL) advance(d time.Duration) {
	f.mu.Lock()
	f.now = f.now.Add(d)
	f.mu.Unlock()
}

// --- the API ---

func (f *fakeGL) serve(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	icpt := f.intercept
	w.Header().Set("Date", f.now.Format(http.TimeFormat))
	f.mu.Unlock()
	if icpt != nil && icpt(w, r) {
		return
	}
	if strings.Contains(r.URL.Path, ".git/") {
		f.serveGit(w, r)
		return
	}
	rest, ok := strings.CutPrefix(r.URL.EscapedPath(), "/api/v4/")
	if !ok || r.Method != http.MethodGet {
		f.json(w, http.StatusNotFound, map[string]any{"message": "404 Not Found"})
		return
	}
	f.mu.Lock()
	expired := f.expired
	f.mu.Unlock()
	if expired {
		// GitLab's answer to an expired personal access token.
		f.json(w, http.StatusUnauthorized, map[string]any{"error": "invalid_token",
			"error_description": "Token has expired. You can either do re-authorization or token refresh."})
		return
	}
	if r.Header.Get("PRIVATE-TOKEN") != f.token {
		f.json(w, http.StatusUnauthorized, map[string]any{"message": "401 Unauthorized"})
		return
	}
	var seg []string
	for _, s := range strings.Split(rest, "/") {
		u, err := url.PathUnescape(s)
		if err != nil {
			f.json(w, http.StatusBadRequest, map[string]any{"error": "bad path"})
			return
		}
		seg = append(seg, u)
	}
	q := r.URL.Query()
	f.mu.Lock()
	defer f.mu.Unlock()
	switch {
	case len(seg) == 1 && seg[0] == "version":
		f.json(w, 200, example(f.t, "version.json"))
	case len(seg) == 1 && seg[0] == "user":
		f.json(w, 200, f.userJSON(&fUser{id: 1, login: "root", name: "Administrator"}))
	case len(seg) == 1 && seg[0] == "users":
		var out []any
		for _, u := range f.users {
			if strings.EqualFold(u.login, q.Get("username")) {
				out = append(out, f.userJSON(u))
			}
		}
		f.json(w, 200, orEmpty(out))
	case len(seg) == 3 && seg[0] == "users" && seg[2] == "projects":
		var ps []*fProject
		for _, p := range f.projects {
			if p.user && strings.EqualFold(p.ns, seg[1]) {
				ps = append(ps, p)
			}
		}
		f.projectList(w, r, "projects of "+seg[1], ps)
	case len(seg) >= 2 && seg[0] == "groups":
		if !slices.Contains(f.groups, seg[1]) {
			f.json(w, 404, map[string]any{"message": "404 Group Not Found"})
			return
		}
		switch {
		case len(seg) == 2:
			f.json(w, 200, map[string]any{"id": 1, "name": seg[1], "path": seg[1], "full_path": seg[1]})
		case len(seg) == 3 && seg[2] == "projects":
			var ps []*fProject
			for _, p := range f.projects {
				if !p.user && (p.ns == seg[1] || strings.HasPrefix(p.ns, seg[1]+"/") && q.Get("include_subgroups") == "true") {
					ps = append(ps, p)
				}
			}
			f.projectList(w, r, "projects of "+seg[1], ps)
		case len(seg) == 4 && seg[2] == "members" && seg[3] == "all":
			var out []any
			for _, u := range f.members[seg[1]] {
				m := first(f.t, "group_members.json")
				m["id"], m["username"], m["name"] = u.id, u.login, u.name
				out = append(out, m)
			}
			f.page(w, r, "members of "+seg[1], out)
		default:
			f.json(w, 404, map[string]any{"message": "404 Not Found"})
		}
	case len(seg) >= 2 && seg[0] == "projects":
		p := f.findProject(seg[1])
		if p == nil {
			f.json(w, 404, map[string]any{"message": "404 Project Not Found"})
			return
		}
		f.projectAPI(w, r, p, seg[2:])
	default:
		f.json(w, 404, map[string]any{"message": "404 Not Found"})
	}
}

func orEmpty(l []any) []any {
	if l == nil {
		return []any{}
	}
	return l
}

func (f *fakeGL) findProject(idOrPath string) *fProject {
	for _, p := range f.projects {
		if strconv.FormatInt(p.id, 10) == idOrPath || strings.EqualFold(p.full(), idOrPath) {
			return p
		}
	}
	return nil
}

func (f *fakeGL) projectAPI(w http.ResponseWriter, r *http.Request, p *fProject, seg []string) {
	q := r.URL.Query()
	objs := func(list []*fObj) []*fObj {
		// updated_after (>=), ordered by update time, newest first
		// unless sort=asc; ties by id as GitLab's secondary order.
		var out []*fObj
		after, _ := time.Parse(time.RFC3339, q.Get("updated_after"))
		for _, o := range list {
			if q.Get("updated_after") == "" || !o.updated.Before(after) {
				out = append(out, o)
			}
		}
		slices.SortStableFunc(out, func(a, b *fObj) int {
			c := a.updated.Compare(b.updated)
			if c == 0 {
				c = int(a.id - b.id)
			}
			if q.Get("sort") != "asc" {
				c = -c
			}
			return c
		})
		return out
	}
	find := func(list []*fObj, iid string) *fObj {
		for _, o := range list {
			if strconv.FormatInt(o.iid, 10) == iid {
				return o
			}
		}
		return nil
	}
	switch {
	case len(seg) == 0:
		f.json(w, 200, f.projectJSON(p))
	case len(seg) == 1 && seg[0] == "merge_requests":
		var out []any
		for _, o := range objs(p.mrs) {
			out = append(out, f.mrJSON(p, o))
		}
		f.page(w, r, "merge requests of "+p.full(), out)
	case len(seg) == 1 && seg[0] == "issues":
		var out []any
		for _, o := range objs(p.issues) {
			out = append(out, f.issueJSON(p, o))
		}
		f.page(w, r, "issues of "+p.full(), out)
	case len(seg) == 3 && (seg[0] == "merge_requests" || seg[0] == "issues"):
		list, kind := p.mrs, "MergeRequest"
		if seg[0] == "issues" {
			list, kind = p.issues, "Issue"
		}
		o := find(list, seg[1])
		if o == nil {
			f.json(w, 404, map[string]any{"message": "404 Not found"})
			return
		}
		switch seg[2] {
		case "notes":
			var out []any
			for _, n := range o.notes {
				out = append(out, f.noteJSON(p, o, kind, n))
			}
			f.page(w, r, "notes of "+p.full()+"/"+seg[1], out)
		case "approvals":
			a := example(f.t, "merge_request_approvals.json").(map[string]any)
			a["id"], a["iid"], a["project_id"], a["title"] = o.id, o.iid, p.id, o.title
			tmpl := a["approved_by"].([]any)[0].(map[string]any)
			var by []any
			for i, u := range o.approvals {
				e := clone(tmpl)
				e["user"] = map[string]any{"id": u.id, "name": u.name, "username": u.login}
				e["approved_at"] = o.created.Add(time.Duration(i+1) * time.Second).Format(time.RFC3339Nano)
				by = append(by, e)
			}
			a["approved_by"] = orEmpty(by)
			a["approved"] = len(by) > 0
			f.json(w, 200, a)
		case "reviewers":
			tmpl := first(f.t, "reviewers.json")
			var out []any
			for u, state := range o.reviewers {
				e := clone(tmpl)
				um := e["user"].(map[string]any)
				um["id"], um["name"], um["username"] = u.id, u.name, u.login
				e["state"], e["created_at"] = state, o.created.Format(time.RFC3339Nano)
				out = append(out, e)
			}
			f.json(w, 200, orEmpty(out))
		default:
			f.json(w, 404, map[string]any{"message": "404 Not Found"})
		}
	default:
		f.json(w, 404, map[string]any{"message": "404 Not Found"})
	}
}

func clone(m map[string]any) map[string]any {
	b, _ := json.Marshal(m)
	var out map[string]any
	_ = json.Unmarshal(b, &out)
	return out
}

func (f *fakeGL) userJSON(u *fUser) map[string]any {
	m := first(f.t, "user.json")
	m["id"], m["username"], m["name"], m["bot"] = u.id, u.login, u.name, u.bot
	m["public_email"] = u.login + "@example.com"
	m["web_url"] = f.url() + "/" + u.login
	return m
}

func (f *fakeGL) basic(u *fUser) map[string]any {
	return map[string]any{"id": u.id, "username": u.login, "name": u.name, "state": "active",
		"avatar_url": "", "web_url": f.url() + "/" + u.login}
}

func (f *fakeGL) projectJSON(p *fProject) map[string]any {
	m := first(f.t, "project.json")
	m["id"], m["path"], m["name"] = p.id, p.path, p.path
	m["path_with_namespace"], m["name_with_namespace"] = p.full(), strings.ReplaceAll(p.full(), "/", " / ")
	m["http_url_to_repo"] = f.url() + "/" + p.full() + ".git"
	m["web_url"] = f.url() + "/" + p.full()
	// Fields no example carries (NOTICE.md): by the SDK's JSON tags.
	kind := "group"
	if p.user {
		kind = "user"
	}
	m["namespace"] = map[string]any{"id": 1, "name": p.ns, "path": p.ns, "kind": kind, "full_path": p.ns}
	m["description"] = "the " + p.path + " project"
	m["visibility"], m["default_branch"], m["archived"], m["empty_repo"] = "private", "main", false, false
	m["created_at"] = "2024-01-02T03:04:05.678Z"
	m["last_activity_at"] = "2024-05-01T08:00:00.000Z"
	m["issues_access_level"], m["merge_requests_access_level"], m["repository_access_level"] = "enabled", "enabled", "enabled"
	return m
}

func (f *fakeGL) mrJSON(p *fProject, o *fObj) map[string]any {
	m := first(f.t, "merge_requests.json")
	m["id"], m["iid"], m["project_id"], m["title"] = o.id, o.iid, p.id, o.title
	m["description"] = "description of " + o.title
	m["state"], m["labels"] = o.state, o.labels
	m["created_at"], m["updated_at"] = o.created.Format(time.RFC3339Nano), o.updated.Format(time.RFC3339Nano)
	m["author"], m["assignees"], m["assignee"] = f.basic(o.author), []any{f.basic(o.author)}, f.basic(o.author)
	m["source_branch"], m["target_branch"] = fmt.Sprintf("feature-%d", o.iid), "main"
	m["sha"] = fmt.Sprintf("%040x", o.id)
	m["web_url"] = fmt.Sprintf("%s/%s/-/merge_requests/%d", f.url(), p.full(), o.iid)
	m["source_project_id"], m["target_project_id"] = p.id, p.id
	return m
}

func (f *fakeGL) issueJSON(p *fProject, o *fObj) map[string]any {
	m := first(f.t, "issue.json")
	m["id"], m["iid"], m["project_id"], m["title"] = o.id, o.iid, p.id, o.title
	m["description"] = "description of " + o.title
	m["state"], m["labels"] = o.state, o.labels
	m["created_at"], m["updated_at"] = o.created.Format(time.RFC3339Nano), o.updated.Format(time.RFC3339Nano)
	m["author"], m["assignees"], m["assignee"] = f.basic(o.author), []any{f.basic(o.author)}, f.basic(o.author)
	m["web_url"] = fmt.Sprintf("%s/%s/-/issues/%d", f.url(), p.full(), o.iid)
	user := 0
	for _, n := range o.notes {
		if !n.system {
			user++
		}
	}
	m["user_notes_count"] = user
	return m
}

func (f *fakeGL) noteJSON(p *fProject, o *fObj, kind string, n *fNote) map[string]any {
	m := example(f.t, "notes.json").([]any)[1].(map[string]any)
	m["id"], m["body"], m["system"] = n.id, n.body, n.system
	m["author"] = map[string]any{"id": n.author.id, "username": n.author.login, "email": n.author.login + "@example.com", "name": n.author.name, "state": "active"}
	m["created_at"], m["updated_at"] = n.created.Format(time.RFC3339Nano), n.updated.Format(time.RFC3339Nano)
	m["noteable_id"], m["noteable_iid"], m["noteable_type"], m["project_id"] = o.id, o.iid, kind, p.id
	if n.diff != "" {
		m["type"] = "DiffNote"
		m["position"] = map[string]any{"base_sha": strings.Repeat("a", 40), "start_sha": strings.Repeat("a", 40),
			"head_sha": fmt.Sprintf("%040x", o.id), "position_type": "text", "new_path": n.diff, "new_line": n.line,
			"old_path": n.diff, "old_line": nil}
	}
	return m
}

// projectList pages projects: keyset by id when asked (as GitLab does for
// order_by=id), by offset otherwise.
func (f *fakeGL) projectList(w http.ResponseWriter, r *http.Request, what string, ps []*fProject) {
	q := r.URL.Query()
	slices.SortFunc(ps, func(a, b *fProject) int { return int(a.id - b.id) })
	if q.Get("pagination") != "keyset" {
		var out []any
		for _, p := range ps {
			out = append(out, f.projectJSON(p))
		}
		f.page(w, r, what, out)
		return
	}
	per := perPage(q)
	after, _ := strconv.ParseInt(q.Get("id_after"), 10, 64)
	var out []any
	var last int64
	for _, p := range ps {
		if p.id > after && len(out) < per {
			out = append(out, f.projectJSON(p))
			last = p.id
		}
	}
	if len(out) == per && ps[len(ps)-1].id != last {
		nq := r.URL.Query()
		nq.Set("id_after", strconv.FormatInt(last, 10))
		w.Header().Set("Link", fmt.Sprintf(`<%s%s?%s>; rel="next"`, f.url(), r.URL.EscapedPath(), nq.Encode()))
	}
	f.json(w, 200, orEmpty(out))
}

func perPage(q url.Values) int {
	per, err := strconv.Atoi(q.Get("per_page"))
	if err != nil || per <= 0 {
		per = 20
	}
	return min(per, 100)
}

// page writes one offset page of items with GitLab's headers (X-Page,
// X-Next-Page, X-Total..., Link), then runs afterPage.
func (f *fakeGL) page(w http.ResponseWriter, r *http.Request, what string, items []any) {
	q := r.URL.Query()
	per := perPage(q)
	pg, err := strconv.Atoi(q.Get("page"))
	if err != nil || pg < 1 {
		pg = 1
	}
	lo, hi := min((pg-1)*per, len(items)), min(pg*per, len(items))
	pages := max(1, (len(items)+per-1)/per)
	h := w.Header()
	h.Set("X-Page", strconv.Itoa(pg))
	h.Set("X-Per-Page", strconv.Itoa(per))
	h.Set("X-Total", strconv.Itoa(len(items)))
	h.Set("X-Total-Pages", strconv.Itoa(pages))
	link := func(n int, rel string) string {
		nq := r.URL.Query()
		nq.Set("page", strconv.Itoa(n))
		return fmt.Sprintf(`<%s%s?%s>; rel="%s"`, f.url(), r.URL.EscapedPath(), nq.Encode(), rel)
	}
	links := []string{link(1, "first"), link(pages, "last")}
	if pg < pages {
		h.Set("X-Next-Page", strconv.Itoa(pg+1))
		links = append(links, link(pg+1, "next"))
	} else {
		h.Set("X-Next-Page", "")
	}
	h.Set("Link", strings.Join(links, ", "))
	f.json(w, 200, orEmpty(items[lo:hi]))
	if after := f.afterPage; after != nil {
		f.mu.Unlock()
		after(what, pg)
		f.mu.Lock()
	}
}

func (f *fakeGL) json(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		f.t.Error(err)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

// serveGit is git's smart HTTP behind GitLab's Basic authentication: any
// user name, the token as the password.
func (f *fakeGL) serveGit(w http.ResponseWriter, r *http.Request) {
	user, pass, ok := r.BasicAuth()
	if !ok || pass != f.token || user == "" {
		w.Header().Set("WWW-Authenticate", `Basic realm="GitLab"`)
		http.Error(w, "HTTP Basic: Access denied", http.StatusUnauthorized)
		return
	}
	exe, err := exec.Command("git", "--exec-path").Output()
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	h := &cgi.Handler{
		Path: filepath.Join(strings.TrimSpace(string(exe)), "git-http-backend"),
		Root: "/",
		Env:  []string{"GIT_PROJECT_ROOT=" + f.gitRoot, "GIT_HTTP_EXPORT_ALL=1", "GIT_CONFIG_NOSYSTEM=1"},
	}
	h.ServeHTTP(w, r)
}
