package gitea

import (
	"bytes"
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	sdk "code.gitea.io/sdk/gitea"
	"github.com/rs/zerolog"

	"courier/integrations"
	"courier/integrations/forge"
)

func TestConfigErrorsNameTheirKey(t *testing.T) {
	for _, c := range []struct{ cfg, want string }{
		{`{}`, "url: required"},
		{`{"url":"gitea.example.com","token":"t","users":["a"]}`, "url: must be an http(s) URL"},
		{`{"url":"https://u:p@gitea.example.com","token":"t","users":["a"]}`, "url: must not carry credentials"},
		{`{"url":"https://gitea.example.com","users":["a"]}`, "token: required"},
		{`{"url":"https://gitea.example.com","token":"a b","users":["a"]}`, "token: contains white space"},
		{`{"url":"https://gitea.example.com","token":"t"}`, "organizations, users, repos: give at least one"},
		{`{"url":"https://gitea.example.com","token":"t","repos":["acme"]}`, `repos[0]: "acme" is not owner/name`},
		{`{"url":"https://gitea.example.com","token":"t","repos":["a/b","A/B"]}`, `repos[1]: "A/B" is repos[0] again`},
		{`{"url":"https://gitea.example.com","token":"t","organizations":["a/b"]}`, `organizations[0]: "a/b" is not a name`},
		{`{"url":"https://gitea.example.com","token":"t","users":["x","x"]}`, `users[1]: "x" is users[0] again`},
		{`{"url":"https://gitea.example.com","token":"t","users":["x"],"org":["y"]}`, `unknown key "org"`},
		{"url: https://gitea.example.com\ntoken: t\nusers: [x]\nrepo: [a/b]\n", `gitea config: unknown key "repo" (line 4); did you mean "repos"?`},
	} {
		_, err := integrations.DecodeConfig(Type, []byte(c.cfg))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v, want %q", c.cfg, err, c.want)
		}
	}
	cfg, err := integrations.DecodeConfig(Type, []byte(`{"url":"https://gitea.example.com/sub/api/v1/","token":"s3cret","repos":["a/b"],"ca_file":"/x.pem"}`))
	if err != nil {
		t.Fatal(err)
	}
	if s := fmt.Sprintf("%v %+v %#v %s", cfg, cfg, cfg, *cfg.(*Config)); strings.Contains(s, "s3cret") || !strings.Contains(s, "[redacted]") {
		t.Errorf("the config prints its token: %s", s)
	}
	u, _ := baseURL(cfg.(*Config).URL)
	if u.String() != "https://gitea.example.com/sub" {
		t.Errorf("base url %s", u)
	}
}

// The cursor and the horizon together: objects updated in the cursor's
// second are neither sent again nor lost, and nothing at or past the
// horizon moves the cursor.
func TestPickSameSecond(t *testing.T) {
	t0 := time.Date(2025, 5, 1, 10, 0, 0, 0, time.UTC)
	type item struct {
		at time.Time
		id int64
	}
	stamp := func(i item) stamped { return stamped{i.at, i.id} }
	items := []item{{t0.Add(time.Second), 9}, {t0, 7}, {t0, 3}, {t0, 5}, {t0.Add(-time.Second), 8}, {t0.Add(5 * time.Second), 1}}
	hz := t0.Add(5 * time.Second)

	got := pick(items, stamp, forge.Cursor{}, hz)
	if fmt.Sprint(got) != fmt.Sprint([]item{{t0.Add(-time.Second), 8}, {t0, 3}, {t0, 5}, {t0, 7}, {t0.Add(time.Second), 9}}) {
		t.Fatalf("first pick %v", got)
	}
	// Checkpointed after (t0, 5): 7 in the same second still comes, 3 and 5 do not.
	cur := forge.Cursor{Updated: t0, ID: 5}
	if got := pick(items, stamp, cur, hz); fmt.Sprint(got) != fmt.Sprint([]item{{t0, 7}, {t0.Add(time.Second), 9}}) {
		t.Fatalf("after a checkpoint %v", got)
	}
	if !since(cur).Equal(t0) || !since(forge.Cursor{Updated: t0.Add(300 * time.Millisecond)}).Equal(t0) || !since(forge.Cursor{}).IsZero() {
		t.Fatal("since must be the cursor's whole second")
	}
}

func TestHorizonIsBehindTheServersClock(t *testing.T) {
	now := time.Date(2025, 5, 1, 10, 0, 0, 0, time.UTC)
	resp := &sdk.Response{Response: &http.Response{Header: http.Header{"Date": {"Thu, 01 May 2025 09:59:58 GMT"}}}}
	if got := horizon(resp, now); !got.Equal(now.Add(-2*time.Second - settle)) {
		t.Errorf("with a Date header: %s", got)
	}
	if got := horizon(nil, now.Add(400*time.Millisecond)); !got.Equal(now.Add(-settle - 2*time.Second)) {
		t.Errorf("without: %s", got)
	}
}

