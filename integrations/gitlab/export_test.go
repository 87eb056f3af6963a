package gitlab

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"go.uber.org/goleak"

	"courier/actors"
	"courier/integrations"
	"courier/integrations/forge"
	"courier/internal/exporttest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, exporttest.GoleakOptions()...)
}

type envelope = exporttest.Envelope

// world is what build puts on a fake.
type world struct {
	alice, bob    *fUser
	api, web, nts *fProject
	mr1, mr2      *fObj
	iss1          *fObj
	diff, talk    *fNote
	issNote       *fNote
}

// build: group acme (members alice and bob) with acme/platform/api (in a
// subgroup) and acme/web; user bob with bob/notes. Five merge requests
// and three issues in api, so that every list takes several pages of 2.
func build(f *fakeGL) *world {
	w := &world{alice: f.user("alice", "Alice A"), bob: f.user("bob", "Bob B")}
	f.group("acme", w.alice, w.bob)
	w.api = f.project("acme/platform", "api", false)
	w.web = f.project("acme", "web", false)
	w.nts = f.project("bob", "notes", true)
	w.mr1 = f.obj(w.api, false, w.alice, "Add the feature")
	w.mr2 = f.obj(w.api, false, w.bob, "Fix it")
	for i := 3; i <= 5; i++ {
		f.obj(w.api, false, w.alice, fmt.Sprintf("Change %d", i))
	}
	w.diff = f.note(w.mr1, w.bob, "line two is wrong", "feature.txt", false)
	w.talk = f.note(w.mr1, w.alice, "thanks, fixed", "", false)
	f.approve(w.mr1, w.bob)
	f.review(w.mr2, w.alice, "requested_changes")
	w.iss1 = f.obj(w.api, true, w.bob, "Crash on start")
	f.obj(w.api, true, w.alice, "Typo")
	f.obj(w.api, true, w.alice, "Slow")
	w.issNote = f.note(w.iss1, w.alice, "I can reproduce it", "", false)
	f.note(w.iss1, w.alice, "added label bug", "", true)
	f.obj(w.web, false, w.alice, "Web change")
	f.obj(w.web, true, w.bob, "Web issue")
	f.obj(w.nts, true, w.bob, "More notes")
	f.commit(w.api, "feature.txt", "one\ntwo\n")
	f.git(filepath.Join(f.gitRoot, w.api.full()+".git"), "tag", "v1.0", "main")
	// Everything is older than the horizon of the next export.
	f.advance(10_000_000_000)
	return w
}

// rid is a record id of the fake's host.
func (f *fakeGL) rid(model string, id any) string {
	return fmt.Sprintf("gitlab:%s:%s:%v", strings.TrimPrefix(f.url(), "http://"), model, id)
}

// want is every record id an export of w holds.
func (f *fakeGL) want(t *testing.T, w *world) map[string]bool {
	want := map[string]bool{}
	add := func(ids ...string) {
		for _, id := range ids {
			want[id] = true
		}
	}
	add(f.rid("user", w.alice.id), f.rid("user", w.bob.id))
	for _, p := range []*fProject{w.api, w.web, w.nts} {
		add(f.rid("repo", p.id))
		for _, o := range p.mrs {
			add(f.rid("pull_request", o.id))
			for _, u := range o.approvals {
				add(f.rid("pull_request_review", fmt.Sprintf("%d-%d", o.id, u.id)))
			}
			for u := range o.reviewers {
				if !slices.Contains(o.approvals, u) {
					add(f.rid("pull_request_review", fmt.Sprintf("%d-%d", o.id, u.id)))
				}
			}
		}
		for _, o := range p.issues {
			add(f.rid("issue", o.id))
		}
		for _, o := range append(slices.Clone(p.mrs), p.issues...) {
			for _, n := range o.notes {
				switch {
				case n.system:
				case n.diff != "":
					add(f.rid("pull_request_comment", n.id))
				default:
					add(f.rid("issue_comment", n.id))
				}
			}
		}
		bare := filepath.Join(f.gitRoot, p.full()+".git")
		for _, sha := range strings.Fields(f.git("", "--git-dir="+bare, "rev-list", "--all")) {
			add("git:" + p.full() + ":" + sha)
		}
		add("git:" + p.full() + ":branch:main")
	}
	add("git:" + w.api.full() + ":tag:v1.0")
	return want
}

