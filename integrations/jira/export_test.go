package jira

import (
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"courier/actors"
)

// t0 is 10:04 in New York (EST), 16:04 in Berlin (CET).
var t0 = time.Date(2024, 3, 5, 15, 4, 0, 0, time.UTC)

func ms(n int) time.Duration { return time.Duration(n) * time.Millisecond }

func (f *fakeJira) issueID(is *fakeIssue) string {
	return fmt.Sprintf("jira:%s:issue:%d", strings.TrimPrefix(f.srv.URL, "http://"), is.id)
}

func (f *fakeJira) commentID(c *fakeComment) string {
	return fmt.Sprintf("jira:%s:issue_comment:%d", strings.TrimPrefix(f.srv.URL, "http://"), c.id)
}

func keys(m map[string]int) []string { return slices.Sorted(maps.Keys(m)) }

// expectExactly checks that got holds each id of want exactly once and
// nothing else.
func expectExactly(t *testing.T, what string, got map[string]int, want ...string) {
	t.Helper()
	w := map[string]int{}
	for _, id := range want {
		w[id]++
	}
	if !maps.Equal(got, w) && !(len(got) == 0 && len(w) == 0) {
		t.Fatalf("%s: got %v, want each of %v once", what, got, keys(w))
	}
}

// firstSearch is the first search of a project in a search log.
func firstSearch(searches []string, p *fakeProject) string {
	for _, s := range searches {
		if strings.HasPrefix(s, "project = "+strconv.Itoa(p.id)+" ") {
			return s
		}
	}
	return ""
}

func succeeded(t *testing.T, res actors.IntegrationResult) {
	t.Helper()
	if res.Status != actors.StatusSucceeded || len(res.EntityErrors) != 0 {
		t.Fatalf("export: %+v", res)
	}
}

