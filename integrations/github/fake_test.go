package github

// A fake GitHub Enterprise Server: the REST endpoints the integration
// uses, answering in the shape of the real API (objects as GitHub returns
// them, Link pagination, X-RateLimit-* and X-OAuth-Scopes headers, error
// bodies {"message", "documentation_url", "status"}), over a real
// loopback HTTP server. Tests change its data between exports and inject
// faults with a hook.

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/cgi"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

type fUser struct {
	id    int64
	login string
	typ   string // User, Organization, Bot
	name  string
	email string
}

type fRepo struct {
	id       int64
	owner    *fUser
	name     string
	private  bool
	archived bool
	created  time.Time
	updated  time.Time
	issues   []*fIssue // issues and pull requests share numbers
	comments []*fComment
	commits  int // on main
}

type fIssue struct {
	id       int64
	number   int
	title    string
	body     string
	state    string
	user     *fUser
	labels   []string
	assign   []*fUser
	created  time.Time
	updated  time.Time
	closed   *time.Time
	comments int
	pr       *fPull // set for a pull request
}

type fPull struct {
	id        int64 // the pull request's id (the issue has its own)
	head      string
	headSHA   string
	base      string
	draft     bool
	merged    *time.Time
	mergeSHA  string
	reviews   []*fReview
	rcomments []*fRComment
}

type fComment struct {
	id      int64
	issue   int
	user    *fUser
	body    string
	created time.Time
	updated time.Time
}

type fReview struct {
	id        int64
	user      *fUser
	state     string
	body      string
	commit    string
	submitted time.Time
}

type fRComment struct {
	id      int64
	review  int64
	user    *fUser
	body    string
	path    string
	line    int
	commit  string
	created time.Time
	updated time.Time
}

type fakeGH struct {
	t     *testing.T
	srv   *httptest.Server
	token string
	// scopes is the X-OAuth-Scopes header; nil sends none.
	scopes []string

	mu      sync.Mutex
	nextID  int64
	users   map[string]*fUser   // by login
	members map[string][]*fUser // org login -> members
	repos   []*fRepo
	calls   []string
	// hook sees each request first (after authentication); it returns
	// true when it answered.
	hook      func(w http.ResponseWriter, r *http.Request, n int) bool
	remaining int
	// gitRoot holds a bare git repository per repo, served over smart
	// HTTP at /<owner>/<name>.git (what clone_url says).
	gitRoot  string
	gitCalls int
}

func newFake(t *testing.T, token string) *fakeGH {
	f := &fakeGH{t: t, token: token, nextID: 1000, users: map[string]*fUser{}, members: map[string][]*fUser{},
		scopes: []string{"read:org", "read:user", "repo"}, remaining: 4999, gitRoot: t.TempDir()}
	f.srv = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.srv.Close)
	return f
}

// url is the config url: the server's root, to which go-github adds
// /api/v3/ as for GitHub Enterprise.
func (f *fakeGH) url() string { return f.srv.URL + "/" }

func (f *fakeGH) id() int64 {
	f.nextID++
	return f.nextID
}

func (f *fakeGH) user(login, typ string) *fUser {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.userLocked(login, typ)
}

func (f *fakeGH) userLocked(login, typ string) *fUser {
	if u := f.users[strings.ToLower(login)]; u != nil {
		return u
	}
	u := &fUser{id: f.id(), login: login, typ: typ, name: strings.ToUpper(login[:1]) + login[1:] + " Person", email: login + "@example.com"}
	if typ == "Organization" {
		u.name, u.email = strings.ToUpper(login), ""
	}
	f.users[strings.ToLower(login)] = u
	return u
}

func (f *fakeGH) addMember(org, login string) {
	o := f.user(org, "Organization")
	u := f.user(login, "User")
	f.mu.Lock()
	defer f.mu.Unlock()
	f.members[o.login] = append(f.members[o.login], u)
}

func (f *fakeGH) addRepo(owner, ownerType, name string, at time.Time) *fRepo {
	o := f.user(owner, ownerType)
	f.mu.Lock()
	defer f.mu.Unlock()
	r := &fRepo{id: f.id(), owner: o, name: name, created: at, updated: at}
	f.repos = append(f.repos, r)
	// Every repo starts as a copy of one made once: a commit on main.
	bare := filepath.Join(f.gitRoot, o.login, name+".git")
	templateOnce.Do(func() {
		dir, err := os.MkdirTemp("", "courier-github-test-")
		if err != nil {
			f.t.Fatal(err)
		}
		templateRepo = filepath.Join(dir, "template.git")
		f.git("", "init", "--quiet", "--bare", "--initial-branch=main", templateRepo)
		tmp := &fRepo{owner: &fUser{login: "template"}}
		f.pushCommitTo(templateRepo, tmp, "README.md", "# hello\n", "Initial commit")
	})
	if err := os.CopyFS(bare, os.DirFS(templateRepo)); err != nil {
		f.t.Fatal(err)
	}
	r.commits = 1
	return r
}