func TestCommentIssueNumber(t *testing.T) {
	for _, c := range []struct {
		c    sdk.Comment
		want int
	}{
		{sdk.Comment{IssueURL: "https://g.example/acme/api/issues/12"}, 12},
		{sdk.Comment{PRURL: "https://g.example/sub/acme/api/pulls/7"}, 7},
		{sdk.Comment{HTMLURL: "https://g.example/acme/api/issues/3#issuecomment-9"}, 3},
		{sdk.Comment{HTMLURL: "https://g.example/acme/api/pulls/4#issuecomment-9"}, 4},
		{sdk.Comment{}, 0},
	} {
		if got := commentIssue(&c.c); got != c.want {
			t.Errorf("%+v: %d, want %d", c.c, got, c.want)
		}
	}
}

func TestReviewStates(t *testing.T) {
	for _, c := range []struct {
		r          sdk.PullReview
		superseded bool
		want       string
		ok         bool
	}{
		{sdk.PullReview{State: sdk.ReviewStateApproved}, false, "APPROVED", true},
		{sdk.PullReview{State: sdk.ReviewStateRequestChanges}, false, "CHANGES_REQUESTED", true},
		{sdk.PullReview{State: sdk.ReviewStateComment}, false, "COMMENTED", true},
		{sdk.PullReview{State: sdk.ReviewStateApproved, Dismissed: true}, false, "DISMISSED", true},
		{sdk.PullReview{State: sdk.ReviewStateRequestChanges, Dismissed: true}, true, "CHANGES_REQUESTED", true},
		{sdk.PullReview{State: sdk.ReviewStatePending}, false, "", false},
		{sdk.PullReview{State: sdk.ReviewStateRequestReview}, false, "", false},
	} {
		if got, ok := reviewState(&c.r, c.superseded); got != c.want || ok != c.ok {
			t.Errorf("%s (dismissed %v, superseded %v): %q %v", c.r.State, c.r.Dismissed, c.superseded, got, ok)
		}
	}
	bob, amy := &sdk.User{ID: 2}, &sdk.User{ID: 3}
	last := lastVerdicts([]*sdk.PullReview{
		{ID: 1, Reviewer: bob, State: sdk.ReviewStateRequestChanges},
		{ID: 4, Reviewer: bob, State: sdk.ReviewStateApproved},
		{ID: 5, Reviewer: bob, State: sdk.ReviewStateComment},
		{ID: 2, Reviewer: amy, State: sdk.ReviewStateComment},
	})
	if len(last) != 1 || last[2] != 4 {
		t.Errorf("last verdicts %v", last)
	}
}

// Git data is fetched under the configured url (with its sub-path),
// whatever the server's clone_url says; a clone_url elsewhere is logged
// once.
func TestCloneURLIsUnderTheConfiguredURL(t *testing.T) {
	var logs bytes.Buffer
	g, err := New(integrations.Options{ID: "int_1", Logger: zerolog.New(&logs)}, &Config{URL: "https://git.example.com/sub/api/v1", Token: "t", Users: []string{"a"}})
	if err != nil {
		t.Fatal(err)
	}
	repo := func(clone string) *sdk.Repository {
		return &sdk.Repository{Owner: &sdk.User{UserName: "acme"}, Name: "api", CloneURL: clone}
	}
	if u := g.cloneURL(repo("https://git.example.com/sub/acme/api.git")); u != "https://git.example.com/sub/acme/api.git" || logs.Len() != 0 {
		t.Errorf("same server: %s, logged %q", u, logs.String())
	}
	for range 2 {
		if u := g.cloneURL(repo("http://localhost:3000/acme/api.git")); u != "https://git.example.com/sub/acme/api.git" {
			t.Errorf("clone_url elsewhere: %s", u)
		}
	}
	if n := strings.Count(logs.String(), "differs from the configured url"); n != 1 {
		t.Errorf("logged %d times: %s", n, logs.String())
	}
	if dir, err := g.cacheDir(); err != nil || !strings.HasSuffix(dir, filepath.Join("courier", "gitea", "int_1", "git")) {
		t.Errorf("cache folder without Options.CacheDir: %q, %v", dir, err)
	}
	g.opts.CacheDir = "/var/cache/x"
	if dir, _ := g.cacheDir(); dir != filepath.Join("/var/cache/x", "git") {
		t.Errorf("cache folder: %q", dir)
	}
}
