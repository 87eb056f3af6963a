package gitea

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"

	sdk "code.gitea.io/sdk/gitea"

	"courier/actors"
	"courier/integrations"
	"courier/integrations/forge"
	"courier/integrations/git"
)

// world is what TestExportAgainstRealGitea creates.
type world struct {
	org, bobName  string
	admin, bob    *sdk.User
	api, web, nts *sdk.Repository
	pr1, pr2, pr3 *sdk.PullRequest
	rv1, rv2, rv3 *sdk.PullReview
	issA, issB    *sdk.Issue
	issC, issD    *sdk.Issue
	cmA, cmPR     *sdk.Comment
	tag           *sdk.Tag
}

func build(t *testing.T, f *fx) *world {
	w := &world{org: uniq(t, "acme"), bobName: uniq(t, "bob")}
	me, resp, err := f.admin.GetMyUserInfo()
	f.must("me", resp, err)
	w.admin = me
	w.bob = f.user(w.bobName, "Bob Builder")
	f.org(w.org, w.bobName)
	w.api = f.repo(w.org, "api", true)
	w.web = f.repo(w.org, "web", true)
	w.nts = f.repo(w.bobName, "notes", false)
	bug := f.label(w.api, "bug")

	f.branch(w.api, "feature", "feature.txt")
	f.branch(w.api, "fix", "fix.txt")
	f.branch(w.api, "docs", "docs.txt")
	w.pr1 = f.pull("", w.api, "feature", "Add the feature", []string{w.bobName}, bug.ID)
	w.pr2 = f.pull(w.bobName, w.api, "fix", "Fix it", nil)
	w.pr3 = f.pull(w.bobName, w.api, "docs", "Write docs", nil)
	w.rv1 = f.review(w.bobName, w.api, w.pr1.Index, sdk.ReviewStateRequestChanges, "please change",
		sdk.CreatePullReviewComment{Path: "feature.txt", Body: "line two is wrong", NewLineNum: 2})
	w.rv2 = f.review(w.bobName, w.api, w.pr1.Index, sdk.ReviewStateApproved, "lgtm")
	w.rv3 = f.review("", w.api, w.pr2.Index, sdk.ReviewStateComment, "a thought",
		sdk.CreatePullReviewComment{Path: "fix.txt", Body: "why three?", NewLineNum: 3})
	f.merge(w.api, w.pr2.Index)
	w.tag = f.tag(w.api, "v1.0", "main")
	// The merge went through Gitea's push queue: wait for it (and so for
	// the branches' pushes before it), or it could change the repo during
	// an export.
	f.pushed(w.api, "refs/heads/main", w.tag.Commit.SHA)

	// Two issues back to back: often in the same second.
	w.issA = f.issue("", w.api, "Crash on start", []string{w.bobName}, bug.ID)
	w.issB = f.issue(w.bobName, w.api, "Typo in README", nil)
	closed := sdk.StateClosed
	_, resp, err = f.admin.EditIssue(w.org, "api", w.issB.Index, sdk.EditIssueOption{State: &closed})
	f.must("close issue", resp, err)
	w.issC = f.issue("", w.web, "Web is slow", nil)
	w.issD = f.issue(w.bobName, w.nts, "Write more notes", nil)
	w.cmA = f.comment(w.bobName, w.api, w.issA.Index, "I can reproduce it")
	w.cmPR = f.comment("", w.api, w.pr1.Index, "conversation on the pull request")
	return w
}