// templateRepo is the repository every fake repo starts as a copy of.
var (
	templateOnce sync.Once
	templateRepo string
)

// git runs git for the fixtures, failing the test on an error.
func (f *fakeGH) git(dir string, args ...string) string {
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

// pushCommit adds a commit changing file on main of r's repository.
func (f *fakeGH) pushCommit(r *fRepo, file, content, msg string) string {
	return f.pushCommitTo(filepath.Join(f.gitRoot, r.owner.login, r.name+".git"), r, file, content, msg)
}

func (f *fakeGH) pushCommitTo(bare string, r *fRepo, file, content, msg string) string {
	work := f.t.TempDir()
	f.git(work, "init", "--quiet", "--initial-branch=main")
	if r.commits > 0 {
		f.git(work, "fetch", "--quiet", bare, "main")
		f.git(work, "reset", "--quiet", "--hard", "FETCH_HEAD")
	}
	if err := os.WriteFile(filepath.Join(work, file), []byte(content), 0o644); err != nil {
		f.t.Fatal(err)
	}
	f.git(work, "add", file)
	f.git(work, "commit", "--quiet", "-m", msg)
	f.git(work, "push", "--quiet", bare, "HEAD:refs/heads/main")
	r.commits++
	return f.git(work, "rev-parse", "HEAD")
}

// tag tags main of r's repository.
func (f *fakeGH) tag(r *fRepo, name string) {
	f.git(filepath.Join(f.gitRoot, r.owner.login, r.name+".git"), "tag", name, "main")
}

// serveGit is git's smart HTTP (git http-backend), behind GitHub's Basic
// authentication: any user name, the token as the password.
func (f *fakeGH) serveGit(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	f.gitCalls++
	f.mu.Unlock()
	user, pass, ok := r.BasicAuth()
	if !ok || pass != f.token || user == "" {
		w.Header().Set("WWW-Authenticate", `Basic realm="GitHub"`)
		http.Error(w, "Invalid username or token.", http.StatusUnauthorized)
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

// basicAuth is the header git sends for the token.
func basicAuth(tok string) string {
	return base64.StdEncoding.EncodeToString([]byte("x-access-token:" + tok))
}

func (f *fakeGH) repo(full string) *fRepo {
	for _, r := range f.repos {
		if strings.EqualFold(r.owner.login+"/"+r.name, full) {
			return r
		}
	}
	return nil
}

// addIssue adds an issue (or, with pr, a pull request) to repo.
func (f *fakeGH) addIssue(r *fRepo, author string, at time.Time, pr bool) *fIssue {
	u := f.user(author, "User")
	f.mu.Lock()
	defer f.mu.Unlock()
	is := &fIssue{id: f.id(), number: len(r.issues) + 1, state: "open", user: u, created: at, updated: at, labels: []string{"bug"}}
	is.title = fmt.Sprintf("Thing %d", is.number)
	is.body = fmt.Sprintf("Body of %d\nwith two lines", is.number)
	if pr {
		is.pr = &fPull{id: f.id(), head: fmt.Sprintf("feature-%d", is.number), headSHA: fmt.Sprintf("%040x", is.number), base: "main"}
		is.title = fmt.Sprintf("Change %d", is.number)
	}
	r.issues = append(r.issues, is)
	return is
}

// update sets an issue's (or pull request's) updated_at.
func (f *fakeGH) update(is *fIssue, at time.Time, change func(*fIssue)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if change != nil {
		change(is)
	}
	is.updated = at
}

func (f *fakeGH) addComment(r *fRepo, is *fIssue, author string, at time.Time) *fComment {
	u := f.user(author, "User")
	f.mu.Lock()
	defer f.mu.Unlock()
	c := &fComment{id: f.id(), issue: is.number, user: u, body: "A comment on #" + strconv.Itoa(is.number), created: at, updated: at}
	r.comments = append(r.comments, c)
	is.comments++
	if at.After(is.updated) {
		is.updated = at
	}
	return c
}

func (f *fakeGH) addReview(is *fIssue, author, state string, at time.Time) *fReview {
	u := f.user(author, "User")
	f.mu.Lock()
	defer f.mu.Unlock()
	rv := &fReview{id: f.id(), user: u, state: state, body: "Looks " + strings.ToLower(state), commit: is.pr.headSHA, submitted: at}
	is.pr.reviews = append(is.pr.reviews, rv)
	if at.After(is.updated) {
		is.updated = at
	}
	return rv
}

func (f *fakeGH) addReviewComment(is *fIssue, review *fReview, author string, at time.Time) *fRComment {
	u := f.user(author, "User")
	f.mu.Lock()
	defer f.mu.Unlock()
	c := &fRComment{id: f.id(), user: u, body: "Nit", path: "main.go", line: 12, commit: is.pr.headSHA, created: at, updated: at}
	if review != nil {
		c.review = review.id
	}
	is.pr.rcomments = append(is.pr.rcomments, c)
	if at.After(is.updated) {
		is.updated = at
	}
	return c
}

func (f *fakeGH) setHook(h func(w http.ResponseWriter, r *http.Request, n int) bool) {
	f.mu.Lock()
	f.hook = h
	f.mu.Unlock()
}

// requests returns the requests served so far ("GET /path?query").
func (f *fakeGH) requests() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.calls)
}

// ---- answers ----

const docs = "https://docs.github.com/rest"

func (f *fakeGH) headers(w http.ResponseWriter) {
	h := w.Header()
	h.Set("Content-Type", "application/json; charset=utf-8")
	h.Set("X-GitHub-Media-Type", "github.v3; format=json")
	h.Set("X-GitHub-Api-Version-Selected", "2022-11-28")
	h.Set("X-GitHub-Request-Id", fmt.Sprintf("C0DE:%X:%X", f.nextID, time.Now().UnixNano()&0xffffff))
	h.Set("X-RateLimit-Limit", "5000")
	h.Set("X-RateLimit-Remaining", strconv.Itoa(max(f.remaining, 0)))
	h.Set("X-RateLimit-Reset", strconv.FormatInt(time.Now().Add(time.Hour).Unix(), 10))
	h.Set("X-RateLimit-Used", strconv.Itoa(5000-max(f.remaining, 0)))
	h.Set("X-RateLimit-Resource", "core")
	if f.scopes != nil {
		h.Set("X-OAuth-Scopes", strings.Join(f.scopes, ", "))
		h.Set("X-Accepted-OAuth-Scopes", "repo")
	}
}

// ghError writes GitHub's error body.
func ghError(w http.ResponseWriter, code int, msg, doc string) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(code)
	b, _ := json.Marshal(map[string]string{"message": msg, "documentation_url": doc, "status": strconv.Itoa(code)})
	_, _ = w.Write(b)
}

