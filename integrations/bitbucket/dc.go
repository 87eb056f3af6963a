package bitbucket

import (
	"context"
	"encoding/base64"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// dcAPI speaks Bitbucket Data Center's (and Server's) REST API 1.0
// (https://developer.atlassian.com/server/bitbucket/rest/).
type dcAPI struct{ c *client }

// The shapes of Data Center's answers, as far as they are read (RestUser,
// RestProject, RestRepository, RestPullRequest, RestPullRequestActivity,
// RestComment).
type dcUser struct {
	ID           int64  `json:"id"`
	Name         string `json:"name"`
	Slug         string `json:"slug"`
	DisplayName  string `json:"displayName"`
	EmailAddress string `json:"emailAddress"`
}

type dcLinks struct {
	Self  []struct{ Href string } `json:"self"`
	Clone []struct {
		Href string `json:"href"`
		Name string `json:"name"`
	} `json:"clone"`
}

func (l dcLinks) self() string {
	if len(l.Self) > 0 {
		return l.Self[0].Href
	}
	return ""
}

type dcProject struct {
	ID          int64   `json:"id"`
	Key         string  `json:"key"`
	Name        string  `json:"name"`
	Description string  `json:"description"`
	Public      bool    `json:"public"`
	Links       dcLinks `json:"links"`
}

type dcRepo struct {
	ID          int64     `json:"id"`
	Slug        string    `json:"slug"`
	Name        string    `json:"name"`
	Description string    `json:"description"`
	Public      bool      `json:"public"`
	Origin      *struct{} `json:"origin"`
	Project     dcProject `json:"project"`
	Links       dcLinks   `json:"links"`
}

type dcRef struct {
	DisplayID    string `json:"displayId"`
	LatestCommit string `json:"latestCommit"`
}

type dcPull struct {
	ID          int64  `json:"id"`
	Title       string `json:"title"`
	Description string `json:"description"`
	State       string `json:"state"`
	Draft       bool   `json:"draft"`
	CreatedDate int64  `json:"createdDate"`
	UpdatedDate int64  `json:"updatedDate"`
	ClosedDate  int64  `json:"closedDate"`
	FromRef     dcRef  `json:"fromRef"`
	ToRef       dcRef  `json:"toRef"`
	Author      struct {
		User dcUser `json:"user"`
	} `json:"author"`
	Reviewers []struct {
		User dcUser `json:"user"`
	} `json:"reviewers"`
	Properties struct {
		CommentCount int `json:"commentCount"`
		MergeCommit  *struct {
			ID string `json:"id"`
		} `json:"mergeCommit"`
	} `json:"properties"`
	Links dcLinks `json:"links"`
}

type dcAnchor struct {
	Path string `json:"path"`
	Line int    `json:"line"`
}

type dcComment struct {
	ID          int64       `json:"id"`
	Text        string      `json:"text"`
	Author      dcUser      `json:"author"`
	CreatedDate int64       `json:"createdDate"`
	UpdatedDate int64       `json:"updatedDate"`
	Comments    []dcComment `json:"comments"`
	Anchor      *dcAnchor   `json:"anchor"`
}

type dcActivity struct {
	ID            int64      `json:"id"`
	CreatedDate   int64      `json:"createdDate"`
	User          dcUser     `json:"user"`
	Action        string     `json:"action"`
	CommentAction string     `json:"commentAction"`
	Comment       *dcComment `json:"comment"`
	CommentAnchor *dcAnchor  `json:"commentAnchor"`
}

func (u dcUser) user() User {
	login := u.Slug
	if login == "" {
		login = u.Name
	}
	return User{ID: strconv.FormatInt(u.ID, 10), Login: login, Name: u.DisplayName, Email: u.EmailAddress}
}

func ms(v int64) time.Time {
	if v == 0 {
		return time.Time{}
	}
	return time.UnixMilli(v).UTC()
}

func (a *dcAPI) whoami(ctx context.Context) (string, error) {
	var p struct {
		Version     string `json:"version"`
		DisplayName string `json:"displayName"`
	}
	if _, err := a.c.get(ctx, "GET /rest/api/1.0/application-properties", "rest/api/1.0/application-properties", nil, &p); err != nil {
		return "", err
	}
	return strings.TrimSpace(p.DisplayName + " " + p.Version), nil
}

func (a *dcAPI) projects(ctx context.Context, key string) ([]Project, error) {
	var p dcProject
	if _, err := a.c.get(ctx, "project "+key, "rest/api/1.0/projects/"+url.PathEscape(key), nil, &p); err != nil {
		return nil, err
	}
	return []Project{{ID: strconv.FormatInt(p.ID, 10), Key: p.Key, Name: p.Name, Description: p.Description,
		Private: !p.Public, HTMLURL: p.Links.self()}}, nil
}

func (a *dcAPI) ownerRepos(ctx context.Context, key string) ([]repoRef, error) {
	var out []repoRef
	seen := map[int64]bool{}
	_, err := dcPages(ctx, a.c, "repos of project "+key, "rest/api/1.0/projects/"+url.PathEscape(key)+"/repos", nil, func(rs []dcRepo) bool {
		for _, r := range rs {
			if !seen[r.ID] {
				seen[r.ID] = true
				out = append(out, repoRef{owner: key, slug: r.Slug})
			}
		}
		return true
	})
	return out, err
}

func (a *dcAPI) repoPath(owner, slug string) string {
	return "rest/api/1.0/projects/" + url.PathEscape(owner) + "/repos/" + url.PathEscape(slug)
}

func (a *dcAPI) repo(ctx context.Context, ref repoRef) (Repo, time.Time, error) {
	var r dcRepo
	d, err := a.c.get(ctx, "repo "+ref.String(), a.repoPath(ref.owner, ref.slug), nil, &r)
	if err != nil {
		return Repo{}, d, err
	}
	key := r.Project.Key
	if key == "" {
		key = ref.owner
	}
	out := Repo{ID: strconv.FormatInt(r.ID, 10), FullName: key + "/" + r.Slug, Owner: key, Slug: r.Slug, Name: r.Name,
		Project: key, Description: r.Description, Private: !r.Public, Fork: r.Origin != nil, HTMLURL: r.Links.self()}
	for _, l := range r.Links.Clone {
		if l.Name == "http" || l.Name == "https" {
			out.CloneURL = stripUser(l.Href)
		}
	}
	return out, d, nil
}

// pulls reads every pull request (state=ALL). Data Center documents
// order=NEWEST without saying which date it sorts by, so the listing is
// never cut short by the cursor: every page is read and the cursor picks.
func (a *dcAPI) pulls(ctx context.Context, r Repo, _ time.Time) ([]PullRequest, error) {
	var out []PullRequest
	seen := map[int64]bool{}
	q := url.Values{"state": {"ALL"}, "order": {"NEWEST"}}
	_, err := dcPages(ctx, a.c, "pull requests of "+r.FullName, a.repoPath(r.Owner, r.Slug)+"/pull-requests", q, func(ps []dcPull) bool {
		for _, p := range ps {
			if !seen[p.ID] {
				seen[p.ID] = true
				out = append(out, a.pull(r, p))
			}
		}
		return true
	})
	return out, err
}

func (a *dcAPI) canReadPulls(ctx context.Context, r Repo) error {
	var pg struct{}
	_, err := a.c.get(ctx, "pull requests of "+r.FullName, a.repoPath(r.Owner, r.Slug)+"/pull-requests", url.Values{"limit": {"1"}, "state": {"ALL"}}, &pg)
	return err
}

func (a *dcAPI) pull(r Repo, p dcPull) PullRequest {
	pr := PullRequest{ID: p.ID, Repo: r.FullName, Title: p.Title, Body: p.Description, State: p.State, Draft: p.Draft,
		Author: p.Author.User.user(), Reviewers: []string{}, CreatedAt: ms(p.CreatedDate), UpdatedAt: ms(p.UpdatedDate),
		Head: p.FromRef.DisplayID, HeadSHA: p.FromRef.LatestCommit, Base: p.ToRef.DisplayID,
		CommentCount: p.Properties.CommentCount, HTMLURL: p.Links.self()}
	if p.ClosedDate != 0 {
		t := ms(p.ClosedDate)
		pr.ClosedAt = &t
	}
	if p.Properties.MergeCommit != nil {
		pr.MergeSHA = p.Properties.MergeCommit.ID
	}
	for _, rv := range p.Reviewers {
		pr.Reviewers = append(pr.Reviewers, rv.User.user().Login)
	}
	return pr
}

// activity reads the pull request's activities: APPROVED, UNAPPROVED and
// REVIEWED (Data Center's "needs work") are reviews; COMMENTED carries the
// comment as it is now, with its replies nested.
func (a *dcAPI) activity(ctx context.Context, r Repo, pr int64) ([]Review, []Comment, error) {
	var reviews []Review
	var comments []Comment
	seen := map[int64]bool{}
	var walk func(c *dcComment, parent int64, anchor *dcAnchor)
	walk = func(c *dcComment, parent int64, anchor *dcAnchor) {
		if seen[c.ID] {
			return
		}
		seen[c.ID] = true
		if c.Anchor != nil {
			anchor = c.Anchor
		}
		cm := Comment{ID: c.ID, Repo: r.FullName, PullRequest: pr, ParentID: parent, Author: c.Author.user(), Body: c.Text,
			CreatedAt: ms(c.CreatedDate), UpdatedAt: ms(c.UpdatedDate)}
		if cm.UpdatedAt.IsZero() {
			cm.UpdatedAt = cm.CreatedAt
		}
		if anchor != nil {
			cm.Path, cm.Line = anchor.Path, anchor.Line
		}
		comments = append(comments, cm)
		for i := range c.Comments {
			walk(&c.Comments[i], c.ID, anchor)
		}
	}
	what := fmt.Sprintf("activities of %s#%d", r.FullName, pr)
	path := a.repoPath(r.Owner, r.Slug) + "/pull-requests/" + strconv.FormatInt(pr, 10) + "/activities"
	_, err := dcPages(ctx, a.c, what, path, nil, func(as []dcActivity) bool {
		for _, ac := range as {
			state := map[string]string{"APPROVED": "APPROVED", "UNAPPROVED": "UNAPPROVED", "REVIEWED": "CHANGES_REQUESTED"}[ac.Action]
			switch {
			case state != "":
				reviews = append(reviews, Review{ID: fmt.Sprintf("%s:%d:%d", r.ID, pr, ac.ID), Repo: r.FullName, PullRequest: pr,
					Author: ac.User.user(), State: state, SubmittedAt: ms(ac.CreatedDate)})
			case ac.Action == "COMMENTED" && ac.Comment != nil:
				if ac.CommentAction == "DELETED" {
					// The log keeps the deleted comment's last text.
					if !seen[ac.Comment.ID] {
						seen[ac.Comment.ID] = true
						comments = append(comments, Comment{ID: ac.Comment.ID, Repo: r.FullName, PullRequest: pr,
							Author: ac.Comment.Author.user(), Deleted: true, CreatedAt: ms(ac.Comment.CreatedDate), UpdatedAt: ms(ac.CreatedDate)})
					}
					continue
				}
				walk(ac.Comment, 0, ac.CommentAnchor)
			}
		}
		return true
	})
	return reviews, comments, err
}

// cloneURL is <url>/scm/<project>/<slug>.git, Data Center's HTTP clone
// address, built from the configured url (the credentials go only there).
func (a *dcAPI) cloneURL(r Repo) string {
	return a.c.b.base.String() + "/scm/" + url.PathEscape(strings.ToLower(r.Owner)) + "/" + url.PathEscape(r.Slug) + ".git"
}

// gitAuth: Basic with username and token, or the HTTP access token as a
// Bearer token, which Data Center takes for git over HTTP as for REST.
func (a *dcAPI) gitAuth() string {
	if u := a.c.b.cfg.Username; u != "" {
		return "Basic " + base64.StdEncoding.EncodeToString([]byte(u+":"+string(a.c.b.cfg.Token)))
	}
	return "Bearer " + string(a.c.b.cfg.Token)
}
