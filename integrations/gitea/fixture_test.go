package gitea

import (
	"encoding/base64"
	"fmt"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	sdk "code.gitea.io/sdk/gitea"
)

// fx creates objects on the real server through its API, as the admin
// (or as another user, through the admin's Sudo).
type fx struct {
	t     *testing.T
	url   string
	token string
	host  string
	admin *sdk.Client
}

func newFx(t *testing.T) *fx {
	t.Helper()
	u, tok := gitea(t)
	pu, err := url.Parse(u)
	if err != nil {
		t.Fatal(err)
	}
	f := &fx{t: t, url: u, token: tok, host: pu.Host}
	f.admin = f.as("")
	return f
}

// as returns a client acting as user ("" for the admin itself).
func (f *fx) as(user string) *sdk.Client {
	f.t.Helper()
	opts := []sdk.ClientOption{sdk.SetToken(f.token), sdk.SetGiteaVersion("")}
	if user != "" {
		opts = append(opts, sdk.SetSudo(user))
	}
	c, err := sdk.NewClient(f.url, opts...)
	if err != nil {
		f.t.Fatal(err)
	}
	return c
}

func (f *fx) must(what string, resp *sdk.Response, err error) {
	f.t.Helper()
	if err != nil {
		code := 0
		if resp != nil && resp.Response != nil {
			code = resp.StatusCode
		}
		f.t.Fatalf("%s: HTTP %d: %v", what, code, err)
	}
}

func (f *fx) user(name, fullName string) *sdk.User {
	f.t.Helper()
	no := false
	u, resp, err := f.admin.AdminCreateUser(sdk.CreateUserOption{
		Username: name, FullName: fullName, Email: name + "@example.org",
		Password: "Pass-word-1234!", MustChangePassword: &no,
	})
	f.must("create user "+name, resp, err)
	return u
}

// org creates an organization (the admin owns it) with members as owners.
func (f *fx) org(name string, members ...string) {
	f.t.Helper()
	_, resp, err := f.admin.CreateOrg(sdk.CreateOrgOption{Name: name, Visibility: sdk.VisibleTypePublic})
	f.must("create org "+name, resp, err)
	teams, resp, err := f.admin.ListOrgTeams(name, sdk.ListTeamsOptions{})
	f.must("teams of "+name, resp, err)
	for _, m := range members {
		resp, err := f.admin.AddTeamMember(teams[0].ID, m)
		f.must("add "+m+" to "+name, resp, err)
	}
}

// repo creates owner/name with an initial commit; org tells whether
// owner is an organization.
func (f *fx) repo(owner, name string, org bool) *sdk.Repository {
	f.t.Helper()
	opt := sdk.CreateRepoOption{Name: name, Description: "the " + name + " repo", AutoInit: true, DefaultBranch: "main"}
	var r *sdk.Repository
	var resp *sdk.Response
	var err error
	if org {
		r, resp, err = f.admin.CreateOrgRepo(owner, opt)
	} else {
		r, resp, err = f.admin.AdminCreateRepo(owner, opt)
	}
	f.must("create repo "+owner+"/"+name, resp, err)
	return r
}

// branch creates branch from main with one new file (three lines).
func (f *fx) branch(r *sdk.Repository, branch, path string) {
	f.t.Helper()
	content := base64.StdEncoding.EncodeToString([]byte("one\ntwo\nthree\n"))
	_, resp, err := f.admin.CreateFile(r.Owner.UserName, r.Name, path, sdk.CreateFileOptions{
		FileOptions: sdk.FileOptions{Message: "add " + path, BranchName: "main", NewBranchName: branch},
		Content:     content,
	})
	f.must("create "+path+" on "+branch, resp, err)
}

func (f *fx) label(r *sdk.Repository, name string) *sdk.Label {
	f.t.Helper()
	l, resp, err := f.admin.CreateLabel(r.Owner.UserName, r.Name, sdk.CreateLabelOption{Name: name, Color: "#ee0701"})
	f.must("create label "+name, resp, err)
	return l
}

func (f *fx) pull(as string, r *sdk.Repository, head, title string, assignees []string, labels ...int64) *sdk.PullRequest {
	f.t.Helper()
	p, resp, err := f.as(as).CreatePullRequest(r.Owner.UserName, r.Name, sdk.CreatePullRequestOption{
		Head: head, Base: "main", Title: title, Body: "body of " + title, Assignees: assignees, Labels: labels,
	})
	f.must("create pull "+title, resp, err)
	return p
}