type rig struct {
	*exporttest.Rig
	cache string
}

func newRig(t *testing.T) *rig {
	dir := t.TempDir()
	cache := filepath.Join(dir, "cache")
	r := exporttest.New(t, exporttest.Options{Dir: dir, Echo: os.Getenv("COURIER_TEST_LOGS") != "",
		Export: actors.ExportOptions{CacheDir: func(string) string { return cache }}})
	return &rig{Rig: r, cache: cache}
}

func spec(t *testing.T, cfg any) actors.IntegrationSpec {
	t.Helper()
	raw, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	c, err := integrations.DecodeConfig(Type, raw)
	if err != nil {
		t.Fatal(err)
	}
	return actors.IntegrationSpec{ID: "int_gl", Type: Type, Config: c}
}

func (r *rig) export(t *testing.T, s actors.IntegrationSpec) (actors.IntegrationResult, []envelope) {
	t.Helper()
	res := r.Run(t, actors.ExportSpec{Integrations: []actors.IntegrationSpec{s}})
	r.Drain(t)
	return res.Integrations[0], r.Records()
}

// index maps record ids to their envelopes, failing on one sent twice
// under the same session in one export.
func index(t *testing.T, recs []envelope) map[string][]envelope {
	t.Helper()
	out := map[string][]envelope{}
	for _, e := range recs {
		for _, prev := range out[e.ID] {
			if slices.Equal(prev.Session, e.Session) {
				t.Errorf("record %s sent twice under %v", e.ID, e.Session)
			}
		}
		out[e.ID] = append(out[e.ID], e)
	}
	return out
}

func sameIDs(t *testing.T, what string, got map[string][]envelope, want map[string]bool) {
	t.Helper()
	var missing, extra []string
	for id := range want {
		if len(got[id]) == 0 {
			missing = append(missing, id)
		}
	}
	for id := range got {
		if !want[id] {
			extra = append(extra, id)
		}
	}
	if len(missing)+len(extra) > 0 {
		slices.Sort(missing)
		slices.Sort(extra)
		t.Errorf("%s: missing %v\nunexpected %v\ngot %v", what, missing, extra, slices.Sorted(maps.Keys(got)))
	}
}

func decode[T any](t *testing.T, e envelope) T {
	t.Helper()
	var v T
	if err := json.Unmarshal(e.Data, &v); err != nil {
		t.Fatalf("%s: %v", e.ID, err)
	}
	return v
}

func (f *fakeGL) config(more map[string]any) map[string]any {
	cfg := map[string]any{"url": f.url(), "token": f.token, "groups": []string{"acme"}, "users": []string{"bob"}}
	maps.Copy(cfg, more)
	return cfg
}

