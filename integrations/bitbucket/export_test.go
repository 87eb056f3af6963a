package bitbucket

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"courier/actors"
	"courier/integrations"
	"courier/internal/exporttest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, exporttest.GoleakOptions()...)
}

// shrink makes pages small and retries quick for one test.
func shrink(t *testing.T, page int) {
	t.Helper()
	oldPage, oldBackoff := pageSize, backoffInitial
	pageSize, backoffInitial = page, 10*time.Millisecond
	t.Cleanup(func() { pageSize, backoffInitial = oldPage, oldBackoff })
}

type envelope = exporttest.Envelope

// rig is the real path an export takes (exporttest.Rig): the exporter and
// its integration actors, a Pebble queue on disk whose sink collects
// records; the git mirrors live in its cache folder.
type rig struct {
	*exporttest.Rig
	t    *testing.T
	seen int
	n    int
}

const testID = "int_bb"

func newRig(t *testing.T) *rig {
	t.Helper()
	r := &rig{t: t}
	dir := t.TempDir()
	cache := filepath.Join(dir, "cache")
	r.Rig = exporttest.New(t, exporttest.Options{Dir: dir, Timestamp: true,
		Export: actors.ExportOptions{CacheDir: func(string) string { return cache }},
		AfterStop: func() {
			for _, line := range strings.Split(r.Logs(), "\n") {
				for _, s := range secrets() {
					if strings.Contains(line, s) {
						t.Errorf("a log line holds a credential: %s", line)
					}
				}
			}
			if t.Failed() {
				t.Logf("logs:\n%s", r.Logs())
			}
		}})
	return r
}

func secrets() []string {
	return []string{fakeToken, base64.StdEncoding.EncodeToString([]byte("x-token-auth:" + fakeToken))}
}

func (r *rig) export(cfg string) (actors.IntegrationResult, []envelope) {
	r.t.Helper()
	c, err := integrations.DecodeConfig(Type, []byte(cfg))
	if err != nil {
		r.t.Fatal(err)
	}
	r.n++
	res := r.Run(r.t, actors.ExportSpec{ID: fmt.Sprintf("export-%d", r.n),
		Integrations: []actors.IntegrationSpec{{ID: testID, Type: Type, Config: c}}})
	ir := res.Integrations[0]
	for _, s := range secrets() {
		if strings.Contains(ir.Error, s) || strings.Contains(fmt.Sprint(ir.EntityErrors), s) {
			r.t.Errorf("a result holds a credential: %+v", ir)
		}
	}
	var sent int
	for _, n := range ir.Records {
		sent += int(n)
	}
	r.WaitDelivered(r.t, r.seen+sent)
	r.seen += sent
	envs := r.Records()
	for _, e := range envs {
		for _, s := range secrets() {
			if strings.Contains(string(e.Data), s) {
				r.t.Errorf("record %s holds a credential", e.ID)
			}
		}
	}
	return ir, envs
}

// byModel groups records by model, then by id, counting repeats.
func byModel(envs []envelope) map[string]map[string]int {
	out := map[string]map[string]int{}
	for _, e := range envs {
		if out[e.Model] == nil {
			out[e.Model] = map[string]int{}
		}
		out[e.Model][e.ID]++
	}
	return out
}

func succeeded(t *testing.T, res actors.IntegrationResult) {
	t.Helper()
	if res.Status != actors.StatusSucceeded || len(res.EntityErrors) > 0 {
		t.Fatalf("export: %+v", res)
	}
}

// prIDs are the record ids of pull requests of repo r, by number.
func (f *fake) prID(r *fRepo, n int64) string {
	host := strings.TrimPrefix(f.srv.URL, "http://")
	key := fmt.Sprint(r.id)
	if f.flavour == Cloud {
		key = fmt.Sprintf("{10000000-0000-4000-8000-%012d}", r.id)
	}
	return fmt.Sprintf("bitbucket:%s:pull_request:%s:%d", host, key, n)
}

func flavours(t *testing.T, fn func(t *testing.T, flavour string)) {
	for _, fl := range []string{Cloud, DataCenter} {
		t.Run(fl, func(t *testing.T) { fn(t, fl) })
	}
}