// TestCloudIncrementalSameMinute runs three exports against Jira Cloud with
// the user in New York: issues updated in the same millisecond, the same
// second and the same minute as the last export's latest, and one that the
// search shows late (updated before it), come out exactly once each.
func TestCloudIncrementalSameMinute(t *testing.T) {
	shrink(t, 2)
	f := newFakeJira(t, true, "America/New_York")
	f.embedComments, f.embedHistories = 1, 2
	f.commentMax, f.changelogMax, f.userMax, f.projectMax = 2, 2, 2, 1
	alice := f.addUser("alice", "Alice Adams")
	f.addUser("bob", "Bob Brown")
	f.addUser("carol", "Carol Chen")
	proj := f.addProject("PROJ", "Project")
	ops := f.addProject("OPS", "Operations")

	old := f.addIssue(proj, "old one", t0.Add(-2*time.Hour))
	i1 := f.addIssue(proj, "first", t0.Add(-time.Hour))
	var comments []*fakeComment
	for k, m := range []int{50, 40, 30} {
		comments = append(comments, f.comment(i1, "comment "+strconv.Itoa(k), t0.Add(-time.Duration(m)*time.Minute)))
	}
	for k, m := range []int{20, 15, 10, 5} {
		f.update(i1, []string{"In Progress", "In Review", "In Progress", "In Review"}[k], t0.Add(-time.Duration(m)*time.Minute))
	}
	f.update(i1, "Done", t0.Add(ms(5100)))
	i2 := f.addIssue(proj, "same millisecond as first", t0.Add(-time.Hour))
	f.update(i2, "In Progress", t0.Add(ms(5100)))
	i3 := f.addIssue(proj, "latest", t0.Add(30*time.Second))
	opsIssue := f.addIssue(ops, "ops work", t0.Add(-3*time.Hour))

	r := newRig(t)
	cfg := f.config("")
	res, envs := r.export(cfg, false)
	succeeded(t, res)
	got := byModel(envs)
	expectExactly(t, "issues of export 1", got[ModelIssue], f.issueID(old), f.issueID(i1), f.issueID(i2), f.issueID(i3), f.issueID(opsIssue))
	expectExactly(t, "comments of export 1", got[ModelIssueComment], f.commentID(comments[0]), f.commentID(comments[1]), f.commentID(comments[2]))
	if len(got[ModelUser]) != 3 || len(got[ModelProject]) != 2 {
		t.Fatalf("users %v, projects %v", got[ModelUser], got[ModelProject])
	}

	// The records' content.
	var is Issue
	data(t, envs, f.issueID(i1), &is)
	if is.Key != "PROJ-2" || is.ProjectKey != "PROJ" || is.Status != "Done" || is.StatusCategory != "indeterminate" ||
		is.Summary != "first" || is.Type != "Task" || is.Priority != "Medium" || is.URL != f.srv.URL+"/browse/PROJ-2" ||
		!is.UpdatedAt.Equal(t0.Add(ms(5100))) || !is.CreatedAt.Equal(t0.Add(-time.Hour)) || is.CommentCount != 3 ||
		is.Reporter == nil || is.Reporter.ID != alice.accountID || is.Reporter.Email != "alice@example.com" ||
		is.DueDate != "2024-04-01" || is.OriginalEstimateSeconds == nil || *is.OriginalEstimateSeconds != 3600 ||
		len(is.Links) != 1 || is.Links[0].Relation != "blocks" || is.Links[0].Issue.Key != "OTHER-1" ||
		!slices.Equal(is.Labels, []string{"backend"}) || !slices.Equal(is.Components, []string{"API"}) {
		t.Fatalf("issue record: %+v", is)
	}
	if cf := is.CustomFields["customfield_10016"]; cf.Name != "Story Points" || string(cf.Value) != "3" {
		t.Fatalf("custom fields: %+v", is.CustomFields)
	}
	if _, ok := is.CustomFields["customfield_10020"]; ok {
		t.Fatal("a null custom field was kept")
	}
	// Five histories though the search embedded two: the rest came from
	// /issue/{id}/changelog, in order.
	if len(is.Changelog) != 5 || is.Changelog[4].Items[0].ToString != "Done" || is.Changelog[0].Items[0].ToString != "In Progress" ||
		!is.Changelog[4].CreatedAt.Equal(t0.Add(ms(5100))) || is.Changelog[0].Author == nil || is.Changelog[0].Author.DisplayName != "Alice Adams" {
		t.Fatalf("changelog: %+v", is.Changelog)
	}
	var c Comment
	data(t, envs, f.commentID(comments[2]), &c)
	if c.IssueKey != "PROJ-2" || c.IssueID != strconv.Itoa(i1.id) || c.ProjectKey != "PROJ" || c.Body != "comment 2" ||
		!c.UpdatedAt.Equal(t0.Add(-30*time.Minute)) || c.Author == nil || c.Author.DisplayName != "Alice Adams" || c.Public == nil || !*c.Public {
		t.Fatalf("comment record: %+v", c)
	}
	var p Project
	data(t, envs, fmt.Sprintf("jira:%s:project:%d", strings.TrimPrefix(f.srv.URL, "http://"), proj.id), &p)
	if p.Key != "PROJ" || p.Name != "Project" || p.ProjectType != "software" || p.Category == nil || p.Category.Name != "Engineering" || p.Lead == nil {
		t.Fatalf("project record: %+v", p)
	}
	var u User
	data(t, envs, fmt.Sprintf("jira:%s:user:%s", strings.TrimPrefix(f.srv.URL, "http://"), alice.accountID), &u)
	if u.ID != alice.accountID || u.AccountID != alice.accountID || u.DisplayName != "Alice Adams" || !u.Active || u.AccountType != "atlassian" {
		t.Fatalf("user record: %+v", u)
	}
	for _, e := range envs {
		if e.Model == ModelIssue && e.Session[1] != "project:PROJ" && e.Session[1] != "project:OPS" || e.Model == ModelUser && len(e.Session) != 2 {
			t.Fatalf("session path %v of %s", e.Session, e.ID)
		}
	}
	f.takeSearches()

	// Between exports: an issue updated in the same millisecond as the
	// last export's latest, one updated again within the same minute (with
	// a new comment), one the search index shows late (updated before the
	// latest, with a comment from before the last export), one in the next
	// minute.
	i4 := f.addIssue(proj, "same millisecond as latest", t0.Add(30*time.Second))
	f.update(i2, "Done", t0.Add(ms(59999)))
	late := f.comment(i2, "a new comment", t0.Add(ms(59999)))
	i6 := f.addIssue(proj, "indexed late", t0.Add(-50*time.Second))
	onLate := f.comment(i6, "on the late one", t0.Add(-45*time.Second))
	f.update(i6, "In Progress", t0.Add(20*time.Second))
	i7 := f.addIssue(proj, "next minute", t0.Add(61*time.Second))

	res, envs = r.export(cfg, false)
	succeeded(t, res)
	if !res.Incremental {
		t.Fatal("the second export should be incremental")
	}
	got = byModel(envs)
	expectExactly(t, "issues of export 2", got[ModelIssue], f.issueID(i4), f.issueID(i2), f.issueID(i6), f.issueID(i7))
	expectExactly(t, "comments of export 2", got[ModelIssueComment], f.commentID(late), f.commentID(onLate))
	// The bound: 15:04:30Z is 10:04:30 in New York; its minute less the
	// overlap is 10:03. Read in UTC it would have missed everything.
	if s := firstSearch(f.takeSearches(), proj); !strings.Contains(s, `updated >= "2024/03/05 10:03"`) {
		t.Fatalf("first search of export 2: %s", s)
	}
	var is2 Issue
	data(t, envs, f.issueID(i2), &is2)
	if is2.Status != "Done" || !is2.UpdatedAt.Equal(t0.Add(ms(59999))) || len(is2.Changelog) != 2 {
		t.Fatalf("updated issue: %+v", is2)
	}

	// Nothing changed: nothing is sent again.
	res, envs = r.export(cfg, false)
	succeeded(t, res)
	got = byModel(envs)
	expectExactly(t, "issues of export 3", got[ModelIssue])
	expectExactly(t, "comments of export 3", got[ModelIssueComment])
	if s := firstSearch(f.takeSearches(), proj); !strings.Contains(s, `updated >= "2024/03/05 10:04"`) {
		t.Fatalf("first search of export 3: %s", s)
	}

	// Every request carried exactly the Basic credentials.
	want := "Basic " + base64Std(fakeEmail+":"+fakeToken)
	if h := f.authHeaders(); len(h) != 1 || h[want] == 0 {
		t.Fatalf("Authorization headers: %v", keys(h))
	}

	// A full re-export sends everything again.
	res, envs = r.export(cfg, true)
	succeeded(t, res)
	if n := len(byModel(envs)[ModelIssue]); n != 8 || res.Records[ModelIssueComment] != 5 || res.Incremental {
		t.Fatalf("reprocess: %d issues, %+v", n, res)
	}
}