// A full export holds every object of the fake with its fields; a second
// export sends only what changed, including an object updated while its
// list was being paged; a 429 is waited out.
func TestExportAgainstTheFake(t *testing.T) {
	defer func(n int64) { pageSize = n }(pageSize)
	pageSize = 2
	f := newFake(t)
	w := build(f)
	r := newRig(t)
	s := spec(t, f.config(nil))

	// The first merge request page of api is rate limited once, as GitLab
	// answers: 429 with Retry-After and RateLimit-* headers.
	limited := false
	f.fault(func(rw http.ResponseWriter, req *http.Request) bool {
		if limited || !strings.HasSuffix(req.URL.Path, fmt.Sprintf("/projects/%d/merge_requests", w.api.id)) {
			return false
		}
		limited = true
		h := rw.Header()
		h.Set("Retry-After", "1")
		h.Set("RateLimit-Limit", "600")
		h.Set("RateLimit-Observed", "601")
		h.Set("RateLimit-Remaining", "0")
		h.Set("RateLimit-Reset", "1717243260")
		h.Set("RateLimit-ResetTime", "Sat, 01 Jun 2024 12:01:00 GMT")
		http.Error(rw, "Retry later", http.StatusTooManyRequests)
		return true
	})
	res, recs := r.export(t, s)
	if res.Status != actors.StatusSucceeded || len(res.EntityErrors) != 0 {
		t.Fatalf("first export: %+v", res)
	}
	if !limited || r.LogBuf.Count("rate limited") == 0 {
		t.Errorf("the 429 was not met or not waited out (limited %v)", limited)
	}
	got := index(t, recs)
	sameIDs(t, "first export", got, f.want(t, w))
	if n := len(got[f.rid("user", w.bob.id)]); n != 2 {
		t.Errorf("bob sent %d times, want under group:acme and user:bob", n)
	}
	one := func(id string) envelope {
		t.Helper()
		if len(got[id]) == 0 {
			t.Fatalf("no record %s", id)
		}
		return got[id][0]
	}
	if ss := one(f.rid("issue", w.iss1.id)).Session; !slices.Equal(ss, []string{"int_gl", "group:acme", "project:acme/platform/api", "issue"}) {
		t.Errorf("issue session %v", ss)
	}
	if ss := one(f.rid("repo", w.nts.id)).Session; !slices.Equal(ss, []string{"int_gl", "user:bob", "project:bob/notes", "repo"}) {
		t.Errorf("notes repo session %v", ss)
	}
	repo := decode[forge.Repo](t, one(f.rid("repo", w.api.id)))
	if repo.FullName != "acme/platform/api" || repo.Owner != "acme/platform" || repo.Name != "api" || !repo.Private ||
		repo.DefaultBranch != "main" || repo.CloneURL != f.url()+"/acme/platform/api.git" || repo.UpdatedAt.IsZero() {
		t.Errorf("repo record %+v", repo)
	}
	pr := decode[forge.PullRequest](t, one(f.rid("pull_request", w.mr1.id)))
	if pr.Number != 1 || pr.Repo != "acme/platform/api" || pr.Title != "Add the feature" || pr.State != "open" ||
		pr.Author.Login != "alice" || pr.Head != "feature-1" || pr.Base != "main" || !pr.UpdatedAt.Equal(w.mr1.updated) ||
		!slices.Equal(pr.Labels, []string{"bug"}) || !slices.Equal(pr.Assignees, []string{"alice"}) {
		t.Errorf("merge request record %+v", pr)
	}
	rv := decode[forge.Review](t, one(f.rid("pull_request_review", fmt.Sprintf("%d-%d", w.mr1.id, w.bob.id))))
	if rv.State != "APPROVED" || rv.Author.Login != "bob" || rv.PullRequest != 1 || rv.SubmittedAt.IsZero() {
		t.Errorf("approval record %+v", rv)
	}
	rv = decode[forge.Review](t, one(f.rid("pull_request_review", fmt.Sprintf("%d-%d", w.mr2.id, w.alice.id))))
	if rv.State != "CHANGES_REQUESTED" || rv.Author.Login != "alice" || rv.PullRequest != 2 {
		t.Errorf("review record %+v", rv)
	}
	rc := decode[forge.ReviewComment](t, one(f.rid("pull_request_comment", w.diff.id)))
	if rc.Path != "feature.txt" || rc.Line != 2 || rc.Body != "line two is wrong" || rc.Author.Login != "bob" || rc.PullRequest != 1 || len(rc.CommitID) != 40 {
		t.Errorf("diff note record %+v", rc)
	}
	ic := decode[IssueComment](t, one(f.rid("issue_comment", w.talk.id)))
	if ic.NoteableType != "MergeRequest" || ic.Issue != 1 || ic.Body != "thanks, fixed" {
		t.Errorf("merge request note record %+v", ic)
	}
	ic = decode[IssueComment](t, one(f.rid("issue_comment", w.issNote.id)))
	if ic.NoteableType != "Issue" || ic.Issue != 1 || ic.Author.Login != "alice" {
		t.Errorf("issue note record %+v", ic)
	}
	is := decode[forge.Issue](t, one(f.rid("issue", w.iss1.id)))
	if is.State != "open" || is.Comments != 1 || is.Author.Login != "bob" || is.Title != "Crash on start" {
		t.Errorf("issue record %+v", is)
	}

	// Nothing changed: nothing but the users' and repos' unchanged hashes
	// are checked; no record is sent.
	f.fault(nil)
	res, recs = r.export(t, s)
	if res.Status != actors.StatusSucceeded || len(recs) != 0 {
		t.Fatalf("second export of an unchanged server: %+v, %d records: %v", res, len(recs), slices.Collect(maps.Keys(index(t, recs))))
	}

	// While the first page of api's merge requests is read, the oldest
	// one (on the last page) is edited: it moves to the front, which was
	// already read, and the others shift back, one onto a page read again.
	// Nothing is sent twice; the edit comes with the next export.
	f.touch(w.mr2, "Fix it, again")
	f.advance(10_000_000_000)
	oldest := w.api.mrs[2]
	edited := false
	f.onPage(func(list string, page int) {
		if list == "merge requests of "+w.api.full() && page == 1 && !edited {
			edited = true
			f.touch(oldest, "edited while paging")
		}
	})
	_, recs = r.export(t, s)
	got = index(t, recs)
	if !edited || len(got[f.rid("pull_request", w.mr2.id)]) != 1 {
		t.Fatalf("third export (edited %v): %v", edited, slices.Collect(maps.Keys(got)))
	}
	f.onPage(nil)
	f.advance(10_000_000_000)
	_, recs = r.export(t, s)
	got = index(t, recs)
	if e := got[f.rid("pull_request", oldest.id)]; len(e) != 1 || decode[forge.PullRequest](t, e[0]).Title != "edited while paging" {
		t.Fatalf("fourth export: the merge request edited while paging is not there: %v", slices.Collect(maps.Keys(got)))
	}
}