func (f *fx) review(as string, r *sdk.Repository, number int64, state sdk.ReviewStateType, body string, comments ...sdk.CreatePullReviewComment) *sdk.PullReview {
	f.t.Helper()
	rv, resp, err := f.as(as).CreatePullReview(r.Owner.UserName, r.Name, number, sdk.CreatePullReviewOptions{
		State: state, Body: body, Comments: comments,
	})
	f.must("create review on #"+fmt.Sprint(number), resp, err)
	return rv
}

func (f *fx) issue(as string, r *sdk.Repository, title string, assignees []string, labels ...int64) *sdk.Issue {
	f.t.Helper()
	i, resp, err := f.as(as).CreateIssue(r.Owner.UserName, r.Name, sdk.CreateIssueOption{
		Title: title, Body: "body of " + title, Assignees: assignees, Labels: labels,
	})
	f.must("create issue "+title, resp, err)
	return i
}

func (f *fx) comment(as string, r *sdk.Repository, number int64, body string) *sdk.Comment {
	f.t.Helper()
	c, resp, err := f.as(as).CreateIssueComment(r.Owner.UserName, r.Name, number, sdk.CreateIssueCommentOption{Body: body})
	f.must("comment on #"+fmt.Sprint(number), resp, err)
	return c
}

// merge merges a pull request, waiting for Gitea's mergeability check.
// The merge commit's message names no issue: Gitea would otherwise, some
// time later (its push queue), add a cross-reference to the pull request
// and update it, racing the export.
func (f *fx) merge(r *sdk.Repository, number int64) {
	f.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		ok, resp, err := f.admin.MergePullRequest(r.Owner.UserName, r.Name, number, sdk.MergePullRequestOption{
			Style: sdk.MergeStyleMerge, Title: "Merge the fix", Message: "merged by the test",
		})
		if err == nil && ok {
			return
		}
		if time.Now().After(deadline) {
			f.must(fmt.Sprintf("merge #%d (ok=%v)", number, ok), resp, err)
			f.t.Fatalf("merge #%d: not merged", number)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func (f *fx) getRepo(r *sdk.Repository) *sdk.Repository {
	f.t.Helper()
	out, resp, err := f.admin.GetRepo(r.Owner.UserName, r.Name)
	f.must("get repo", resp, err)
	return out
}

func (f *fx) getPull(r *sdk.Repository, number int64) *sdk.PullRequest {
	f.t.Helper()
	p, resp, err := f.admin.GetPullRequest(r.Owner.UserName, r.Name, number)
	f.must("get pull", resp, err)
	return p
}

func (f *fx) getIssue(r *sdk.Repository, number int64) *sdk.Issue {
	f.t.Helper()
	i, resp, err := f.admin.GetIssue(r.Owner.UserName, r.Name, number)
	f.must("get issue", resp, err)
	return i
}

// quiesce waits until the pull requests, issues and comments of repos
// stopped changing (Gitea finishes some work, such as a merge, in the
// background) and the last change is older than the export's horizon,
// so that an export sees exactly what the test made.
func (f *fx) quiesce(repos ...*sdk.Repository) {
	f.t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	var prev time.Time
	for {
		var last time.Time
		for _, r := range repos {
			all := sdk.ListOptions{Page: 1, PageSize: 50}
			issues, resp, err := f.admin.ListRepoIssues(r.Owner.UserName, r.Name, sdk.ListIssueOption{ListOptions: all, State: sdk.StateAll})
			f.must("list issues", resp, err)
			for _, i := range issues {
				last = maxTime(last, i.Updated)
			}
			cms, resp, err := f.admin.ListRepoIssueComments(r.Owner.UserName, r.Name, sdk.ListIssueCommentOptions{ListOptions: all})
			f.must("list comments", resp, err)
			for _, c := range cms {
				last = maxTime(last, c.Updated)
			}
			rr, resp, err := f.admin.GetRepo(r.Owner.UserName, r.Name)
			f.must("get repo", resp, err)
			last = maxTime(last, rr.Updated)
		}
		if last.Equal(prev) && time.Since(last) > settle+1100*time.Millisecond {
			return
		}
		if time.Now().After(deadline) {
			f.t.Fatalf("the server kept changing the objects (last change %s)", last)
		}
		prev = last
		time.Sleep(300 * time.Millisecond)
	}
}

func maxTime(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// rid is a record id as the integration forms it.
func (f *fx) rid(model string, id int64) string {
	return fmt.Sprintf("gitea:%s:%s:%d", f.host, model, id)
}

var uniqN atomic.Int64

// uniq gives names unique within the server's run (also with -count).
func uniq(t *testing.T, base string) string {
	n := strings.ToLower(strings.NewReplacer("/", "-", "_", "-").Replace(t.Name()))
	if len(n) > 20 {
		n = n[len(n)-20:]
	}
	return fmt.Sprintf("%s-%s-%d", base, strings.Trim(n, "-"), uniqN.Add(1))
}

// file commits a new file (three lines) on branch and returns the commit.
func (f *fx) file(r *sdk.Repository, branch, path string) *sdk.FileCommitResponse {
	f.t.Helper()
	content := base64.StdEncoding.EncodeToString([]byte("one\ntwo\nthree\n"))
	fr, resp, err := f.admin.CreateFile(r.Owner.UserName, r.Name, path, sdk.CreateFileOptions{
		FileOptions: sdk.FileOptions{Message: "add " + path, BranchName: branch},
		Content:     content,
	})
	f.must("create "+path+" on "+branch, resp, err)
	return fr.Commit
}

// tag creates an annotated tag on target (a branch).
func (f *fx) tag(r *sdk.Repository, name, target string) *sdk.Tag {
	f.t.Helper()
	tg, resp, err := f.admin.CreateTag(r.Owner.UserName, r.Name, sdk.CreateTagOption{TagName: name, Target: target, Message: "release " + name})
	f.must("create tag "+name, resp, err)
	return tg
}

// branches maps each branch of r to its head commit, as the API says.
func (f *fx) branches(r *sdk.Repository) map[string]string {
	f.t.Helper()
	bs, resp, err := f.admin.ListRepoBranches(r.Owner.UserName, r.Name, sdk.ListRepoBranchesOptions{ListOptions: sdk.ListOptions{Page: 1, PageSize: 50}})
	f.must("list branches", resp, err)
	out := map[string]string{}
	for _, b := range bs {
		out[b.Name] = b.Commit.ID
	}
	return out
}

// commits returns every commit reachable from r's branches, by sha, as
// the API lists them.
func (f *fx) commits(r *sdk.Repository) map[string]*sdk.Commit {
	f.t.Helper()
	out := map[string]*sdk.Commit{}
	for b := range f.branches(r) {
		for page := 1; ; page++ {
			cs, resp, err := f.admin.ListRepoCommits(r.Owner.UserName, r.Name, sdk.ListCommitOptions{
				ListOptions: sdk.ListOptions{Page: page, PageSize: 50}, SHA: b,
			})
			f.must("list commits of "+b, resp, err)
			for _, c := range cs {
				out[c.SHA] = c
			}
			if len(cs) < 50 {
				break
			}
		}
	}
	return out
}

// gid is the id of a git integration record of r: git:<owner>/<name>:<rest>.
func gid(r *sdk.Repository, rest string) string {
	return "git:" + r.Owner.UserName + "/" + r.Name + ":" + rest
}

// pushed waits until Gitea processed the push that brought sha onto ref
// (refs/heads/main). Gitea handles pushes (also its own, of a merge or of
// a file written through the API) in a queue it polls with a backoff of
// up to 2 s; the handling bumps the repo's updated_at, so an export must
// not start before it. Its trace is the repo's push activity.
func (f *fx) pushed(r *sdk.Repository, ref, sha string) {
	f.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		feeds, resp, err := f.admin.ListRepoActivityFeeds(r.Owner.UserName, r.Name, sdk.ListRepoActivityFeedsOptions{ListOptions: sdk.ListOptions{Page: 1, PageSize: 20}})
		f.must("activity feeds", resp, err)
		for _, a := range feeds {
			if a.OpType == "commit_repo" && a.RefName == ref && strings.Contains(a.Content, sha) {
				return
			}
		}
		if time.Now().After(deadline) {
			f.t.Fatalf("gitea did not process the push of %s to %s of %s", sha, ref, r.FullName)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