// rateLimited answers as GitHub does when the primary budget is spent.
func rateLimited(w http.ResponseWriter, reset time.Time) {
	h := w.Header()
	h.Set("X-RateLimit-Limit", "5000")
	h.Set("X-RateLimit-Remaining", "0")
	h.Set("X-RateLimit-Used", "5000")
	h.Set("X-RateLimit-Reset", strconv.FormatInt(reset.Unix(), 10))
	h.Set("X-RateLimit-Resource", "core")
	ghError(w, http.StatusForbidden, "API rate limit exceeded for user ID 1001. If you reach out to GitHub Support for help, please include the request ID C0DE:1234:5678.",
		"https://docs.github.com/rest/overview/rate-limits-for-the-rest-api")
}

// secondaryLimited answers as GitHub does on a secondary rate limit.
func secondaryLimited(w http.ResponseWriter, retryAfter string) {
	if retryAfter != "" {
		w.Header().Set("Retry-After", retryAfter)
	}
	ghError(w, http.StatusForbidden, "You have exceeded a secondary rate limit. Please wait a few minutes before you try again. If you reach out to GitHub Support for help, please include the request ID C0DE:1234:5678.",
		"https://docs.github.com/free-pro-team@latest/rest/overview/rate-limits-for-the-rest-api#about-secondary-rate-limits")
}

func badGateway(w http.ResponseWriter) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusBadGateway)
	_, _ = w.Write([]byte(`{"message": "Server Error"}`))
}

var (
	reUser      = regexp.MustCompile(`^/users/([^/]+)$`)
	reUserRepos = regexp.MustCompile(`^/users/([^/]+)/repos$`)
	reOrg       = regexp.MustCompile(`^/orgs/([^/]+)$`)
	reOrgRepos  = regexp.MustCompile(`^/orgs/([^/]+)/repos$`)
	reMembers   = regexp.MustCompile(`^/orgs/([^/]+)/members$`)
	reRepo      = regexp.MustCompile(`^/repos/([^/]+)/([^/]+)$`)
	rePulls     = regexp.MustCompile(`^/repos/([^/]+)/([^/]+)/pulls$`)
	reReviews   = regexp.MustCompile(`^/repos/([^/]+)/([^/]+)/pulls/(\d+)/reviews$`)
	reRComments = regexp.MustCompile(`^/repos/([^/]+)/([^/]+)/pulls/(\d+)/comments$`)
	reIssues    = regexp.MustCompile(`^/repos/([^/]+)/([^/]+)/issues$`)
	reComments  = regexp.MustCompile(`^/repos/([^/]+)/([^/]+)/issues/comments$`)
)