// A project that cannot be read is an entity error; the others export.
// An expired token fails the integration with an error naming the token.
func TestFailingProjectAndExpiredToken(t *testing.T) {
	f := newFake(t)
	w := build(f)
	r := newRig(t)
	f.fault(func(rw http.ResponseWriter, req *http.Request) bool {
		if req.URL.Path == fmt.Sprintf("/api/v4/projects/%d/issues", w.web.id) {
			f.json(rw, http.StatusForbidden, map[string]any{"message": "403 Forbidden"})
			return true
		}
		return false
	})
	res, recs := r.export(t, spec(t, f.config(nil)))
	if res.Status != actors.StatusSucceeded || len(res.EntityErrors) != 1 || !strings.Contains(fmt.Sprint(res.EntityErrors), "403") {
		t.Fatalf("export with a failing project: %+v", res)
	}
	got := index(t, recs)
	if len(got[f.rid("repo", w.api.id)]) == 0 || len(got[f.rid("repo", w.nts.id)]) == 0 || len(got["git:bob/notes:branch:main"]) == 0 {
		t.Errorf("the other projects did not export: %v", slices.Collect(maps.Keys(got)))
	}

	f.fault(nil)
	f.expire()
	res, _ = r.export(t, spec(t, f.config(nil)))
	if res.Status != actors.StatusFailed || !strings.Contains(res.Error, "token") || !strings.Contains(res.Error, "expired") {
		t.Fatalf("expired token: %+v", res)
	}
	if strings.Contains(r.Logs(), f.token) || strings.Contains(res.Error, f.token) {
		t.Error("the token is in the logs or the error")
	}
	g, err := New(integrations.Options{ID: "v", Logger: r.Log}, mustConfig(t, f.config(nil)))
	if err != nil {
		t.Fatal(err)
	}
	v := g.Validate(context.Background())
	if v.Valid || len(v.Errors) != 1 || !strings.HasPrefix(v.Errors[0], "token: rejected") {
		t.Fatalf("validate with an expired token: %+v", v)
	}
}