// TestDataCenterPagingShiftAndBearer pages Data Center's /search by startAt
// with the user in Berlin while an issue already read is updated (moving
// to the end and shifting every later one back): nothing is skipped.
func TestDataCenterPagingShiftAndBearer(t *testing.T) {
	shrink(t, 3)
	f := newFakeJira(t, false, "Europe/Berlin")
	f.embedHistories, f.embedComments = 1, 1
	f.addUser("alice", "Alice Adams")
	f.addUser("bob", "Bob Brown")
	proj := f.addProject("PROJ", "Project")
	// A bulk change: ten issues in the same second, more than three pages.
	var bulk []*fakeIssue
	for k := range 10 {
		bulk = append(bulk, f.addIssue(proj, "bulk "+strconv.Itoa(k), t0.Add(ms(100*k))))
	}
	later := []*fakeIssue{
		f.addIssue(proj, "later 1", t0.Add(2*time.Minute)),
		f.addIssue(proj, "later 2", t0.Add(3*time.Minute)),
	}
	withHistory := later[1]
	f.update(withHistory, "In Progress", t0.Add(3*time.Minute+ms(1)))
	f.update(withHistory, "In Review", t0.Add(3*time.Minute+ms(2)))
	f.update(withHistory, "Done", t0.Add(3*time.Minute+ms(3)))
	cs := []*fakeComment{f.comment(withHistory, "one", t0.Add(-time.Hour)), f.comment(withHistory, "two", t0.Add(-time.Hour))}

	moved := bulk[2]
	f.setAfterSearch(func(n int) {
		if n == 1 { // after the first page: an issue of it is updated
			f.update(moved, "In Progress", t0.Add(5*time.Minute))
		}
	})
	r := newRig(t)
	cfg := f.config(`"projects": ["PROJ"]`)
	res, envs := r.export(cfg, false)
	succeeded(t, res)
	got := byModel(envs)
	var want []string
	for _, is := range append(slices.Clone(bulk), later...) {
		want = append(want, f.issueID(is))
	}
	for _, id := range want {
		if got[ModelIssue][id] == 0 {
			t.Fatalf("issue %s lost; got %v", id, got[ModelIssue])
		}
	}
	if len(got[ModelIssue]) != len(want) || got[ModelIssue][f.issueID(moved)] != 2 || res.Records[ModelIssue] != int64(len(want)+1) {
		t.Fatalf("issues: %v (the moved one twice: before and after its update)", got[ModelIssue])
	}
	expectExactly(t, "comments", got[ModelIssueComment], f.commentID(cs[0]), f.commentID(cs[1]))
	var is Issue
	data(t, envs, f.issueID(withHistory), &is)
	if len(is.Changelog) != 3 || is.Changelog[2].Items[0].ToString != "Done" || is.Assignee != nil || is.Reporter == nil || is.Reporter.Username != "alice" {
		t.Fatalf("Data Center issue: %+v", is)
	}
	// The shift was seen and the pager restarted from the bound.
	restarted := false
	prev := -1
	for _, s := range f.takeSearches() {
		parts := strings.Split(s, "|")
		start, _ := strconv.Atoi(parts[1])
		if start == 0 && prev > 0 {
			restarted = true
		}
		prev = start
	}
	if !restarted {
		t.Fatal("the pager never restarted after the shift")
	}

	// An issue updated in the same millisecond as the latest, and nothing
	// else: exactly it.
	f.setAfterSearch(nil)
	same := f.addIssue(proj, "same millisecond", t0.Add(5*time.Minute))
	res, envs = r.export(cfg, false)
	succeeded(t, res)
	expectExactly(t, "issues of export 2", byModel(envs)[ModelIssue], f.issueID(same))
	// 15:09Z is 16:09 in Berlin; less the overlap, 16:08.
	if s := firstSearch(f.takeSearches(), proj); !strings.Contains(s, `updated >= "2024/03/05 16:08"`) {
		t.Fatalf("search: %s", s)
	}
	if h := f.authHeaders(); len(h) != 1 || h["Bearer "+fakePAT] == 0 {
		t.Fatalf("Authorization headers: %v", keys(h))
	}
	res, envs = r.export(cfg, false)
	succeeded(t, res)
	expectExactly(t, "issues of export 3", byModel(envs)[ModelIssue])
}

