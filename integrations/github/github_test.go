package github

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"go.uber.org/goleak"

	"courier/actors"
	"courier/integrations"
	"courier/integrations/forge"
	"courier/internal/exporttest"
	"courier/sessions"
)

func TestMain(m *testing.M) {
	// Small pages, so that a handful of objects spans several; fast
	// retries; a short secondary-limit wait.
	perPage = 3
	backoffInitial = 5 * time.Millisecond
	secondaryWait = 300 * time.Millisecond
	code := m.Run()
	if templateRepo != "" {
		_ = os.RemoveAll(filepath.Dir(templateRepo))
	}
	if code == 0 {
		if err := goleak.Find(exporttest.GoleakOptions()...); err != nil {
			fmt.Fprintf(os.Stderr, "goleak: %v\n", err)
			code = 1
		}
	}
	os.Exit(code)
}

const token = "ghp_S3cr3tT0kenValue0123456789abcdefXYZ"

// ---- the rig: a real agent core (actors, Pebble queue) recording what
// reaches the sink ----

type env = exporttest.Envelope

type rig struct {
	*exporttest.Rig
	cache string
	logs  *exporttest.LogBuffer
	n     int
}

func newRig(t *testing.T) *rig {
	t.Helper()
	dir := t.TempDir()
	r := &rig{cache: filepath.Join(dir, "cache")}
	r.Rig = exporttest.New(t, exporttest.Options{Dir: dir,
		Export: actors.ExportOptions{CacheDir: func(id string) string { return filepath.Join(dir, "cache", id) }},
		AfterStop: func() {
			// No credential in any log line or record.
			logs := r.logs.String()
			if strings.Contains(logs, token) || strings.Contains(logs, basicAuth(token)) {
				t.Errorf("a log line shows the token:\n%s", logs)
			}
			if os.Getenv("COURIER_TEST_LOGS") != "" {
				t.Logf("logs:\n%s", logs)
			}
			if raw := r.Rec.Raw(); strings.Contains(raw, token) || strings.Contains(raw, basicAuth(token)) {
				t.Error("a record holds the token")
			}
		}})
	r.logs = r.LogBuf
	return r
}