// TestExportThenIncremental: the first export sends the projects, repos,
// every pull request across pages with its reviews and comments, and the
// commits; the next sends exactly what changed.
func TestExportThenIncremental(t *testing.T) {
	flavours(t, func(t *testing.T, fl string) {
		shrink(t, 2)
		f := newFake(t, fl)
		owner := "acme"
		if fl == DataCenter {
			owner = "ACME"
		}
		f.addOwner(owner)
		api := f.addRepo(owner, "api", 3)
		web := f.addRepo(owner, "web", 1)
		for i := range 5 {
			f.addPull(api, fmt.Sprintf("change %d", i), t0.Add(time.Duration(i)*time.Minute))
		}
		f.addPull(web, "web change", t0)
		r := newRig(t)
		cfg := f.config(fmt.Sprintf("%q: [%q]", f.ownersKey(), owner))
		res, envs := r.export(cfg)
		succeeded(t, res)
		got := byModel(envs)
		wantProjects := 2
		if fl == DataCenter {
			wantProjects = 1
		}
		if len(got[ModelProject]) != wantProjects || len(got[ModelRepo]) != 2 || len(got[ModelPullRequest]) != 6 {
			t.Fatalf("first export: projects %v repos %v pulls %v", got[ModelProject], got[ModelRepo], got[ModelPullRequest])
		}
		for id, n := range got[ModelPullRequest] {
			if n != 1 {
				t.Errorf("%s sent %d times", id, n)
			}
		}
		// Each pull request: one approval; a comment, its reply and an
		// inline comment.
		if len(got[ModelPullRequestReview]) != 6 || len(got[ModelPullRequestComment]) != 18 {
			t.Fatalf("reviews %d comments %d", len(got[ModelPullRequestReview]), len(got[ModelPullRequestComment]))
		}
		if len(got["commit"]) != 4 || len(got["branch"]) != 2 {
			t.Fatalf("commits %v branches %v", got["commit"], got["branch"])
		}
		var inline, reply Comment
		for _, e := range envs {
			if e.Model != ModelPullRequestComment {
				continue
			}
			c := decode[Comment](t, e)
			if c.Path != "" {
				inline = c
			}
			if c.ParentID != 0 {
				reply = c
			}
		}
		if inline.Path != "f.txt" || inline.Line != 2 || inline.Author.Login != "bob" || reply.Body != "thanks" || reply.Author.Login != "alice" {
			t.Fatalf("inline %+v reply %+v", inline, reply)
		}
		var pr PullRequest
		for _, e := range envs {
			if e.ID == f.prID(api, 3) {
				pr = decode[PullRequest](t, e)
			}
		}
		if pr.Title != "change 2" || pr.Author.Login != "alice" || pr.Base != "main" || pr.Head != "feature-3" ||
			!pr.UpdatedAt.Equal(t0.Add(2*time.Minute)) || len(pr.Reviewers) != 1 || pr.Reviewers[0] != "bob" {
			t.Fatalf("pull request 3: %+v", pr)
		}

		// A request for changes updates pull request 2; a new commit.
		f.review(api.pulls[1], "changes", f.now.Add(-time.Hour))
		f.commit(api, 1)
		f.set(func() { f.now = f.now.Add(time.Minute) })
		res, envs = r.export(cfg)
		succeeded(t, res)
		got = byModel(envs)
		if len(got[ModelPullRequest]) != 1 || got[ModelPullRequest][f.prID(api, 2)] != 1 {
			t.Fatalf("second export pulls: %v", got[ModelPullRequest])
		}
		if len(got[ModelRepo]) != 0 || len(got[ModelProject]) != 0 || len(got["commit"]) != 1 || len(got["branch"]) != 1 {
			t.Fatalf("second export: %v", got)
		}
		var changes int
		for _, e := range envs {
			if e.Model == ModelPullRequestReview && decode[Review](t, e).State == "CHANGES_REQUESTED" {
				changes++
			}
		}
		if changes != 1 {
			t.Fatalf("the request for changes was not sent: %v", got[ModelPullRequestReview])
		}

		// Nothing changed: nothing is sent.
		f.set(func() { f.now = f.now.Add(time.Minute) })
		res, envs = r.export(cfg)
		succeeded(t, res)
		if len(envs) != 0 {
			t.Fatalf("third export sent %v", byModel(envs))
		}
	})
}

// TestUpdatedWhilePaging: a pull request updated while its list is read
// moves to the front; the ones behind it shift and one is seen twice (sent
// once), and the updated one comes with the next export: none is lost.
func TestUpdatedWhilePaging(t *testing.T) {
	flavours(t, func(t *testing.T, fl string) {
		shrink(t, 2)
		f := newFake(t, fl)
		owner := "acme"
		if fl == DataCenter {
			owner = "ACME"
		}
		f.addOwner(owner)
		api := f.addRepo(owner, "api", 1)
		for i := range 6 {
			f.addPull(api, fmt.Sprintf("change %d", i), t0.Add(time.Duration(i)*time.Minute))
		}
		oldest := api.pulls[0]
		f.set(func() {
			f.onPage = func(path string, page int) {
				if page == 1 && (strings.HasSuffix(path, "/pullrequests") || strings.HasSuffix(path, "/pull-requests")) {
					// Called with f.mu held by the handler.
					oldest.updated = f.now
					f.onPage = nil
				}
			}
		})
		r := newRig(t)
		cfg := f.config(fmt.Sprintf("%q: [%q]", f.ownersKey(), owner))
		res, envs := r.export(cfg)
		succeeded(t, res)
		got := byModel(envs)[ModelPullRequest]
		for n := int64(2); n <= 6; n++ {
			if got[f.prID(api, n)] != 1 {
				t.Fatalf("pull request %d sent %d times: %v", n, got[f.prID(api, n)], got)
			}
		}
		if got[f.prID(api, 1)] != 0 {
			t.Fatalf("the pull request updated within the horizon was sent: %v", got)
		}
		f.set(func() { f.now = f.now.Add(time.Minute) })
		res, envs = r.export(cfg)
		succeeded(t, res)
		got = byModel(envs)[ModelPullRequest]
		if len(got) != 1 || got[f.prID(api, 1)] != 1 {
			t.Fatalf("second export: %v", got)
		}
	})
}

