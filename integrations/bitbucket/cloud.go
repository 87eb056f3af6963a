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

// cloudAPIClient speaks Bitbucket Cloud's REST API 2.0
// (https://developer.atlassian.com/cloud/bitbucket/rest/).
type cloudAPIClient struct{ c *client }

// The shapes of Cloud's answers, as far as they are read (the OpenAPI
// document's "account", "project", "repository", "pullrequest" and
// "pullrequest_comment" schemas).
type cloudAccount struct {
	UUID        string `json:"uuid"`
	AccountID   string `json:"account_id"`
	Nickname    string `json:"nickname"`
	DisplayName string `json:"display_name"`
}

type cloudLink struct {
	Href string `json:"href"`
	Name string `json:"name"`
}

type cloudLinks struct {
	HTML  cloudLink   `json:"html"`
	Clone []cloudLink `json:"clone"`
}

type cloudProject struct {
	UUID        string     `json:"uuid"`
	Key         string     `json:"key"`
	Name        string     `json:"name"`
	Description string     `json:"description"`
	IsPrivate   bool       `json:"is_private"`
	Links       cloudLinks `json:"links"`
}

type cloudRepo struct {
	UUID        string                 `json:"uuid"`
	FullName    string                 `json:"full_name"`
	Slug        string                 `json:"slug"`
	Name        string                 `json:"name"`
	Description string                 `json:"description"`
	IsPrivate   bool                   `json:"is_private"`
	Parent      *struct{}              `json:"parent"`
	MainBranch  *struct{ Name string } `json:"mainbranch"`
	Project     *cloudProject          `json:"project"`
	Links       cloudLinks             `json:"links"`
	CreatedOn   *time.Time             `json:"created_on"`
	UpdatedOn   *time.Time             `json:"updated_on"`
}

type cloudRef struct {
	Branch struct {
		Name string `json:"name"`
	} `json:"branch"`
	Commit *struct {
		Hash string `json:"hash"`
	} `json:"commit"`
}

type cloudPull struct {
	ID           int64                  `json:"id"`
	Title        string                 `json:"title"`
	Description  string                 `json:"description"`
	State        string                 `json:"state"`
	Draft        bool                   `json:"draft"`
	Author       cloudAccount           `json:"author"`
	Source       cloudRef               `json:"source"`
	Destination  cloudRef               `json:"destination"`
	MergeCommit  *struct{ Hash string } `json:"merge_commit"`
	CommentCount int                    `json:"comment_count"`
	Reviewers    []cloudAccount         `json:"reviewers"`
	CreatedOn    time.Time              `json:"created_on"`
	UpdatedOn    time.Time              `json:"updated_on"`
	Links        cloudLinks             `json:"links"`
}

type cloudComment struct {
	ID        int64                `json:"id"`
	CreatedOn time.Time            `json:"created_on"`
	UpdatedOn *time.Time           `json:"updated_on"`
	Content   struct{ Raw string } `json:"content"`
	User      cloudAccount         `json:"user"`
	Deleted   bool                 `json:"deleted"`
	Parent    *struct{ ID int64 }  `json:"parent"`
	Inline    *struct {
		Path string `json:"path"`
		From *int   `json:"from"`
		To   *int   `json:"to"`
	} `json:"inline"`
}

// cloudActivity is one entry of a pull request's activity log: exactly one
// of its members is set.
type cloudActivity struct {
	Comment  *cloudComment `json:"comment"`
	Approval *struct {
		Date time.Time    `json:"date"`
		User cloudAccount `json:"user"`
	} `json:"approval"`
	ChangesRequest *struct {
		Date time.Time    `json:"date"`
		User cloudAccount `json:"user"`
	} `json:"changes_request"`
}

func (a cloudAccount) user() User {
	return User{ID: a.UUID, Login: a.Nickname, Name: a.DisplayName}
}

func (a *cloudAPIClient) whoami(ctx context.Context) (string, error) {
	var u cloudAccount
	if _, err := a.c.get(ctx, "GET /2.0/user", "2.0/user", nil, &u); err != nil {
		return "", err
	}
	return u.DisplayName, nil
}