func (f *fakeGH) serve(w http.ResponseWriter, r *http.Request) {
	if !strings.HasPrefix(r.URL.Path, "/api/v3") && strings.Contains(r.URL.Path, ".git/") {
		f.serveGit(w, r)
		return
	}
	path, ok := strings.CutPrefix(r.URL.Path, "/api/v3")
	if !ok {
		ghError(w, http.StatusNotFound, "Not Found", docs)
		return
	}
	if path == "" {
		path = "/"
	}
	if r.Header.Get("Authorization") != "Bearer "+f.token {
		ghError(w, http.StatusUnauthorized, "Bad credentials", docs)
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	n := len(f.calls)
	f.calls = append(f.calls, r.Method+" "+path+"?"+r.URL.RawQuery)
	if f.hook != nil && f.hook(w, r, n) {
		return
	}
	f.remaining--
	f.headers(w)
	if r.Method != http.MethodGet {
		ghError(w, http.StatusNotFound, "Not Found", docs)
		return
	}
	base := "http://" + r.Host + "/api/v3"
	q := r.URL.Query()
	var m []string
	match := func(re *regexp.Regexp) bool { m = re.FindStringSubmatch(path); return m != nil }
	switch {
	case path == "/":
		writeJSON(w, map[string]string{"current_user_url": base + "/user", "repository_url": base + "/repos/{owner}/{repo}"})
	case path == "/user":
		writeJSON(w, f.fullUser(base, f.userLocked("tokenowner", "User")))
	case path == "/user/repos":
		me := f.userLocked("tokenowner", "User")
		var list []*fRepo
		for _, rp := range f.repos {
			if rp.owner == me {
				list = append(list, rp)
			}
		}
		f.page(w, r, base, len(list), func(i int) any { return f.repoJSON(base, list[i]) })
	case match(reUserRepos):
		var list []*fRepo
		for _, rp := range f.repos {
			if strings.EqualFold(rp.owner.login, m[1]) && !rp.private {
				list = append(list, rp)
			}
		}
		f.page(w, r, base, len(list), func(i int) any { return f.repoJSON(base, list[i]) })
	case match(reUser):
		u := f.users[strings.ToLower(m[1])]
		if u == nil || u.typ == "Organization" {
			ghError(w, http.StatusNotFound, "Not Found", docs+"/users/users#get-a-user")
			return
		}
		writeJSON(w, f.fullUser(base, u))
	case match(reOrg):
		u := f.users[strings.ToLower(m[1])]
		if u == nil || u.typ != "Organization" {
			ghError(w, http.StatusNotFound, "Not Found", docs+"/orgs/orgs#get-an-organization")
			return
		}
		writeJSON(w, map[string]any{"login": u.login, "id": u.id, "node_id": nodeID("O", u.id), "url": base + "/orgs/" + u.login,
			"repos_url": base + "/orgs/" + u.login + "/repos", "description": nil, "name": u.name, "type": "Organization",
			"html_url": "https://ghe.example.com/" + u.login, "created_at": stamp(time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC))})
	case match(reOrgRepos):
		u := f.users[strings.ToLower(m[1])]
		if u == nil || u.typ != "Organization" {
			ghError(w, http.StatusNotFound, "Not Found", docs+"/repos/repos#list-organization-repositories")
			return
		}
		var list []*fRepo
		for _, rp := range f.repos {
			if rp.owner == u {
				list = append(list, rp)
			}
		}
		f.page(w, r, base, len(list), func(i int) any { return f.repoJSON(base, list[i]) })
	case match(reMembers):
		u := f.users[strings.ToLower(m[1])]
		if u == nil || u.typ != "Organization" {
			ghError(w, http.StatusNotFound, "Not Found", docs+"/orgs/members#list-organization-members")
			return
		}
		ms := f.members[u.login]
		f.page(w, r, base, len(ms), func(i int) any { return f.simpleUser(base, ms[i]) })
	case match(reRepo):
		rp := f.repo(m[1] + "/" + m[2])
		if rp == nil {
			ghError(w, http.StatusNotFound, "Not Found", docs+"/repos/repos#get-a-repository")
			return
		}
		writeJSON(w, f.repoJSON(base, rp))
	case match(rePulls):
		rp := f.repo(m[1] + "/" + m[2])
		if rp == nil {
			ghError(w, http.StatusNotFound, "Not Found", docs+"/pulls/pulls#list-pull-requests")
			return
		}
		var list []*fIssue
		for _, is := range rp.issues {
			if is.pr != nil && (q.Get("state") == "all" || is.state == cmp(q.Get("state"), "open")) {
				list = append(list, is)
			}
		}
		sortIssues(list, q.Get("sort"), q.Get("direction"))
		f.page(w, r, base, len(list), func(i int) any { return f.pullJSON(base, rp, list[i]) })
	case match(reReviews):
		is := f.number(m[1]+"/"+m[2], m[3])
		if is == nil || is.pr == nil {
			ghError(w, http.StatusNotFound, "Not Found", docs+"/pulls/reviews#list-reviews-for-a-pull-request")
			return
		}
		rvs := is.pr.reviews
		f.page(w, r, base, len(rvs), func(i int) any { return f.reviewJSON(base, m[1]+"/"+m[2], is, rvs[i]) })
	case match(reRComments):
		is := f.number(m[1]+"/"+m[2], m[3])
		if is == nil || is.pr == nil {
			ghError(w, http.StatusNotFound, "Not Found", docs+"/pulls/comments#list-review-comments-on-a-pull-request")
			return
		}
		cs := is.pr.rcomments
		f.page(w, r, base, len(cs), func(i int) any { return f.rcommentJSON(base, m[1]+"/"+m[2], is, cs[i]) })
	case match(reComments):
		rp := f.repo(m[1] + "/" + m[2])
		if rp == nil {
			ghError(w, http.StatusNotFound, "Not Found", docs+"/issues/comments#list-issue-comments-for-a-repository")
			return
		}
		since, err := sinceOf(q)
		if err != nil {
			ghError(w, http.StatusUnprocessableEntity, "Validation Failed", docs)
			return
		}
		var list []*fComment
		for _, c := range rp.comments {
			if !c.updated.Before(since) {
				list = append(list, c)
			}
		}
		desc := q.Get("direction") == "desc"
		sort.SliceStable(list, func(i, j int) bool {
			a, b := list[i], list[j]
			ka, kb := a.created, b.created
			if q.Get("sort") == "updated" {
				ka, kb = a.updated, b.updated
			}
			if !ka.Equal(kb) {
				return ka.Before(kb) != desc
			}
			return a.id > b.id // ties: the newest first, whatever the direction
		})
		f.page(w, r, base, len(list), func(i int) any { return f.commentJSON(base, rp, list[i]) })
	case match(reIssues):
		rp := f.repo(m[1] + "/" + m[2])
		if rp == nil {
			ghError(w, http.StatusNotFound, "Not Found", docs+"/issues/issues#list-repository-issues")
			return
		}
		since, err := sinceOf(q)
		if err != nil {
			ghError(w, http.StatusUnprocessableEntity, "Validation Failed", docs)
			return
		}
		var list []*fIssue
		for _, is := range rp.issues {
			if (q.Get("state") == "all" || is.state == cmp(q.Get("state"), "open")) && !is.updated.Before(since) {
				list = append(list, is)
			}
		}
		sortIssues(list, q.Get("sort"), q.Get("direction"))
		f.page(w, r, base, len(list), func(i int) any { return f.issueJSON(base, rp, list[i]) })
	default:
		ghError(w, http.StatusNotFound, "Not Found", docs)
	}
}