func mustConfig(t *testing.T, cfg map[string]any) *Config {
	t.Helper()
	raw, _ := json.Marshal(cfg)
	c, err := integrations.DecodeConfig(Type, raw)
	if err != nil {
		t.Fatal(err)
	}
	return c.(*Config)
}

func TestValidateAndOnboard(t *testing.T) {
	f := newFake(t)
	w := build(f)
	r := newRig(t)
	g, err := New(integrations.Options{ID: "v", Logger: r.Log}, mustConfig(t, f.config(map[string]any{
		"groups": []string{"acme", "nope"}, "projects": []string{"acme/web", "acme/missing"}})))
	if err != nil {
		t.Fatal(err)
	}
	v := g.Validate(context.Background())
	if v.Valid || len(v.Errors) != 2 || !strings.HasPrefix(v.Errors[0], "groups: nope: not found") ||
		!strings.HasPrefix(v.Errors[1], "projects: acme/missing: not found") || v.Details["server_version"] != "11.3.4-ee" {
		t.Fatalf("validate: %+v", v)
	}

	g, _ = New(integrations.Options{ID: "v", Logger: r.Log}, mustConfig(t, f.config(map[string]any{"projects": []string{"acme/web"}})))
	if v := g.Validate(context.Background()); !v.Valid {
		t.Fatalf("validate: %+v", v)
	}
	var names []string
	if err := g.Onboard(context.Background(), integrations.ObjectRepos, func(o integrations.Object) error {
		names = append(names, o.Name)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	// acme/web is acme's too: listed once.
	if !slices.Equal(names, []string{"acme/platform/api", "acme/web", "bob/notes"}) {
		t.Errorf("onboard repos: %v", names)
	}
	names = nil
	if err := g.Onboard(context.Background(), integrations.ObjectUsers, func(o integrations.Object) error {
		names = append(names, o.Name)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(names, []string{w.alice.login, w.bob.login}) {
		t.Errorf("onboard users: %v", names)
	}
	if err := g.Onboard(context.Background(), integrations.ObjectProjects, func(integrations.Object) error { return nil }); err == nil {
		t.Error("onboard projects: no error")
	}
}

func TestConfigProblemsNameTheirKey(t *testing.T) {
	for doc, want := range map[string]string{
		`{"token":"x","groups":["acme"],"url":"ftp://x"}`:                "url: must be an http(s) URL",
		`{"groups":["acme"]}`:                                            "token: required",
		`{"token":"x"}`:                                                  "groups, users, projects: give at least one",
		`{"token":"x","projects":["api"]}`:                               `projects[0]: "api" is not a full path`,
		`{"token":"x","users":["a/b"]}`:                                  `users[0]: "a/b" is not a user name`,
		`{"token":"x","groups":["acme","ACME"]}`:                         `groups[1]: "ACME" is groups[0] again`,
		`{"token":"x","groups":["acme"],"url":"https://u:p@gl.example"}`: "url: must not carry credentials",
	} {
		_, err := integrations.DecodeConfig(Type, []byte(doc))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: want %q, got %v", doc, want, err)
		}
	}
	c := mustConfig(t, map[string]any{"token": "glpat-secret", "groups": []string{"acme"}})
	if c.URL != DefaultURL || strings.Contains(fmt.Sprintf("%v %+v %#v", c, c, c), "glpat-secret") {
		t.Errorf("config: %v", c)
	}
}