func (a *cloudAPIClient) projects(ctx context.Context, ws string) ([]Project, error) {
	var out []Project
	_, err := cloudPages(ctx, a.c, "projects of workspace "+ws, "2.0/workspaces/"+url.PathEscape(ws)+"/projects",
		url.Values{"pagelen": {strconv.Itoa(min(pageSize, 100))}}, func(ps []cloudProject) bool {
			for _, p := range ps {
				out = append(out, Project{ID: p.UUID, Key: p.Key, Name: p.Name, Description: p.Description,
					Workspace: ws, Private: p.IsPrivate, HTMLURL: p.Links.HTML.Href})
			}
			return true
		})
	return out, err
}

func (a *cloudAPIClient) ownerRepos(ctx context.Context, ws string) ([]repoRef, error) {
	var out []repoRef
	seen := map[string]bool{}
	_, err := cloudPages(ctx, a.c, "repos of workspace "+ws, "2.0/repositories/"+url.PathEscape(ws),
		url.Values{"pagelen": {strconv.Itoa(min(pageSize, 100))}, "sort": {"slug"}}, func(rs []cloudRepo) bool {
			for _, r := range rs {
				if !seen[r.UUID] {
					seen[r.UUID] = true
					out = append(out, repoRef{owner: ws, slug: r.Slug})
				}
			}
			return true
		})
	return out, err
}

func (a *cloudAPIClient) repo(ctx context.Context, ref repoRef) (Repo, time.Time, error) {
	var r cloudRepo
	d, err := a.c.get(ctx, "repo "+ref.String(), "2.0/repositories/"+url.PathEscape(ref.owner)+"/"+url.PathEscape(ref.slug), nil, &r)
	if err != nil {
		return Repo{}, d, err
	}
	owner, _, _ := strings.Cut(r.FullName, "/")
	if owner == "" {
		owner = ref.owner
	}
	out := Repo{ID: r.UUID, FullName: owner + "/" + r.Slug, Owner: owner, Slug: r.Slug, Name: r.Name,
		Description: r.Description, Private: r.IsPrivate, Fork: r.Parent != nil, HTMLURL: r.Links.HTML.Href,
		CreatedAt: utcPtr(r.CreatedOn), UpdatedAt: utcPtr(r.UpdatedOn)}
	if r.Project != nil {
		out.Project = r.Project.Key
	}
	if r.MainBranch != nil {
		out.DefaultBranch = r.MainBranch.Name
	}
	for _, l := range r.Links.Clone {
		if l.Name == "https" || l.Name == "http" {
			out.CloneURL = stripUser(l.Href)
		}
	}
	return out, d, nil
}

// pulls reads the pull requests newest update first (sort=-updated_on):
// an update moves a pull request to the front, so while paging others can
// be seen twice (dropped by id), never skipped.
func (a *cloudAPIClient) pulls(ctx context.Context, r Repo, floor time.Time) ([]PullRequest, error) {
	var out []PullRequest
	seen := map[int64]bool{}
	q := url.Values{"state": {"OPEN", "MERGED", "DECLINED", "SUPERSEDED"}, "sort": {"-updated_on"},
		"pagelen": {strconv.Itoa(min(pageSize, 50))}}
	_, err := cloudPages(ctx, a.c, "pull requests of "+r.FullName, a.repoPath(r)+"/pullrequests", q, func(ps []cloudPull) bool {
		for _, p := range ps {
			if seen[p.ID] {
				continue
			}
			seen[p.ID] = true
			out = append(out, a.pull(r, p))
		}
		return len(ps) == 0 || floor.IsZero() || !ps[len(ps)-1].UpdatedOn.Before(floor)
	})
	return out, err
}

func (a *cloudAPIClient) canReadPulls(ctx context.Context, r Repo) error {
	var pg struct{}
	_, err := a.c.get(ctx, "pull requests of "+r.FullName, a.repoPath(r)+"/pullrequests", url.Values{"pagelen": {"1"}}, &pg)
	return err
}

func (a *cloudAPIClient) pull(r Repo, p cloudPull) PullRequest {
	pr := PullRequest{ID: p.ID, Repo: r.FullName, Title: p.Title, Body: p.Description, State: p.State, Draft: p.Draft,
		Author: p.Author.user(), Reviewers: []string{}, CreatedAt: p.CreatedOn.UTC(), UpdatedAt: p.UpdatedOn.UTC(),
		Head: p.Source.Branch.Name, Base: p.Destination.Branch.Name, CommentCount: p.CommentCount, HTMLURL: p.Links.HTML.Href}
	if p.Source.Commit != nil {
		pr.HeadSHA = p.Source.Commit.Hash
	}
	if p.MergeCommit != nil {
		pr.MergeSHA = p.MergeCommit.Hash
	}
	for _, rv := range p.Reviewers {
		pr.Reviewers = append(pr.Reviewers, rv.Nickname)
	}
	return pr
}