// TestRateLimitAndBadGateway: a 429 with Retry-After is waited out (and
// logged as a wait, not an error), a 502 from a proxy is retried.
func TestRateLimitAndBadGateway(t *testing.T) {
	shrink(t, 50)
	f := newFakeJira(t, true, "UTC")
	f.embedComments = 0
	f.addUser("alice", "Alice Adams")
	proj := f.addProject("PROJ", "Project")
	is := f.addIssue(proj, "one", t0)
	c := f.comment(is, "hello", t0.Add(time.Second))
	rl := &fault{path: "/rest/api/2/search/jql", status: http.StatusTooManyRequests, times: 1,
		header: http.Header{"Retry-After": {"1"}, "X-Ratelimit-Limit": {"350"}, "X-Ratelimit-Remaining": {"0"}, "Ratelimit-Reason": {"jira-quota-tenant-based"}},
		body:   `{"errorMessages":["Rate limit exceeded."],"errors":{}}`}
	bg := &fault{path: "/rest/api/2/issue/", status: http.StatusBadGateway, times: 2, body: "<html><body><h1>502 Bad Gateway</h1></body></html>"}
	f.addFault(rl)
	f.addFault(bg)
	r := newRig(t)
	start := time.Now()
	res, envs := r.export(f.config(""), false)
	succeeded(t, res)
	if time.Since(start) < time.Second {
		t.Fatal("the Retry-After of the 429 was not waited out")
	}
	var rlServed, bgServed int
	f.set(func() { rlServed, bgServed = rl.served, bg.served })
	if rlServed != 1 || bgServed != 2 {
		t.Fatalf("faults served: 429 %d, 502 %d", rlServed, bgServed)
	}
	got := byModel(envs)
	expectExactly(t, "issues", got[ModelIssue], f.issueID(is))
	expectExactly(t, "comments", got[ModelIssueComment], f.commentID(c))
	logs := r.logs.String()
	if !strings.Contains(logs, "waiting before asking Jira again") || !strings.Contains(logs, "rate limited") || !strings.Contains(logs, "502 Bad Gateway") {
		t.Fatalf("waits not logged:\n%s", logs)
	}
}