func TestExportAgainstRealGitea(t *testing.T) {
	// Two per page: every list (repos, members, pull requests, reviews,
	// issues, comments) takes several pages, and checkpoints come often.
	defer func(n int) { pageSize = n }(pageSize)
	pageSize = 2
	f := newFx(t)
	w := build(t, f)
	r := newRig(t)
	cfg := map[string]any{"url": f.url, "token": f.token, "organizations": []string{w.org}, "users": []string{w.bobName}}
	s := spec(t, "int_gitea", cfg)
	f.quiesce(w.api, w.web, w.nts)

	// First export: everything, with the right fields.
	res, recs := r.export(t, s)
	if res.Status != actors.StatusSucceeded || len(res.EntityErrors) != 0 {
		t.Fatalf("first export: %+v", res)
	}
	got := index(t, recs)
	api, web, nts := f.getRepo(w.api), f.getRepo(w.web), f.getRepo(w.nts)
	pr1, pr2 := f.getPull(w.api, w.pr1.Index), f.getPull(w.api, w.pr2.Index)
	issA, issB := f.getIssue(w.api, w.issA.Index), f.getIssue(w.api, w.issB.Index)
	want := map[string]bool{}
	for _, id := range []string{
		f.rid("repo", api.ID), f.rid("repo", web.ID), f.rid("repo", nts.ID),
		f.rid("user", w.admin.ID), f.rid("user", w.bob.ID),
		f.rid("pull_request", pr1.ID), f.rid("pull_request", pr2.ID), f.rid("pull_request", w.pr3.ID),
		f.rid("pull_request_review", w.rv1.ID), f.rid("pull_request_review", w.rv2.ID), f.rid("pull_request_review", w.rv3.ID),
		f.rid("issue", w.issA.ID), f.rid("issue", w.issB.ID), f.rid("issue", w.issC.ID), f.rid("issue", w.issD.ID),
		f.rid("issue_comment", w.cmA.ID), f.rid("issue_comment", w.cmPR.ID),
	} {
		want[id] = true
	}
	// Review comments: their ids come from the server.
	rc1 := reviewComments(t, f, w.api, w.pr1.Index, w.rv1.ID)
	rc3 := reviewComments(t, f, w.api, w.pr2.Index, w.rv3.ID)
	if len(rc1) != 1 || len(rc3) != 1 {
		t.Fatalf("review comments on the server: %d and %d", len(rc1), len(rc3))
	}
	want[f.rid("pull_request_comment", rc1[0].ID)] = true
	want[f.rid("pull_request_comment", rc3[0].ID)] = true
	// Commits, branches and tags: every commit of every branch, as the API
	// lists them.
	apiCommits := f.commits(w.api)
	apiBranches := f.branches(w.api)
	webBranches := f.branches(w.web)
	for _, rp := range []*sdk.Repository{w.api, w.web, w.nts} {
		for sha := range f.commits(rp) {
			want[gid(rp, sha)] = true
		}
		for b := range f.branches(rp) {
			want[gid(rp, "branch:"+b)] = true
		}
	}
	want[gid(w.api, "tag:v1.0")] = true
	sameIDs(t, "first export", got, want)
	// The initial commit, one per branch, the merge of fix.
	if len(apiCommits) != 5 || len(apiBranches) != 4 {
		t.Errorf("api on the server: %d commits, branches %v", len(apiCommits), apiBranches)
	}
	allRecs := recs
	if n := len(got[f.rid("user", w.bob.ID)]); n != 2 {
		t.Errorf("bob: sent %d times, want under org:%s and user:%s", n, w.org, w.bobName)
	}

	// Sessions: root, owner, repo, model.
	one := func(id string) envelope {
		t.Helper()
		if len(got[id]) == 0 {
			t.Fatalf("no record %s", id)
		}
		return got[id][0]
	}
	if s := one(f.rid("issue", w.issC.ID)).Session; !slices.Equal(s, []string{"int_gitea", "org:" + w.org, "repo:" + w.org + "/web", "issue"}) {
		t.Errorf("issue C session %v", s)
	}
	if s := one(f.rid("repo", nts.ID)).Session; !slices.Equal(s, []string{"int_gitea", "user:" + w.bobName, "repo:" + w.bobName + "/notes", "repo"}) {
		t.Errorf("notes repo session %v", s)
	}

	// Fields.
	repo := decode[forge.Repo](t, one(f.rid("repo", api.ID)))
	if repo != repoRecord(api) || repo.FullName != w.org+"/api" || repo.Owner != w.org || repo.Name != "api" ||
		repo.Description != "the api repo" || repo.DefaultBranch != "main" || repo.Private || repo.Fork || repo.Archived ||
		!strings.HasSuffix(repo.CloneURL, "/"+w.org+"/api.git") || !strings.HasSuffix(repo.HTMLURL, "/"+w.org+"/api") ||
		repo.CreatedAt.IsZero() || repo.UpdatedAt.IsZero() || repo.ID != api.ID {
		t.Errorf("repo record %+v", repo)
	}
	for _, e := range got[f.rid("user", w.bob.ID)] {
		u := decode[forge.User](t, e)
		if u != (forge.User{ID: w.bob.ID, Login: w.bobName, Name: "Bob Builder", Email: w.bobName + "@example.org", Type: "User"}) {
			t.Errorf("bob record %+v", u)
		}
	}
	p1 := decode[forge.PullRequest](t, one(f.rid("pull_request", pr1.ID)))
	if p1.ID != pr1.ID || p1.Number != int(pr1.Index) || p1.Repo != w.org+"/api" || p1.Title != "Add the feature" ||
		p1.Body != "body of Add the feature" || p1.State != "open" || p1.Draft || p1.Merged || p1.MergedAt != nil || p1.ClosedAt != nil ||
		!p1.CreatedAt.Equal(*pr1.Created) || !p1.UpdatedAt.Equal(*pr1.Updated) || p1.Author.Login != w.admin.UserName ||
		p1.Author.ID != w.admin.ID || p1.Head != "feature" || p1.HeadSHA != pr1.Head.Sha || len(p1.HeadSHA) != 40 || p1.Base != "main" ||
		!slices.Equal(p1.Labels, []string{"bug"}) || !slices.Equal(p1.Assignees, []string{w.bobName}) || p1.HTMLURL != pr1.HTMLURL {
		t.Errorf("pull request 1 record %+v", p1)
	}
	p2 := decode[forge.PullRequest](t, one(f.rid("pull_request", pr2.ID)))
	if p2.State != "closed" || !p2.Merged || p2.MergedAt == nil || p2.ClosedAt == nil || p2.MergeSHA == "" ||
		p2.MergeSHA != *pr2.MergedCommitID || p2.Author.Login != w.bobName || p2.Head != "fix" || len(p2.Labels) != 0 {
		t.Errorf("pull request 2 record %+v", p2)
	}
	for _, c := range []struct {
		rv     *sdk.PullReview
		number int64
		state  string
		body   string
		author string
	}{
		{w.rv1, w.pr1.Index, "CHANGES_REQUESTED", "please change", w.bobName},
		{w.rv2, w.pr1.Index, "APPROVED", "lgtm", w.bobName},
		{w.rv3, w.pr2.Index, "COMMENTED", "a thought", w.admin.UserName},
	} {
		rv := decode[forge.Review](t, one(f.rid("pull_request_review", c.rv.ID)))
		if rv.ID != c.rv.ID || rv.Repo != w.org+"/api" || rv.PullRequest != int(c.number) || rv.State != c.state ||
			rv.Body != c.body || rv.Author.Login != c.author || len(rv.CommitID) != 40 || rv.SubmittedAt.IsZero() {
			t.Errorf("review record %+v, want state %s body %q by %s", rv, c.state, c.body, c.author)
		}
	}
	rc := decode[forge.ReviewComment](t, one(f.rid("pull_request_comment", rc1[0].ID)))
	if rc.ID != rc1[0].ID || rc.Repo != w.org+"/api" || rc.PullRequest != int(w.pr1.Index) || rc.ReviewID != w.rv1.ID ||
		rc.Author.Login != w.bobName || rc.Body != "line two is wrong" || rc.Path != "feature.txt" || rc.Line != 2 ||
		len(rc.CommitID) != 40 || rc.CreatedAt.IsZero() || rc.UpdatedAt.IsZero() {
		t.Errorf("review comment record %+v", rc)
	}
	if rc := decode[forge.ReviewComment](t, one(f.rid("pull_request_comment", rc3[0].ID))); rc.Line != 3 || rc.Path != "fix.txt" ||
		rc.PullRequest != int(w.pr2.Index) || rc.ReviewID != w.rv3.ID || rc.Author.Login != w.admin.UserName {
		t.Errorf("review comment 3 record %+v", rc)
	}
	ia := decode[forge.Issue](t, one(f.rid("issue", w.issA.ID)))
	if ia.ID != issA.ID || ia.Number != int(issA.Index) || ia.Repo != w.org+"/api" || ia.Title != "Crash on start" ||
		ia.Body != "body of Crash on start" || ia.State != "open" || ia.Author.Login != w.admin.UserName ||
		!slices.Equal(ia.Labels, []string{"bug"}) || !slices.Equal(ia.Assignees, []string{w.bobName}) || ia.Comments != 1 ||
		ia.ClosedAt != nil || !ia.CreatedAt.Equal(issA.Created) || !ia.UpdatedAt.Equal(issA.Updated) || ia.HTMLURL != issA.HTMLURL {
		t.Errorf("issue A record %+v", ia)
	}
	ib := decode[forge.Issue](t, one(f.rid("issue", w.issB.ID)))
	if ib.State != "closed" || ib.ClosedAt == nil || !ib.ClosedAt.Equal(*issB.Closed) || ib.Author.Login != w.bobName || len(ib.Labels) != 0 || len(ib.Assignees) != 0 {
		t.Errorf("issue B record %+v", ib)
	}
	ca := decode[forge.IssueComment](t, one(f.rid("issue_comment", w.cmA.ID)))
	if ca.ID != w.cmA.ID || ca.Repo != w.org+"/api" || ca.Issue != int(w.issA.Index) || ca.Author.Login != w.bobName ||
		ca.Body != "I can reproduce it" || !ca.CreatedAt.Equal(w.cmA.Created) || !ca.UpdatedAt.Equal(w.cmA.Updated) {
		t.Errorf("issue comment record %+v", ca)
	}
	if cp := decode[forge.IssueComment](t, one(f.rid("issue_comment", w.cmPR.ID))); cp.Issue != int(w.pr1.Index) || cp.Author.Login != w.admin.UserName {
		t.Errorf("pull request conversation comment record %+v", cp)
	}
	// A known commit (feature's), the merge, a branch and the tag, with
	// the git integration's fields, under the repo's session.
	fsha := apiBranches["feature"]
	fc := apiCommits[fsha]
	if fc == nil || len(fc.Parents) != 1 {
		t.Fatalf("feature's commit %s on the server: %+v", fsha, fc)
	}
	if s := one(gid(w.api, fsha)).Session; !slices.Equal(s, []string{"int_gitea", "org:" + w.org, "repo:" + w.org + "/api", "commit"}) {
		t.Errorf("commit session %v", s)
	}
	cm := decode[git.Commit](t, one(gid(w.api, fsha)))
	if cm.SHA != fsha || !slices.Equal(cm.Parents, []string{fc.Parents[0].SHA}) || cm.Repo != w.org+"/api" ||
		strings.TrimSpace(cm.Message) != "add feature.txt" || strings.TrimSpace(fc.RepoCommit.Message) != "add feature.txt" ||
		cm.Author.Name != fc.RepoCommit.Author.Name || cm.Author.Email != fc.RepoCommit.Author.Email || cm.Committer.Date == "" ||
		!slices.Equal(cm.Files, []git.File{{Path: "feature.txt", Additions: 3}}) {
		t.Errorf("feature's commit record %+v", cm)
	}
	if mc := decode[git.Commit](t, one(gid(w.api, *pr2.MergedCommitID))); len(mc.Parents) != 2 || mc.Parents[1] != apiBranches["fix"] {
		t.Errorf("merge commit record %+v", mc)
	}
	if b := decode[git.Branch](t, one(gid(w.api, "branch:feature"))); b != (git.Branch{Name: "feature", HeadSHA: fsha, Repo: w.org + "/api"}) {
		t.Errorf("branch record %+v", b)
	}
	if tg := decode[git.Tag](t, one(gid(w.api, "tag:v1.0"))); tg != (git.Tag{Name: "v1.0", SHA: apiBranches["main"], Repo: w.org + "/api", Annotated: true}) ||
		tg.SHA != *pr2.MergedCommitID || w.tag.Commit == nil || w.tag.Commit.SHA != tg.SHA {
		t.Errorf("tag record %+v (main at %s)", tg, apiBranches["main"])
	}

	if w.issA.Created.Unix() == w.issB.Created.Unix() {
		t.Logf("issues A and B were created in the same second (%s): both exported", w.issA.Created)
	}

	// Changes: a new issue, an edited pull request title, a new comment, a
	// new review (with a comment) on a pull request that had none.
	issE := f.issue("", w.web, "New web issue", nil)
	rv4 := f.review("", w.api, w.pr3.Index, sdk.ReviewStateComment, "first look",
		sdk.CreatePullReviewComment{Path: "docs.txt", Body: "say more", NewLineNum: 1})
	_, resp, err := f.admin.EditPullRequest(w.org, "api", w.pr1.Index, sdk.EditPullRequestOption{Title: "Add the feature, v2"})
	f.must("edit pull", resp, err)
	cmNew := f.comment("", w.api, w.issA.Index, "fixed in main")
	// A commit on web's main, through the contents API.
	newC := f.file(w.web, "main", "news.txt")
	f.pushed(w.web, "refs/heads/main", newC.SHA)
	f.quiesce(w.api, w.web, w.nts)

	res, recs = r.export(t, s)
	if res.Status != actors.StatusSucceeded || len(res.EntityErrors) != 0 || !res.Incremental {
		t.Fatalf("second export: %+v", res)
	}
	got2 := index(t, recs)
	want2 := map[string]bool{
		f.rid("issue", issE.ID): true, f.rid("issue_comment", cmNew.ID): true,
		f.rid("pull_request", pr1.ID): true,
		// Reviews and their comments go again with their pull request.
		f.rid("pull_request_review", w.rv1.ID): true, f.rid("pull_request_review", w.rv2.ID): true,
		f.rid("pull_request_comment", rc1[0].ID): true,
		// A new review updates its pull request: both go.
		f.rid("pull_request", w.pr3.ID): true, f.rid("pull_request_review", rv4.ID): true,
	}
	rc4 := reviewComments(t, f, w.api, w.pr3.Index, rv4.ID)
	if len(rc4) != 1 {
		t.Fatalf("review comments of the new review: %d", len(rc4))
	}
	want2[f.rid("pull_request_comment", rc4[0].ID)] = true
	// Exactly the new commit, and the branch it moved.
	want2[gid(w.web, newC.SHA)] = true
	want2[gid(w.web, "branch:main")] = true
	// A comment updates its issue; a repo record goes again only if it
	// changed on the server.
	if issA2 := f.getIssue(w.api, w.issA.Index); !issA2.Updated.Equal(issA.Updated) {
		want2[f.rid("issue", w.issA.ID)] = true
		if ia := decode[forge.Issue](t, got2[f.rid("issue", w.issA.ID)][0]); ia.Comments != 2 || !ia.UpdatedAt.Equal(issA2.Updated) {
			t.Errorf("updated issue A %+v", ia)
		}
	}
	for _, pair := range [][2]*sdk.Repository{{api, f.getRepo(w.api)}, {web, f.getRepo(w.web)}, {nts, f.getRepo(w.nts)}} {
		if repoRecord(pair[0]) != repoRecord(pair[1]) {
			want2[f.rid("repo", pair[0].ID)] = true
		}
	}
	sameIDs(t, "second export", got2, want2)
	if p := decode[forge.PullRequest](t, got2[f.rid("pull_request", pr1.ID)][0]); p.Title != "Add the feature, v2" || !p.UpdatedAt.After(pr1.Updated.Add(-1)) {
		t.Errorf("edited pull request %+v", p)
	}
	if rc := decode[forge.ReviewComment](t, got2[f.rid("pull_request_comment", rc4[0].ID)][0]); rc.Body != "say more" || rc.ReviewID != rv4.ID || rc.PullRequest != int(w.pr3.Index) {
		t.Errorf("new review comment %+v", rc)
	}
	if i := decode[forge.Issue](t, got2[f.rid("issue", issE.ID)][0]); i.Title != "New web issue" || i.Repo != w.org+"/web" {
		t.Errorf("new issue %+v", i)
	}
	if c := decode[forge.IssueComment](t, got2[f.rid("issue_comment", cmNew.ID)][0]); c.Body != "fixed in main" || c.Issue != int(w.issA.Index) {
		t.Errorf("new comment %+v", c)
	}
	if len(got2[gid(w.web, newC.SHA)]) == 1 {
		if c := decode[git.Commit](t, got2[gid(w.web, newC.SHA)][0]); c.SHA != newC.SHA || !slices.Equal(c.Parents, []string{webBranches["main"]}) ||
			!slices.Equal(c.Files, []git.File{{Path: "news.txt", Additions: 3}}) || c.Repo != w.org+"/web" {
			t.Errorf("new commit %+v", c)
		}
	}
	if len(got2[gid(w.web, "branch:main")]) == 1 {
		if b := decode[git.Branch](t, got2[gid(w.web, "branch:main")][0]); b.HeadSHA != newC.SHA {
			t.Errorf("moved branch %+v", b)
		}
	}
	allRecs = append(allRecs, recs...)

	// Nothing changed: nothing sent.
	res, recs = r.export(t, s)
	if res.Status != actors.StatusSucceeded || len(recs) != 0 {
		t.Fatalf("third export sent %d records: %+v", len(recs), res)
	}
	noSecret(t, r, f.token, allRecs)
}