func cfgJSON(t *testing.T, f *fakeGH, extra string) integrations.Config {
	t.Helper()
	raw := fmt.Sprintf(`{"url": %q, "token": %q%s}`, f.url(), token, extra)
	c, err := integrations.DecodeConfig(Type, []byte(raw))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// export runs one export of cfg and returns its result and the records it
// sent, once they reached the sink.
func (r *rig) export(t *testing.T, cfg integrations.Config) (actors.IntegrationResult, []env) {
	t.Helper()
	r.n++
	res := r.Run(t, actors.ExportSpec{ID: fmt.Sprintf("e%d", r.n), Integrations: []actors.IntegrationSpec{{ID: "gh", Type: Type, Config: cfg}}})
	r.Drain(t)
	return res.Integrations[0], r.Records()
}

// byModel groups records: model -> ids.
func byModel(recs []env) map[string][]string {
	out := map[string][]string{}
	for _, e := range recs {
		out[e.Model] = append(out[e.Model], e.ID)
	}
	for _, ids := range out {
		sort.Strings(ids)
	}
	return out
}

func find(t *testing.T, recs []env, id string) env {
	t.Helper()
	for _, e := range recs {
		if e.ID == id {
			return e
		}
	}
	t.Fatalf("record %s not sent", id)
	return env{}
}

// ---- fixtures ----

var base = time.Date(2024, 5, 1, 10, 0, 0, 0, time.UTC)

func at(min int) time.Time { return base.Add(time.Duration(min) * time.Minute) }

type world struct {
	f        *fakeGH
	api, web *fRepo
	tools    *fRepo
	prs      []*fIssue // acme/api pull requests #1..#7
	issues   []*fIssue // acme/api issues #8..#11
	comments []*fComment
}

// seed builds: org acme (members alice, bob) with acme/api (7 pull
// requests over 3 pages, reviews, review comments, 4 issues, comments,
// several objects updated in the same second) and acme/web; user carol
// with carol/tools.
func seed(t *testing.T) *world {
	f := newFake(t, token)
	w := &world{f: f}
	f.addMember("acme", "alice")
	f.addMember("acme", "bob")
	w.api = f.addRepo("acme", "Organization", "api", at(0))
	w.web = f.addRepo("acme", "Organization", "web", at(0))
	w.tools = f.addRepo("carol", "User", "tools", at(0))
	for i := 1; i <= 7; i++ {
		w.prs = append(w.prs, f.addIssue(w.api, "alice", at(i), true))
	}
	// #3 and #4 updated in the same second, the last of the list.
	f.update(w.prs[2], at(60), nil)
	f.update(w.prs[3], at(60), nil)
	merged := at(30)
	f.update(w.prs[4], at(30), func(is *fIssue) {
		is.state, is.closed, is.pr.merged, is.pr.mergeSHA = "closed", &merged, &merged, strings.Repeat("e", 40)
	})
	rv := f.addReview(w.prs[0], "bob", "APPROVED", at(20))
	f.addReview(w.prs[0], "carol", "PENDING", at(21))
	f.addReviewComment(w.prs[0], rv, "bob", at(20))
	f.addReviewComment(w.prs[0], nil, "alice", at(22))
	f.addReview(w.prs[1], "bob", "CHANGES_REQUESTED", at(23))
	for i := 0; i < 4; i++ {
		w.issues = append(w.issues, f.addIssue(w.api, "bob", at(10+i), false))
	}
	alice := f.user("alice", "User")
	f.update(w.issues[3], at(50), func(is *fIssue) { is.assign = []*fUser{alice} })
	f.update(w.issues[2], at(50), nil)
	w.comments = append(w.comments,
		f.addComment(w.api, w.issues[0], "alice", at(40)),
		f.addComment(w.api, w.issues[0], "bob", at(41)),
		f.addComment(w.api, w.prs[0], "bob", at(41)),
		f.addComment(w.api, w.issues[2], "alice", at(45)))
	f.addIssue(w.web, "alice", at(5), true)
	f.addIssue(w.web, "bob", at(6), false)
	f.addIssue(w.tools, "carol", at(7), false)
	f.pushCommit(w.api, "main.go", "package main\n", "Add main")
	f.tag(w.api, "v1.0.0")
	return w
}

func (w *world) cfg(t *testing.T) integrations.Config {
	return cfgJSON(t, w.f, `, "organizations": ["acme"], "users": ["carol"]`)
}

func rid(f *fakeGH, model string, id int64) string {
	return fmt.Sprintf("github:%s:%s:%d", strings.TrimPrefix(f.srv.URL, "http://"), model, id)
}

func prIDs(f *fakeGH, prs ...*fIssue) []string {
	var out []string
	for _, p := range prs {
		out = append(out, rid(f, forge.ModelPullRequest, p.pr.id))
	}
	sort.Strings(out)
	return out
}

func issueIDs(f *fakeGH, is ...*fIssue) []string {
	var out []string
	for _, i := range is {
		out = append(out, rid(f, forge.ModelIssue, i.id))
	}
	sort.Strings(out)
	return out
}

func counts(m map[string][]string) map[string]int {
	out := map[string]int{}
	for k, v := range m {
		out[k] = len(v)
	}
	return out
}

func wantCounts(t *testing.T, what string, got map[string][]string, want map[string]int) {
	t.Helper()
	if c := counts(got); !mapsEqual(c, want) {
		t.Fatalf("%s: records %v, want %v", what, c, want)
	}
}

func mapsEqual(a, b map[string]int) bool {
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	for k, v := range b {
		if a[k] != v {
			return false
		}
	}
	return true
}

func succeeded(t *testing.T, res actors.IntegrationResult) {
	t.Helper()
	if res.Status != actors.StatusSucceeded || len(res.EntityErrors) != 0 {
		t.Fatalf("export: %+v", res)
	}
}

// ---- tests ----

func TestExportThenIncremental(t *testing.T) {
	w := seed(t)
	f := w.f
	r := newRig(t)
	res, recs := r.export(t, w.cfg(t))
	succeeded(t, res)
	got := byModel(recs)
	wantCounts(t, "first export", got, map[string]int{
		"repo": 3, "user": 3, "pull_request": 8, "pull_request_review": 2, "pull_request_comment": 2, "issue": 6, "issue_comment": 4,
		"commit": 4, "branch": 3, "tag": 1,
	})
	if res.Incremental {
		t.Fatal("a first export is not incremental")
	}

	// Fields, as GitHub gave them.
	var pr forge.PullRequest
	_ = json.Unmarshal(find(t, recs, rid(f, "pull_request", w.prs[4].pr.id)).Data, &pr)
	if pr.Number != 5 || pr.Repo != "acme/api" || !pr.Merged || pr.MergedAt == nil || !pr.MergedAt.Equal(at(30)) || pr.State != "closed" ||
		pr.MergeSHA != strings.Repeat("e", 40) || pr.Author.Login != "alice" || pr.Head != "feature-5" || pr.Base != "main" ||
		pr.HeadSHA != fmt.Sprintf("%040x", 5) || !slices.Equal(pr.Labels, []string{"bug"}) || pr.Title != "Change 5" ||
		!pr.UpdatedAt.Equal(at(30)) || !pr.CreatedAt.Equal(at(5)) || pr.HTMLURL != "https://ghe.example.com/acme/api/pull/5" {
		t.Fatalf("pull request: %+v", pr)
	}
	var open forge.PullRequest
	_ = json.Unmarshal(find(t, recs, rid(f, "pull_request", w.prs[0].pr.id)).Data, &open)
	if open.Merged || open.MergedAt != nil || open.MergeSHA != "" || open.State != "open" {
		t.Fatalf("open pull request: %+v", open)
	}
	var rv forge.Review
	_ = json.Unmarshal(find(t, recs, rid(f, "pull_request_review", w.prs[0].pr.reviews[0].id)).Data, &rv)
	if rv.State != "APPROVED" || rv.PullRequest != 1 || rv.Author.Login != "bob" || !rv.SubmittedAt.Equal(at(20)) || rv.CommitID != w.prs[0].pr.headSHA {
		t.Fatalf("review: %+v", rv)
	}
	for _, id := range got["pull_request_review"] {
		if id == rid(f, "pull_request_review", w.prs[0].pr.reviews[1].id) {
			t.Fatal("a pending review was exported")
		}
	}
	var rc forge.ReviewComment
	_ = json.Unmarshal(find(t, recs, rid(f, "pull_request_comment", w.prs[0].pr.rcomments[0].id)).Data, &rc)
	if rc.ReviewID != w.prs[0].pr.reviews[0].id || rc.Path != "main.go" || rc.Line != 12 || rc.PullRequest != 1 || rc.Author.Login != "bob" {
		t.Fatalf("review comment: %+v", rc)
	}
	var is forge.Issue
	_ = json.Unmarshal(find(t, recs, rid(f, "issue", w.issues[3].id)).Data, &is)
	if is.Number != 11 || is.Author.Login != "bob" || !slices.Equal(is.Assignees, []string{"alice"}) || is.Repo != "acme/api" || !is.UpdatedAt.Equal(at(50)) {
		t.Fatalf("issue: %+v", is)
	}
	var ic forge.IssueComment
	_ = json.Unmarshal(find(t, recs, rid(f, "issue_comment", w.comments[2].id)).Data, &ic)
	if ic.Issue != 1 || ic.Author.Login != "bob" || ic.Body != "A comment on #1" || !ic.UpdatedAt.Equal(at(41)) {
		t.Fatalf("issue comment: %+v", ic)
	}
	var repo forge.Repo
	_ = json.Unmarshal(find(t, recs, rid(f, "repo", w.api.id)).Data, &repo)
	if repo.FullName != "acme/api" || repo.Owner != "acme" || repo.DefaultBranch != "main" || repo.CloneURL != f.srv.URL+"/acme/api.git" {
		t.Fatalf("repo: %+v", repo)
	}
	var carol forge.User
	_ = json.Unmarshal(find(t, recs, rid(f, "user", f.user("carol", "User").id)).Data, &carol)
	if carol.Login != "carol" || carol.Email != "carol@example.com" || carol.Type != "User" {
		t.Fatalf("user: %+v", carol)
	}
	// Sessions: org -> repo -> model.
	if e := find(t, recs, rid(f, "pull_request", w.prs[0].pr.id)); !slices.Equal(e.Session, []string{"gh", "org:acme", "repo:acme/api", "pull_request"}) {
		t.Fatalf("session %v", e.Session)
	}
	if e := find(t, recs, rid(f, "issue", w.tools.issues[0].id)); !slices.Equal(e.Session, []string{"gh", "user:carol", "repo:carol/tools", "issue"}) {
		t.Fatalf("session %v", e.Session)
	}
	// Listed as the integration asks: everything, by update time.
	var sawPulls, sawIssues bool
	for _, c := range f.requests() {
		if strings.HasPrefix(c, "GET /repos/acme/api/pulls?") {
			sawPulls = true
			if !strings.Contains(c, "state=all") || !strings.Contains(c, "sort=updated") || !strings.Contains(c, "direction=asc") {
				t.Fatalf("pull requests listed with %s", c)
			}
		}
		if strings.HasPrefix(c, "GET /repos/acme/api/issues?") {
			sawIssues = true
			if !strings.Contains(c, "state=all") || !strings.Contains(c, "sort=updated") || !strings.Contains(c, "direction=asc") {
				t.Fatalf("issues listed with %s", c)
			}
		}
	}
	if !sawPulls || !sawIssues {
		t.Fatal("listings not seen")
	}

	// Between exports: new objects in the same second as the last ones
	// sent, and an old pull request updated.
	pr12 := f.addIssue(w.api, "bob", at(60), true) // same second as #3, #4
	f.update(pr12, at(60), nil)
	f.addReviewComment(pr12, nil, "alice", at(60))
	f.update(pr12, at(60), nil)
	f.addReview(w.prs[1], "alice", "APPROVED", at(70)) // #2 is updated
	f.update(w.prs[1], at(70), nil)
	// The issues listing holds pull requests too: its last second is
	// #3's and #4's.
	is13 := f.addIssue(w.api, "alice", at(60), false)
	c5 := f.addComment(w.api, w.issues[1], "bob", at(45)) // same second as the last comment
	sha := f.pushCommit(w.api, "b.go", "package b\n", "Add b")
	f.update(w.issues[1], at(12), nil) // (this fixture's clock is not GitHub's)

	res, recs = r.export(t, w.cfg(t))
	succeeded(t, res)
	got = byModel(recs)
	if !res.Incremental {
		t.Fatal("the second export should be incremental")
	}
	if want := prIDs(f, w.prs[1], pr12); !slices.Equal(got["pull_request"], want) {
		t.Fatalf("second export: pull requests %v, want exactly %v", got["pull_request"], want)
	}
	if want := issueIDs(f, is13); !slices.Equal(got["issue"], want) {
		t.Fatalf("second export: issues %v, want exactly %v", got["issue"], want)
	}
	if want := []string{rid(f, "issue_comment", c5.id)}; !slices.Equal(got["issue_comment"], want) {
		t.Fatalf("second export: issue comments %v, want exactly %v", got["issue_comment"], want)
	}
	if want := []string{"git:acme/api:" + sha}; !slices.Equal(got["commit"], want) || len(got["branch"]) != 1 || len(got["tag"]) != 0 {
		t.Fatalf("second export: commits %v (want %v), branches %v, tags %v", got["commit"], want, got["branch"], got["tag"])
	}
	if len(got["pull_request_review"]) != 2 || len(got["pull_request_comment"]) != 1 {
		t.Fatalf("second export: reviews %v, review comments %v (those of #2 and #12)", got["pull_request_review"], got["pull_request_comment"])
	}
	// Issues are listed since the last one seen.
	var since bool
	for _, c := range f.requests() {
		since = since || strings.HasPrefix(c, "GET /repos/acme/api/issues?") && strings.Contains(c, "since=2024-05-01T10%3A59%3A59Z")
	}
	if !since {
		t.Fatal("the second export did not list issues since the cursor")
	}

	res, recs = r.export(t, w.cfg(t))
	succeeded(t, res)
	got = byModel(recs)
	for _, m := range []string{"pull_request", "pull_request_review", "pull_request_comment", "issue", "issue_comment", "commit", "branch", "tag"} {
		if len(got[m]) != 0 {
			t.Fatalf("third export, nothing changed: %s %v", m, got[m])
		}
	}
	// The mirrors exist, and hold no credential.
	mirrors := 0
	err := filepath.WalkDir(r.cache, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Name() == "HEAD" {
			mirrors++
		}
		if d.IsDir() {
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		if bytes.Contains(b, []byte(token)) || bytes.Contains(b, []byte(basicAuth(token))) {
			t.Errorf("%s holds the token", p)
		}
		return nil
	})
	if err != nil || mirrors < 3 {
		t.Fatalf("mirrors: %d, %v", mirrors, err)
	}
}

// Rate limits are waited out (and shown as progress), a 502 is retried,
// and the export ends with everything.
func TestRateLimitsAndRetries(t *testing.T) {
	w := seed(t)
	r := newRig(t)
	var mu sync.Mutex
	seen := map[string]int{}
	var reset time.Time
	var retriedAt time.Time
	w.f.setHook(func(rw http.ResponseWriter, req *http.Request, _ int) bool {
		mu.Lock()
		defer mu.Unlock()
		p := strings.TrimPrefix(req.URL.Path, "/api/v3")
		key := p + "?" + req.URL.Query().Get("page")
		seen[key]++
		switch {
		case key == "/repos/acme/api/pulls?2" && seen[key] == 1:
			badGateway(rw)
			return true
		case p == "/repos/acme/api/issues" && seen[key] == 1:
			reset = time.Now().Add(time.Second).Truncate(time.Second).Add(time.Second) // 1-2 s ahead
			rateLimited(rw, reset)
			return true
		case p == "/repos/acme/api/issues" && seen[key] == 2:
			retriedAt = time.Now()
		case p == "/repos/acme/api/issues/comments" && seen[key] == 1:
			secondaryLimited(rw, "1")
			return true
		case p == "/repos/acme/web/pulls" && seen[key] == 1:
			secondaryLimited(rw, "") // no Retry-After: the body says it
			return true
		}
		return false
	})
	start := time.Now()
	res, recs := r.export(t, w.cfg(t))
	succeeded(t, res)
	wantCounts(t, "export", byModel(recs), map[string]int{
		"repo": 3, "user": 3, "pull_request": 8, "pull_request_review": 2, "pull_request_comment": 2, "issue": 6, "issue_comment": 4,
		"commit": 4, "branch": 3, "tag": 1,
	})
	mu.Lock()
	defer mu.Unlock()
	if retriedAt.Before(reset) {
		t.Fatalf("the rate-limited request was retried at %s, before the reset at %s", retriedAt, reset)
	}
	if el := time.Since(start); el < 2*time.Second {
		t.Fatalf("export took %s: the waits (reset, Retry-After: 1) were not honoured", el)
	}
	for _, k := range []string{"/repos/acme/api/pulls?2", "/repos/acme/api/issues?1", "/repos/acme/api/issues/comments?1", "/repos/acme/web/pulls?1"} {
		if seen[k] < 2 {
			t.Fatalf("%s asked %d times, want a retry (%v)", k, seen[k], seen)
		}
	}
	logs := r.logs.String()
	if !strings.Contains(logs, `"reason":"rate limited"`) || !strings.Contains(logs, `"reason":"502 Bad Gateway"`) {
		t.Fatalf("waits not logged:\n%s", logs)
	}
}

// A rejected token fails the integration with an error that says so
// (and does not show the token).
func TestExpiredToken(t *testing.T) {
	w := seed(t)
	w.f.token = "ghp_the_server_wants_another_token"
	r := newRig(t)
	res, recs := r.export(t, w.cfg(t))
	if res.Status != actors.StatusFailed || !strings.Contains(res.Error, "token was rejected (HTTP 401)") || !strings.Contains(res.Error, "Bad credentials") {
		t.Fatalf("result %+v", res)
	}
	if strings.Contains(res.Error, token) || len(recs) != 0 {
		t.Fatalf("error %q, %d records", res.Error, len(recs))
	}
	if n := len(w.f.requests()); n > 0 {
		t.Fatalf("%d requests got past authentication", n)
	}
}

// One repo that fails is an entity error; the others are exported, and the
// failed one is tried again (in full) by the next export.
func TestFailingRepoAmongGoodOnes(t *testing.T) {
	w := seed(t)
	r := newRig(t)
	w.f.setHook(func(rw http.ResponseWriter, req *http.Request, _ int) bool {
		if strings.HasPrefix(req.URL.Path, "/api/v3/repos/acme/web/") {
			ghError(rw, http.StatusInternalServerError, "Internal Server Error", docs)
			return true
		}
		return false
	})
	res, recs := r.export(t, w.cfg(t))
	if res.Status != actors.StatusSucceeded || len(res.EntityErrors) != 1 {
		t.Fatalf("result %+v", res)
	}
	ee := res.EntityErrors[0]
	if !slices.Equal(ee.Path, []string{"gh", "org:acme", "repo:acme/web"}) || !strings.Contains(ee.Error, "500") {
		t.Fatalf("entity error %+v", ee)
	}
	got := byModel(recs)
	if len(got["pull_request"]) != 7 || len(got["issue"]) != 5 {
		t.Fatalf("the good repos: %v", counts(got))
	}
	w.f.setHook(nil)
	res, recs = r.export(t, w.cfg(t))
	succeeded(t, res)
	got = byModel(recs)
	if want := prIDs(w.f, w.web.issues[0]); !slices.Equal(got["pull_request"], want) {
		t.Fatalf("second export: pull requests %v, want the failed repo's %v", got["pull_request"], want)
	}
	if want := issueIDs(w.f, w.web.issues[1]); !slices.Equal(got["issue"], want) {
		t.Fatalf("second export: issues %v, want %v", got["issue"], want)
	}
}

// Members that cannot be listed fail alone: the organization's repos are
// exported.
func TestMembersFailAlone(t *testing.T) {
	w := seed(t)
	r := newRig(t)
	w.f.setHook(func(rw http.ResponseWriter, req *http.Request, _ int) bool {
		if req.URL.Path == "/api/v3/orgs/acme/members" {
			ghError(rw, http.StatusForbidden, "Resource not accessible by integration", docs+"/orgs/members#list-organization-members")
			return true
		}
		return false
	})
	res, recs := r.export(t, w.cfg(t))
	if res.Status != actors.StatusSucceeded || len(res.EntityErrors) != 1 ||
		!slices.Equal(res.EntityErrors[0].Path, []string{"gh", "org:acme", "user"}) || !strings.Contains(res.EntityErrors[0].Error, "403") {
		t.Fatalf("result %+v", res)
	}
	if got := byModel(recs); len(got["pull_request"]) != 8 || len(got["user"]) != 1 {
		t.Fatalf("records %v", counts(got))
	}
}

// A repo with issues disabled answers 410 to its issue listings: nothing
// to export there, not a failure.
func TestIssuesDisabled(t *testing.T) {
	w := seed(t)
	r := newRig(t)
	w.f.setHook(func(rw http.ResponseWriter, req *http.Request, _ int) bool {
		if strings.HasPrefix(req.URL.Path, "/api/v3/repos/acme/web/issues") {
			ghError(rw, http.StatusGone, "Issues are disabled for this repo", "https://docs.github.com/v3/issues/")
			return true
		}
		return false
	})
	res, recs := r.export(t, w.cfg(t))
	succeeded(t, res)
	if got := byModel(inRepo(recs, "acme/web")); len(got["issue"]) != 0 || len(got["pull_request"]) != 1 {
		t.Fatalf("acme/web: %v", counts(got))
	}
}

// A repo that fails part-way keeps the checkpoints of the pages it sent:
// the next export goes on from there, without a gap.
func TestResumeFromCheckpoint(t *testing.T) {
	w := seed(t)
	r := newRig(t)
	w.f.setHook(func(rw http.ResponseWriter, req *http.Request, _ int) bool {
		if req.URL.Path == "/api/v3/repos/acme/api/pulls" && req.URL.Query().Get("page") == "3" {
			ghError(rw, http.StatusNotFound, "Not Found", docs)
			return true
		}
		return false
	})
	res, first := r.export(t, w.cfg(t))
	if len(res.EntityErrors) != 1 {
		t.Fatalf("result %+v", res)
	}
	sent := byModel(inRepo(first, "acme/api"))["pull_request"]
	if len(sent) != 6 {
		t.Fatalf("%d pull requests before the failure, want 6 (two pages)", len(sent))
	}
	w.f.setHook(nil)
	res, second := r.export(t, w.cfg(t))
	succeeded(t, res)
	again := byModel(inRepo(second, "acme/api"))["pull_request"]
	all := map[string]bool{}
	for _, id := range append(slices.Clone(sent), again...) {
		all[id] = true
	}
	if len(all) != 7 {
		t.Fatalf("%d distinct pull requests after resuming, want 7", len(all))
	}
	// Resumed, not restarted: of the first two pages only the last
	// checkpoint's second (#3 and #4 share it) may come again.
	for _, id := range again {
		if slices.Contains(sent, id) && !slices.Contains(prIDs(w.f, w.prs[2], w.prs[3]), id) {
			t.Fatalf("%s sent again after its checkpoint", id)
		}
	}
}

// repos narrows the export; a listed repo of an owner not configured is
// fetched alone and exported under its owner; a missing one is an entity
// error.
func TestReposFilter(t *testing.T) {
	w := seed(t)
	solo := w.f.addRepo("dave", "User", "solo", at(0))
	w.f.addIssue(solo, "dave", at(3), false)
	r := newRig(t)
	cfg := cfgJSON(t, w.f, `, "organizations": ["acme"], "repos": ["acme/API", "dave/solo", "acme/ghost"]`)
	res, recs := r.export(t, cfg)
	if res.Status != actors.StatusSucceeded || len(res.EntityErrors) != 1 ||
		!slices.Equal(res.EntityErrors[0].Path, []string{"gh", "org:acme", "repo:acme/ghost"}) || !strings.Contains(res.EntityErrors[0].Error, "404") {
		t.Fatalf("result %+v", res)
	}
	got := byModel(recs)
	if len(got["user"]) != 2 { // acme's members
		t.Fatalf("users %v", got["user"])
	}
	if want := []string{rid(w.f, "repo", w.api.id), rid(w.f, "repo", solo.id)}; !slices.Equal(got["repo"], sorted(want)) {
		t.Fatalf("repos %v, want %v", got["repo"], want)
	}
	if e := find(t, recs, rid(w.f, "issue", solo.issues[0].id)); !slices.Equal(e.Session, []string{"gh", "user:dave", "repo:dave/solo", "issue"}) {
		t.Fatalf("session %v", e.Session)
	}
	for _, e := range recs {
		if slices.Contains(e.Session, "repo:acme/web") {
			t.Fatalf("acme/web is not in repos: %+v", e)
		}
	}
}

func inRepo(recs []env, full string) []env {
	var out []env
	for _, e := range recs {
		if slices.Contains(e.Session, "repo:"+full) {
			out = append(out, e)
		}
	}
	return out
}

func sorted(s []string) []string {
	out := slices.Clone(s)
	sort.Strings(out)
	return out
}

func newDirect(t *testing.T, f *fakeGH, extra string) *GitHub {
	t.Helper()
	cfg := cfgJSON(t, f, extra).(*Config)
	g, err := New(integrations.Options{ID: "gh", Logger: zerolog.Nop()}, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return g
}

func TestValidate(t *testing.T) {
	w := seed(t)
	w.f.scopes = []string{"public_repo", "read:user"}
	g := newDirect(t, w.f, `, "organizations": ["acme", "nope"], "users": ["carol"], "repos": ["acme/api", "acme/gone"]`)
	v := g.Validate(context.Background())
	if v.Valid {
		t.Fatalf("valid: %+v", v)
	}
	joined := strings.Join(v.Errors, "\n")
	for _, want := range []string{"missing scope repo", "missing scope read:org", "organizations: nope: cannot reach", "repos: acme/gone: cannot reach"} {
		if !strings.Contains(joined, want) {
			t.Fatalf("errors %q lack %q", v.Errors, want)
		}
	}
	if strings.Contains(joined, "read:user") || strings.Contains(joined, "carol") || strings.Contains(joined, "acme/api") {
		t.Fatalf("errors %q name what is fine", v.Errors)
	}
	if !slices.Equal(v.Details["scopes"].([]string), []string{"public_repo", "read:user"}) || v.Details["login"] != "tokenowner" {
		t.Fatalf("details %+v", v.Details)
	}

	w.f.scopes = []string{"repo", "admin:org", "user"}
	if v := newDirect(t, w.f, `, "organizations": ["acme"], "users": ["carol"]`).Validate(context.Background()); !v.Valid {
		t.Fatalf("implied scopes: %+v", v)
	}
	w.f.scopes = nil // a fine-grained token says nothing
	v = newDirect(t, w.f, `, "organizations": ["acme"]`).Validate(context.Background())
	if !v.Valid || v.Details["scopes_note"] == nil {
		t.Fatalf("fine-grained: %+v", v)
	}
	// An app installation token cannot read /user: the API root tells.
	w.f.scopes = []string{"repo"}
	w.f.setHook(func(rw http.ResponseWriter, req *http.Request, _ int) bool {
		if req.URL.Path == "/api/v3/user" {
			ghError(rw, http.StatusForbidden, "Resource not accessible by integration", docs+"/users/users#get-the-authenticated-user")
			return true
		}
		return false
	})
	v = newDirect(t, w.f, `, "repos": ["acme/api"]`).Validate(context.Background())
	if !v.Valid || v.Details["login"] != nil || !slices.Equal(v.Details["scopes"].([]string), []string{"repo"}) {
		t.Fatalf("app token: %+v", v)
	}
	w.f.setHook(nil)
	w.f.token = "another"
	v = newDirect(t, w.f, `, "organizations": ["acme"]`).Validate(context.Background())
	if v.Valid || len(v.Errors) != 1 || !strings.Contains(v.Errors[0], "token: rejected by GitHub (HTTP 401)") {
		t.Fatalf("401: %+v", v)
	}
}

func TestOnboard(t *testing.T) {
	w := seed(t)
	g := newDirect(t, w.f, `, "organizations": ["acme"], "users": ["carol"]`)
	var repos, users []string
	if err := g.Onboard(context.Background(), integrations.ObjectRepos, func(o integrations.Object) error {
		repos = append(repos, o.Name)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if err := g.Onboard(context.Background(), integrations.ObjectUsers, func(o integrations.Object) error {
		users = append(users, o.Name)
		if !strings.HasPrefix(o.ID, "github:") {
			t.Errorf("id %s", o.ID)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(sorted(repos), []string{"acme/api", "acme/web", "carol/tools"}) || !slices.Equal(sorted(users), []string{"alice", "bob", "carol"}) {
		t.Fatalf("repos %v users %v", repos, users)
	}
	if err := g.Onboard(context.Background(), integrations.ObjectProjects, func(integrations.Object) error { return nil }); err == nil {
		t.Fatal("projects are not listed")
	}
}

func TestConfig(t *testing.T) {
	for raw, want := range map[string]string{
		`{"token": "x"}`:                                          "organizations, users, repos: give at least one",
		`{"organizations": ["acme"]}`:                             "token: required",
		`{"token": "x", "repos": ["acme"]}`:                       `repos[0]: "acme" is not owner/name`,
		`{"token": "x", "users": ["a b"]}`:                        `users[0]: "a b" is not a GitHub login`,
		`{"token": "x", "users": ["a"], "url": "ftp://x"}`:        "url: ",
		`{"token": "x", "users": ["a"], "orgs": ["acme"]}`:        `unknown key "orgs"`,
		`{"token": "x", "users": ["a"], "ca_file": "/nope"}`:      "ca_file: ",
		"token: x\nusers: [a]\nrepo: [x/y]\n":                     `github config: unknown key "repo" (line 3); did you mean "repos"?`,
		`{"token": "a b", "users": ["a"]}`:                        "token: must not contain spaces",
		`{"token": "x", "users": ["a"], "url": "https://u:p@h/"}`: "url: must not hold credentials",
	} {
		_, err := integrations.DecodeConfig(Type, []byte(raw))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: error %v, want %q", raw, err, want)
		}
	}
	c, err := integrations.DecodeConfig(Type, []byte("token: "+token+"\nusers: [a]\n"))
	if err != nil {
		t.Fatal(err)
	}
	cfg := c.(*Config)
	if cfg.URL != DefaultURL || string(cfg.Token) != token {
		t.Fatalf("%+v", cfg)
	}
	b, _ := json.Marshal(cfg)
	for _, s := range []string{fmt.Sprintf("%v", cfg), fmt.Sprintf("%+v", *cfg), fmt.Sprintf("%#v", *cfg), string(b)} {
		if strings.Contains(s, token) || !strings.Contains(s, "[redacted]") {
			t.Fatalf("the token shows: %s", s)
		}
	}
	g, err := New(integrations.Options{ID: "gh", Logger: zerolog.Nop()}, cfg)
	if err != nil || g.host != "github.com" || g.client.BaseURL() != DefaultURL {
		t.Fatalf("public API: %v %+v", err, g)
	}
	cfg.URL = "https://ghe.example.com"
	if g, err = New(integrations.Options{ID: "gh", Logger: zerolog.Nop()}, cfg); err != nil || g.host != "ghe.example.com" || g.client.BaseURL() != "https://ghe.example.com/api/v3/" {
		t.Fatalf("enterprise: %v %s", err, g.client.BaseURL())
	}
}

// A wait of the HTTP layer shows as progress of the running export.
func TestOnWaitTouchesTheSessionTree(t *testing.T) {
	w := seed(t)
	g := newDirect(t, w.f, `, "users": ["carol"]`)
	run := sessions.NewRun(sessions.RunOptions{IntegrationID: "gh", Store: nopStore{}})
	g.root.Store(run.Root())
	g.setProgress(run.Root(), 2, 5)
	before := run.LastActivity()
	time.Sleep(5 * time.Millisecond)
	g.onWait(time.Minute, "rate limited")
	if !run.LastActivity().After(before) {
		t.Fatal("a wait did not count as activity")
	}
	if n := run.Snapshot()[0]; n.Current != 2 || n.Total != 5 {
		t.Fatalf("progress %+v", n)
	}
}

type nopStore struct{}

func (nopStore) Append(context.Context, string, [][]byte) error { return nil }
func (nopStore) PutToken(context.Context, string, string) error { return nil }
func (nopStore) Token(string) (string, bool, error)             { return "", false, nil }

func TestSecondaryLimitByBody(t *testing.T) {
	mk := func(code int, body string) *http.Response {
		return &http.Response{StatusCode: code, Header: http.Header{}, Body: io.NopCloser(strings.NewReader(body))}
	}
	resp := mk(403, `{"message":"You have exceeded a secondary rate limit. Please wait a few minutes before you try again.","documentation_url":"https://docs.github.com/rest/overview/rate-limits-for-the-rest-api#about-secondary-rate-limits","status":"403"}`)
	if d, ok := rateLimit(resp); !ok || d != secondaryWait {
		t.Fatalf("secondary by body: %s %v", d, ok)
	}
	body := `{"message":"Resource not accessible by personal access token","documentation_url":"https://docs.github.com/rest","status":"403"}`
	resp = mk(403, body)
	if _, ok := rateLimit(resp); ok {
		t.Fatal("a permission error is not a rate limit")
	}
	if b, _ := io.ReadAll(resp.Body); string(b) != body {
		t.Fatalf("body not put back: %q", b)
	}
}