func cmp(v, def string) string {
	if v == "" {
		return def
	}
	return v
}

func sinceOf(q url.Values) (time.Time, error) {
	if s := q.Get("since"); s != "" {
		return time.Parse(time.RFC3339, s)
	}
	return time.Time{}, nil
}

// sortIssues orders as GitHub does for sort=created|updated; ties (same
// second) come newest first, so that a client cannot count on id order.
func sortIssues(list []*fIssue, by, dir string) {
	desc := dir != "asc"
	if dir == "" && by == "updated" {
		desc = true
	}
	sort.SliceStable(list, func(i, j int) bool {
		a, b := list[i], list[j]
		ka, kb := a.created, b.created
		if by == "updated" {
			ka, kb = a.updated, b.updated
		}
		if !ka.Equal(kb) {
			return ka.Before(kb) != desc
		}
		return a.id > b.id
	})
}

func (f *fakeGH) number(full, num string) *fIssue {
	rp := f.repo(full)
	if rp == nil {
		return nil
	}
	n, _ := strconv.Atoi(num)
	for _, is := range rp.issues {
		if is.number == n {
			return is
		}
	}
	return nil
}

// page writes items [per_page*(page-1), ...) with GitHub's Link header.
func (f *fakeGH) page(w http.ResponseWriter, r *http.Request, base string, total int, item func(i int) any) {
	q := r.URL.Query()
	per, _ := strconv.Atoi(q.Get("per_page"))
	if per <= 0 {
		per = 30
	}
	per = min(per, 100)
	page, _ := strconv.Atoi(q.Get("page"))
	page = max(page, 1)
	last := max((total+per-1)/per, 1)
	link := func(p int) string {
		q2 := r.URL.Query()
		q2.Set("page", strconv.Itoa(p))
		return fmt.Sprintf(`<%s%s?%s>`, base, strings.TrimPrefix(r.URL.Path, "/api/v3"), q2.Encode())
	}
	var links []string
	if page > 1 {
		links = append(links, link(page-1)+`; rel="prev"`)
	}
	if page < last {
		links = append(links, link(page+1)+`; rel="next"`, link(last)+`; rel="last"`)
	}
	if page > 1 {
		links = append(links, link(1)+`; rel="first"`)
	}
	if len(links) > 0 {
		w.Header().Set("Link", strings.Join(links, ", "))
	}
	out := []any{}
	for i := (page - 1) * per; i < min(page*per, total); i++ {
		out = append(out, item(i))
	}
	writeJSON(w, out)
}