func reviewComments(t *testing.T, f *fx, r *sdk.Repository, number, review int64) []*sdk.PullReviewComment {
	t.Helper()
	cs, resp, err := f.admin.ListPullReviewComments(r.Owner.UserName, r.Name, number, review)
	f.must("review comments", resp, err)
	return cs
}

func sameIDs(t *testing.T, what string, got map[string][]envelope, want map[string]bool) {
	t.Helper()
	var missing, extra []string
	for id := range want {
		if len(got[id]) == 0 {
			missing = append(missing, id)
		}
	}
	for id, es := range got {
		if !want[id] {
			extra = append(extra, fmt.Sprintf("%s (%s)", id, es[0].Data))
		}
	}
	if len(missing)+len(extra) > 0 {
		slices.Sort(missing)
		slices.Sort(extra)
		t.Errorf("%s: missing %v\nunexpected %v\ngot %v", what, missing, extra, slices.Sorted(maps.Keys(got)))
	}
}

// A repo named in repos that does not exist is an entity error; the
// others export, each under its owner's session.
func TestMissingRepoIsAnEntityError(t *testing.T) {
	f := newFx(t)
	org, dave := uniq(t, "solo"), uniq(t, "dave")
	f.user(dave, "Dave")
	f.org(org)
	api := f.repo(org, "api", true)
	notes := f.repo(dave, "notes", false)
	iss := f.issue("", api, "only issue", nil)
	f.quiesce(api, notes)

	r := newRig(t)
	res, recs := r.export(t, spec(t, "int_solo", map[string]any{
		"url": f.url, "token": f.token, "repos": []string{org + "/api", org + "/missing", dave + "/notes"},
	}))
	if res.Status != actors.StatusSucceeded {
		t.Fatalf("export: %+v", res)
	}
	if len(res.EntityErrors) != 1 {
		t.Fatalf("entity errors: %+v", res.EntityErrors)
	}
	ee := res.EntityErrors[0]
	if !slices.Equal(ee.Path, []string{"int_solo", "org:" + org, "repo:" + org + "/missing"}) || !strings.Contains(ee.Error, "HTTP 404") {
		t.Errorf("entity error %+v", ee)
	}
	got := index(t, recs)
	want := map[string]bool{f.rid("repo", api.ID): true, f.rid("repo", notes.ID): true, f.rid("issue", iss.ID): true}
	for _, rp := range []*sdk.Repository{api, notes} {
		main := f.branches(rp)["main"]
		want[gid(rp, main)], want[gid(rp, "branch:main")] = true, true
	}
	sameIDs(t, "export", got, want)
	if s := got[f.rid("repo", notes.ID)][0].Session; !slices.Equal(s, []string{"int_solo", "user:" + dave, "repo:" + dave + "/notes", "repo"}) {
		t.Errorf("notes session %v", s)
	}
}