// TestWaitShowsAsProgress: a wait of the HTTP layer touches the export's
// root session, so the stall watchdog sees it alive.
func TestWaitShowsAsProgress(t *testing.T) {
	f := newFakeJira(t, true, "UTC")
	j := newTestJira(t, f.config(""))
	run := newMemRun()
	p := &progress{root: run.Root()}
	p.set(1, 4)
	j.setOnWait(p.touch)
	before := run.LastActivity()
	time.Sleep(5 * time.Millisecond)
	j.waited(time.Minute, "rate limited")
	if !run.LastActivity().After(before) {
		t.Fatal("a wait did not show as progress")
	}
	if n := run.Snapshot()[0]; n.Current != 1 || n.Total != 4 {
		t.Fatalf("progress changed by a wait: %+v", n)
	}
}

// TestExpiredToken: a refused login fails the export with a clear message
// naming the keys to check, at the start or in the middle of an export.
func TestExpiredToken(t *testing.T) {
	for _, cloud := range []bool{true, false} {
		t.Run(map[bool]string{true: "cloud", false: "datacenter"}[cloud], func(t *testing.T) {
			shrink(t, 1)
			f := newFakeJira(t, cloud, "UTC")
			proj := f.addProject("PROJ", "Project")
			f.addIssue(proj, "one", t0)
			f.addIssue(proj, "two", t0.Add(time.Minute))
			f.addIssue(proj, "three", t0.Add(2*time.Minute))
			hint := map[bool]string{true: "email/api_token", false: "personal_access_token"}[cloud]
			want := "the Jira credentials were refused (401): check " + hint
			r := newRig(t)
			f.setExpired(true)
			res, _ := r.export(f.config(""), false)
			if res.Status != actors.StatusFailed || res.Error != want {
				t.Fatalf("at the start: %+v", res)
			}
			f.setExpired(false)
			f.setAfterSearch(func(int) { f.setExpired(true) })
			res, envs := r.export(f.config(""), false)
			if res.Status != actors.StatusFailed || res.Error != want || len(res.EntityErrors) != 0 {
				t.Fatalf("in the middle: %+v", res)
			}
			if n := len(byModel(envs)[ModelIssue]); n != 1 {
				t.Fatalf("%d issues before the token expired, want 1", n)
			}
			// A new token: the export resumes after the checkpoint.
			f.setAfterSearch(nil)
			f.setExpired(false)
			res, envs = r.export(f.config(""), false)
			succeeded(t, res)
			if n := len(byModel(envs)[ModelIssue]); n != 2 {
				t.Fatalf("%d issues after the resume, want 2", n)
			}
		})
	}
}