func writeJSON(w http.ResponseWriter, v any) {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		panic(err)
	}
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(b)
}

func stamp(t time.Time) string { return t.UTC().Format(time.RFC3339) }

func stampOrNil(t *time.Time) any {
	if t == nil {
		return nil
	}
	return stamp(*t)
}

func nodeID(prefix string, id int64) string { return fmt.Sprintf("%s_kwDO%08d", prefix, id) }

func (f *fakeGH) simpleUser(base string, u *fUser) map[string]any {
	api := base + "/users/" + u.login
	return map[string]any{
		"login": u.login, "id": u.id, "node_id": nodeID("U", u.id),
		"avatar_url":          "https://ghe.example.com/avatars/u/" + strconv.FormatInt(u.id, 10),
		"gravatar_id":         "",
		"url":                 api,
		"html_url":            "https://ghe.example.com/" + u.login,
		"followers_url":       api + "/followers",
		"following_url":       api + "/following{/other_user}",
		"gists_url":           api + "/gists{/gist_id}",
		"starred_url":         api + "/starred{/owner}{/repo}",
		"subscriptions_url":   api + "/subscriptions",
		"organizations_url":   api + "/orgs",
		"repos_url":           api + "/repos",
		"events_url":          api + "/events{/privacy}",
		"received_events_url": api + "/received_events",
		"type":                u.typ,
		"user_view_type":      "public",
		"site_admin":          false,
	}
}

func (f *fakeGH) fullUser(base string, u *fUser) map[string]any {
	m := f.simpleUser(base, u)
	m["name"] = u.name
	m["email"] = u.email
	m["company"] = nil
	m["blog"] = ""
	m["location"] = nil
	m["hireable"] = nil
	m["bio"] = nil
	m["twitter_username"] = nil
	m["public_repos"] = 2
	m["public_gists"] = 0
	m["followers"] = 0
	m["following"] = 0
	m["created_at"] = "2020-01-01T00:00:00Z"
	m["updated_at"] = "2024-01-01T00:00:00Z"
	return m
}

func (f *fakeGH) repoJSON(base string, r *fRepo) map[string]any {
	full := r.owner.login + "/" + r.name
	api := base + "/repos/" + full
	vis := "public"
	if r.private {
		vis = "private"
	}
	return map[string]any{
		"id": r.id, "node_id": nodeID("R", r.id), "name": r.name, "full_name": full,
		"private": r.private, "owner": f.simpleUser(base, r.owner),
		"html_url":    "https://ghe.example.com/" + full,
		"description": "The " + r.name + " service",
		"fork":        false, "url": api,
		"issues_url":     api + "/issues{/number}",
		"pulls_url":      api + "/pulls{/number}",
		"created_at":     stamp(r.created),
		"updated_at":     stamp(r.updated),
		"pushed_at":      stamp(r.updated),
		"git_url":        "git://ghe.example.com/" + full + ".git",
		"ssh_url":        "git@ghe.example.com:" + full + ".git",
		"clone_url":      "http://" + strings.TrimSuffix(strings.TrimPrefix(base, "http://"), "/api/v3") + "/" + full + ".git",
		"svn_url":        "https://ghe.example.com/" + full,
		"homepage":       nil,
		"size":           108,
		"language":       "Go",
		"has_issues":     true,
		"has_projects":   true,
		"has_wiki":       false,
		"archived":       r.archived,
		"disabled":       false,
		"open_issues":    0,
		"license":        nil,
		"allow_forking":  true,
		"is_template":    false,
		"topics":         []string{},
		"visibility":     vis,
		"forks":          0,
		"watchers":       1,
		"default_branch": "main",
		"permissions":    map[string]bool{"admin": false, "maintain": false, "push": true, "triage": true, "pull": true},
	}
}