// TestRateLimitRetryAfter: a 429 with Retry-After is waited out and the
// export completes; the wait shows in the log.
func TestRateLimitRetryAfter(t *testing.T) {
	flavours(t, func(t *testing.T, fl string) {
		shrink(t, 2)
		f := newFake(t, fl)
		f.addOwner("W")
		api := f.addRepo("W", "api", 1)
		for i := range 3 {
			f.addPull(api, fmt.Sprintf("change %d", i), t0.Add(time.Duration(i)*time.Minute))
		}
		f.set(func() {
			f.faults = append(f.faults, &fakeFault{path: "/activit", status: 429, times: 2, retryAfter: "1"})
		})
		r := newRig(t)
		res, envs := r.export(f.config(fmt.Sprintf("%q: [\"W\"]", f.ownersKey())))
		succeeded(t, res)
		if n := len(byModel(envs)[ModelPullRequest]); n != 3 {
			t.Fatalf("pulls: %d", n)
		}
		if !strings.Contains(r.Logs(), "rate limited") {
			t.Fatal("the rate-limit wait is not in the log")
		}
	})
}

// TestExpiredToken: a 401 fails the integration, naming the token, and
// sends nothing.
func TestExpiredToken(t *testing.T) {
	flavours(t, func(t *testing.T, fl string) {
		f := newFake(t, fl)
		f.addOwner("W")
		f.addRepo("W", "api", 1)
		f.set(func() { f.expired = true })
		r := newRig(t)
		res, envs := r.export(f.config(fmt.Sprintf("%q: [\"W\"]", f.ownersKey())))
		if res.Status != actors.StatusFailed || !strings.Contains(res.Error, "credentials were rejected") || !strings.Contains(res.Error, "token") {
			t.Fatalf("%+v", res)
		}
		if len(envs) != 0 {
			t.Fatalf("sent %v", byModel(envs))
		}
	})
}

// TestFailingRepoAmongGood: a repo whose pull requests keep failing (500
// after retries) and a workspace or project that does not exist are
// entity errors; the rest is exported.
func TestFailingRepoAmongGood(t *testing.T) {
	flavours(t, func(t *testing.T, fl string) {
		shrink(t, 2)
		f := newFake(t, fl)
		f.addOwner("W")
		good := f.addRepo("W", "good", 2)
		f.addPull(good, "fine", t0)
		bad := f.addRepo("W", "bad", 1)
		f.addPull(bad, "broken", t0)
		f.set(func() { f.faults = append(f.faults, &fakeFault{path: "/bad/pull", status: 500, times: -1}) })
		r := newRig(t)
		res, envs := r.export(f.config(fmt.Sprintf("%q: [\"W\", \"GHOST\"]", f.ownersKey())))
		if res.Status != actors.StatusSucceeded || len(res.EntityErrors) != 2 {
			t.Fatalf("%+v", res)
		}
		errs := fmt.Sprint(res.EntityErrors)
		if !strings.Contains(errs, "HTTP 500") || !strings.Contains(errs, "HTTP 404") {
			t.Fatalf("entity errors: %s", errs)
		}
		got := byModel(envs)
		if got[ModelPullRequest][f.prID(good, 1)] != 1 || len(got["commit"]) != 2 || got[ModelPullRequest][f.prID(bad, 1)] != 0 {
			t.Fatalf("records: %v", got)
		}
		// Once the repo answers again, it is exported.
		f.set(func() { f.faults = nil; f.now = f.now.Add(time.Minute) })
		res, envs = r.export(f.config(fmt.Sprintf("%q: [\"W\"]", f.ownersKey())))
		succeeded(t, res)
		got = byModel(envs)
		if got[ModelPullRequest][f.prID(bad, 1)] != 1 || len(got["commit"]) != 1 {
			t.Fatalf("after the repair: %v", got)
		}
	})
}

// TestSecondPageLinkElsewhereIsRefused: a "next" link to another host
// would take the credentials there; it fails the listing instead.
func TestSecondPageLinkElsewhereIsRefused(t *testing.T) {
	b, err := New(integrations.Options{ID: "x"}, &Config{Flavour: Cloud, URL: "http://127.0.0.1:1", Token: "t", Workspaces: []string{"w"}})
	if err != nil {
		t.Fatal(err)
	}
	c := &client{b: b}
	var out struct{}
	_, err = c.get(t.Context(), "page", "http://127.0.0.2:1/2.0/x?page=2", nil, &out)
	if err == nil || !strings.Contains(err.Error(), "not at url") {
		t.Fatalf("err = %v", err)
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