func (a *cloudAPIClient) repoPath(r Repo) string {
	return "2.0/repositories/" + url.PathEscape(r.Owner) + "/" + url.PathEscape(r.Slug)
}

// activity reads the pull request's activity log: approvals, requests for
// changes and comments (the last state of each comment: the log holds the
// comment as it is now).
func (a *cloudAPIClient) activity(ctx context.Context, r Repo, pr int64) ([]Review, []Comment, error) {
	var reviews []Review
	var comments []Comment
	seenC := map[int64]bool{}
	seenR := map[string]bool{}
	what := fmt.Sprintf("activity of %s#%d", r.FullName, pr)
	path := a.repoPath(r) + "/pullrequests/" + strconv.FormatInt(pr, 10) + "/activity"
	review := func(state string, date time.Time, u cloudAccount) {
		id := fmt.Sprintf("%s:%d:%s:%s:%s", r.ID, pr, strings.ToLower(state), u.UUID, date.UTC().Format(time.RFC3339Nano))
		if seenR[id] {
			return
		}
		seenR[id] = true
		reviews = append(reviews, Review{ID: id, Repo: r.FullName, PullRequest: pr, Author: u.user(), State: state, SubmittedAt: date.UTC()})
	}
	_, err := cloudPages(ctx, a.c, what, path, url.Values{"pagelen": {strconv.Itoa(min(pageSize, 50))}}, func(as []cloudActivity) bool {
		for _, ac := range as {
			switch {
			case ac.Approval != nil:
				review("APPROVED", ac.Approval.Date, ac.Approval.User)
			case ac.ChangesRequest != nil:
				review("CHANGES_REQUESTED", ac.ChangesRequest.Date, ac.ChangesRequest.User)
			case ac.Comment != nil && !seenC[ac.Comment.ID]:
				seenC[ac.Comment.ID] = true
				comments = append(comments, a.comment(r, pr, ac.Comment))
			}
		}
		return true
	})
	return reviews, comments, err
}

func (a *cloudAPIClient) comment(r Repo, pr int64, c *cloudComment) Comment {
	out := Comment{ID: c.ID, Repo: r.FullName, PullRequest: pr, Author: c.User.user(), Body: c.Content.Raw,
		Deleted: c.Deleted, CreatedAt: c.CreatedOn.UTC(), UpdatedAt: c.CreatedOn.UTC()}
	if c.UpdatedOn != nil {
		out.UpdatedAt = c.UpdatedOn.UTC()
	}
	if c.Parent != nil {
		out.ParentID = c.Parent.ID
	}
	if c.Inline != nil {
		out.Path = c.Inline.Path
		if c.Inline.To != nil {
			out.Line = *c.Inline.To
		} else if c.Inline.From != nil {
			out.Line = *c.Inline.From
		}
	}
	return out
}

// webBase is where Cloud serves git: bitbucket.org for the public API,
// otherwise (a proxy, a test server) the configured url's own host.
func (a *cloudAPIClient) webBase() string {
	b := a.c.b.base
	if b.Host == "api.bitbucket.org" {
		return "https://bitbucket.org"
	}
	return b.String()
}

// cloneURL is <web>/<workspace>/<slug>.git, built from the configured
// url rather than taken from the answer, so that the credentials go only
// where the config says.
func (a *cloudAPIClient) cloneURL(r Repo) string {
	return a.webBase() + "/" + url.PathEscape(r.Owner) + "/" + url.PathEscape(r.Slug) + ".git"
}

// gitAuth: Basic with the username and token, or for an access token
// (repository, project or workspace) the user name x-token-auth, as
// Bitbucket Cloud documents for git over HTTPS.
func (a *cloudAPIClient) gitAuth() string {
	user := a.c.b.cfg.Username
	if user == "" {
		user = "x-token-auth"
	}
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+string(a.c.b.cfg.Token)))
}

func utcPtr(t *time.Time) *time.Time {
	if t == nil || t.IsZero() {
		return nil
	}
	u := t.UTC()
	return &u
}

// stripUser drops the user name Cloud puts in clone links
// (https://alice@bitbucket.org/...).
func stripUser(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return raw
	}
	u.User = nil
	return u.String()
}