func labelsJSON(base, full string, names []string) []any {
	out := []any{}
	for i, n := range names {
		out = append(out, map[string]any{"id": 208045946 + i, "node_id": "MDU6TGFiZWwyMDgwNDU5NDY=", "url": base + "/repos/" + full + "/labels/" + n,
			"name": n, "color": "f29513", "default": true, "description": "Something isn't working"})
	}
	return out
}

func (f *fakeGH) usersJSON(base string, us []*fUser) []any {
	out := []any{}
	for _, u := range us {
		out = append(out, f.simpleUser(base, u))
	}
	return out
}

func (f *fakeGH) issueJSON(base string, r *fRepo, is *fIssue) map[string]any {
	full := r.owner.login + "/" + r.name
	api := fmt.Sprintf("%s/repos/%s/issues/%d", base, full, is.number)
	var assignee any
	if len(is.assign) > 0 {
		assignee = f.simpleUser(base, is.assign[0])
	}
	m := map[string]any{
		"url": api, "repository_url": base + "/repos/" + full,
		"labels_url": api + "/labels{/name}", "comments_url": api + "/comments", "events_url": api + "/events",
		"html_url": fmt.Sprintf("https://ghe.example.com/%s/issues/%d", full, is.number),
		"id":       is.id, "node_id": nodeID("I", is.id), "number": is.number, "title": is.title,
		"user": f.simpleUser(base, is.user), "labels": labelsJSON(base, full, is.labels), "state": is.state,
		"locked": false, "assignee": assignee, "assignees": f.usersJSON(base, is.assign), "milestone": nil,
		"comments": is.comments, "created_at": stamp(is.created), "updated_at": stamp(is.updated),
		"closed_at": stampOrNil(is.closed), "author_association": "MEMBER", "type": nil,
		"active_lock_reason": nil, "sub_issues_summary": map[string]int{"total": 0, "completed": 0, "percent_completed": 0},
		"body": is.body, "closed_by": nil, "state_reason": nil,
		"reactions":    map[string]any{"url": api + "/reactions", "total_count": 0, "+1": 0, "-1": 0, "laugh": 0, "hooray": 0, "confused": 0, "heart": 0, "rocket": 0, "eyes": 0},
		"timeline_url": api + "/timeline", "performed_via_github_app": nil,
	}
	if is.pr != nil {
		m["draft"] = is.pr.draft
		m["pull_request"] = map[string]any{
			"url":       fmt.Sprintf("%s/repos/%s/pulls/%d", base, full, is.number),
			"html_url":  fmt.Sprintf("https://ghe.example.com/%s/pull/%d", full, is.number),
			"diff_url":  fmt.Sprintf("https://ghe.example.com/%s/pull/%d.diff", full, is.number),
			"patch_url": fmt.Sprintf("https://ghe.example.com/%s/pull/%d.patch", full, is.number),
			"merged_at": stampOrNil(is.pr.merged),
		}
	}
	return m
}