// A token the server rejects fails the integration with a clear error,
// and the token is in no log line and no error.
func TestBadTokenFailsClearlyWithoutLeakingIt(t *testing.T) {
	f := newFx(t)
	b := make([]byte, 20)
	_, _ = rand.Read(b)
	bad := hex.EncodeToString(b)
	r := newRig(t)
	res, recs := r.export(t, spec(t, "int_bad", map[string]any{"url": f.url, "token": bad, "organizations": []string{"whatever"}}))
	if res.Status != actors.StatusFailed || !strings.Contains(res.Error, "token was rejected (HTTP 401)") || len(recs) != 0 {
		t.Fatalf("export with a bad token: %+v, %d records", res, len(recs))
	}
	if strings.Contains(res.Error, bad) {
		t.Fatalf("the error holds the token: %s", res.Error)
	}
	logs := r.logs.String()
	if logs == "" || strings.Contains(logs, bad) {
		t.Fatalf("the token is in the logs (or nothing was logged):\n%s", logs)
	}
	if !strings.Contains(logs, "401") {
		t.Errorf("the logs do not tell of the rejection:\n%s", logs)
	}

	// Validate says what is wrong, without the token either.
	g := newGitea(t, &Config{URL: f.url, Token: integrations.Secret(bad), Organizations: []string{"whatever"}}, nil)
	v := g.Validate(t.Context())
	if v.Valid || len(v.Errors) != 1 || !strings.HasPrefix(v.Errors[0], "token: rejected by "+f.url+" (HTTP 401)") {
		t.Fatalf("validation with a bad token: %+v", v)
	}
	if strings.Contains(fmt.Sprint(v), bad) {
		t.Fatalf("validation shows the token: %+v", v)
	}
}