// TestMissingProjectAmongGood: a project that is not there (404) or whose
// search is forbidden (403) is an entity error; the others are exported.
func TestMissingProjectAmongGood(t *testing.T) {
	f := newFakeJira(t, false, "UTC")
	proj := f.addProject("PROJ", "Project")
	ops := f.addProject("OPS", "Operations")
	f.set(func() { ops.searchStatus = http.StatusForbidden })
	is := f.addIssue(proj, "one", t0)
	f.addIssue(ops, "hidden", t0)
	r := newRig(t)
	res, envs := r.export(f.config(`"projects": ["PROJ", "NOPE", "OPS"]`), false)
	if res.Status != actors.StatusSucceeded || len(res.EntityErrors) != 2 {
		t.Fatalf("result: %+v", res)
	}
	errs := map[string]string{}
	for _, e := range res.EntityErrors {
		if len(e.Path) != 2 || e.Path[0] != testID {
			t.Fatalf("entity error path %v", e.Path)
		}
		errs[e.Path[1]] = e.Error
	}
	if e := errs["project:NOPE"]; !strings.Contains(e, "no such project, or the user cannot see it (404)") {
		t.Fatalf("NOPE: %q", e)
	}
	if e := errs["project:OPS"]; !strings.Contains(e, "HTTP 403") || !strings.Contains(e, "You do not have the permission to see the specified project.") {
		t.Fatalf("OPS: %q", e)
	}
	got := byModel(envs)
	expectExactly(t, "issues", got[ModelIssue], f.issueID(is))
	if len(got[ModelProject]) != 2 {
		t.Fatalf("projects: %v", got[ModelProject])
	}

	// Every project failing fails the export.
	res, _ = r.export(f.config(`"projects": ["NOPE", "OPS"]`), false)
	if res.Status != actors.StatusFailed || !strings.Contains(res.Error, "every project failed") || len(res.EntityErrors) != 2 {
		t.Fatalf("all failed: %+v", res)
	}
}

// TestInterruptedExportResumes: a project whose search breaks part-way is
// an entity error that keeps its last checkpoint; the next export sends
// exactly the rest.
func TestInterruptedExportResumes(t *testing.T) {
	shrink(t, 2)
	f := newFakeJira(t, false, "America/New_York")
	f.embedComments = 5
	proj := f.addProject("PROJ", "Project")
	var all []*fakeIssue
	var comments []string
	for k := range 7 {
		is := f.addIssue(proj, "issue "+strconv.Itoa(k), t0.Add(time.Duration(k)*time.Minute))
		all = append(all, is)
		comments = append(comments, f.commentID(f.comment(is, "c", t0.Add(time.Duration(k)*time.Minute))))
	}
	broken := &fault{path: "/rest/api/2/search", status: http.StatusInternalServerError, times: -1, afterOK: 2,
		body: `{"errorMessages":["Internal server error"],"errors":{}}`}
	f.addFault(broken)
	r := newRig(t)
	cfg := f.config("")
	res, envs := r.export(cfg, false)
	if res.Status != actors.StatusFailed || len(res.EntityErrors) != 1 || !strings.Contains(res.EntityErrors[0].Error, "HTTP 500") {
		t.Fatalf("broken export: %+v", res)
	}
	first := byModel(envs)
	if len(first[ModelIssue]) != 4 {
		t.Fatalf("before the break: %v", first[ModelIssue])
	}
	f.set(func() { broken.times = 0 })
	res, envs = r.export(cfg, false)
	succeeded(t, res)
	second := byModel(envs)
	for id := range second[ModelIssue] {
		if first[ModelIssue][id] > 0 {
			t.Fatalf("issue %s sent again after the resume", id)
		}
	}
	var ids []string
	for _, is := range all {
		ids = append(ids, f.issueID(is))
	}
	union := maps.Clone(first[ModelIssue])
	maps.Copy(union, second[ModelIssue])
	expectExactly(t, "issues of both exports", union, ids...)
	cu := maps.Clone(first[ModelIssueComment])
	for id, n := range second[ModelIssueComment] {
		cu[id] += n
	}
	expectExactly(t, "comments of both exports", cu, comments...)
}