func (f *fakeGH) pullJSON(base string, r *fRepo, is *fIssue) map[string]any {
	full := r.owner.login + "/" + r.name
	api := fmt.Sprintf("%s/repos/%s/pulls/%d", base, full, is.number)
	html := fmt.Sprintf("https://ghe.example.com/%s/pull/%d", full, is.number)
	p := is.pr
	branch := func(ref, sha string) map[string]any {
		return map[string]any{"label": r.owner.login + ":" + ref, "ref": ref, "sha": sha,
			"user": f.simpleUser(base, r.owner), "repo": f.repoJSON(base, r)}
	}
	mergeSHA := p.mergeSHA
	if mergeSHA == "" {
		mergeSHA = fmt.Sprintf("%040x", 0xabc000+is.number) // GitHub's test merge
	}
	var assignee any
	if len(is.assign) > 0 {
		assignee = f.simpleUser(base, is.assign[0])
	}
	return map[string]any{
		"url": api, "id": p.id, "node_id": nodeID("PR", p.id), "html_url": html,
		"diff_url": html + ".diff", "patch_url": html + ".patch",
		"issue_url": fmt.Sprintf("%s/repos/%s/issues/%d", base, full, is.number),
		"number":    is.number, "state": is.state, "locked": false, "title": is.title,
		"user": f.simpleUser(base, is.user), "body": is.body,
		"created_at": stamp(is.created), "updated_at": stamp(is.updated),
		"closed_at": stampOrNil(is.closed), "merged_at": stampOrNil(p.merged),
		"merge_commit_sha": mergeSHA, "assignee": assignee, "assignees": f.usersJSON(base, is.assign),
		"requested_reviewers": []any{}, "requested_teams": []any{},
		"labels": labelsJSON(base, full, is.labels), "milestone": nil, "draft": p.draft,
		"commits_url": api + "/commits", "review_comments_url": api + "/comments",
		"review_comment_url": base + "/repos/" + full + "/pulls/comments{/number}",
		"comments_url":       fmt.Sprintf("%s/repos/%s/issues/%d/comments", base, full, is.number),
		"statuses_url":       base + "/repos/" + full + "/statuses/" + p.headSHA,
		"head":               branch(p.head, p.headSHA),
		"base":               branch(p.base, fmt.Sprintf("%040x", 0xba5e)),
		"_links":             map[string]any{"self": map[string]string{"href": api}, "html": map[string]string{"href": html}},
		"author_association": "MEMBER",
		"auto_merge":         nil,
		"active_lock_reason": nil,
	}
}

func (f *fakeGH) reviewJSON(base, full string, is *fIssue, rv *fReview) map[string]any {
	html := fmt.Sprintf("https://ghe.example.com/%s/pull/%d#pullrequestreview-%d", full, is.number, rv.id)
	m := map[string]any{
		"id": rv.id, "node_id": nodeID("PRR", rv.id), "user": f.simpleUser(base, rv.user), "body": rv.body,
		"state": rv.state, "html_url": html,
		"pull_request_url":   fmt.Sprintf("%s/repos/%s/pulls/%d", base, full, is.number),
		"author_association": "MEMBER",
		"_links":             map[string]any{"html": map[string]string{"href": html}},
		"commit_id":          rv.commit,
	}
	if rv.state != "PENDING" {
		m["submitted_at"] = stamp(rv.submitted)
	}
	return m
}

func (f *fakeGH) rcommentJSON(base, full string, is *fIssue, c *fRComment) map[string]any {
	api := fmt.Sprintf("%s/repos/%s/pulls/comments/%d", base, full, c.id)
	var review any
	if c.review != 0 {
		review = c.review
	}
	return map[string]any{
		"url": api, "pull_request_review_id": review, "id": c.id, "node_id": nodeID("PRRC", c.id),
		"diff_hunk": "@@ -10,3 +10,4 @@ func main() {", "path": c.path, "position": 4, "original_position": 4,
		"commit_id": c.commit, "original_commit_id": c.commit, "user": f.simpleUser(base, c.user), "body": c.body,
		"created_at": stamp(c.created), "updated_at": stamp(c.updated),
		"html_url":           fmt.Sprintf("https://ghe.example.com/%s/pull/%d#discussion_r%d", full, is.number, c.id),
		"pull_request_url":   fmt.Sprintf("%s/repos/%s/pulls/%d", base, full, is.number),
		"author_association": "MEMBER",
		"_links":             map[string]any{"self": map[string]string{"href": api}},
		"reactions":          map[string]any{"url": api + "/reactions", "total_count": 0},
		"start_line":         nil, "original_start_line": nil, "start_side": nil,
		"line": c.line, "original_line": c.line, "side": "RIGHT", "subject_type": "line",
	}
}

func (f *fakeGH) commentJSON(base string, r *fRepo, c *fComment) map[string]any {
	full := r.owner.login + "/" + r.name
	api := fmt.Sprintf("%s/repos/%s/issues/comments/%d", base, full, c.id)
	return map[string]any{
		"url": api, "html_url": fmt.Sprintf("https://ghe.example.com/%s/issues/%d#issuecomment-%d", full, c.issue, c.id),
		"issue_url": fmt.Sprintf("%s/repos/%s/issues/%d", base, full, c.issue),
		"id":        c.id, "node_id": nodeID("IC", c.id), "user": f.simpleUser(base, c.user),
		"created_at": stamp(c.created), "updated_at": stamp(c.updated), "author_association": "MEMBER",
		"body": c.body, "reactions": map[string]any{"url": api + "/reactions", "total_count": 0},
		"performed_via_github_app": nil,
	}
}
