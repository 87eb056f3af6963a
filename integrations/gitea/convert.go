package gitea

import (
	"net/url"
	"path"
	"strconv"
	"strings"
	"time"

	sdk "code.gitea.io/sdk/gitea"

	"courier/integrations/forge"
)

// User types in forge.User.Type.
const (
	typeUser = "User"
	typeBot  = "Bot"
)

// actionsBotID is the id Gitea gives its Actions bot (gitea-actions).
const actionsBotID = -2

// author is the short form of a user on another object: id and login.
func author(u *sdk.User) forge.User {
	if u == nil {
		return forge.User{}
	}
	a := forge.User{ID: u.ID, Login: u.UserName}
	if u.ID == actionsBotID {
		a.Type = typeBot
	}
	return a
}

// account is a user record: the short form plus name, email and type.
func account(u *sdk.User) forge.User {
	a := author(u)
	a.Name, a.Email = u.FullName, u.Email
	if a.Type == "" {
		a.Type = typeUser
	}
	return a
}

func repoRecord(r *sdk.Repository) forge.Repo {
	owner := ""
	if r.Owner != nil {
		owner = r.Owner.UserName
	}
	return forge.Repo{
		ID:            r.ID,
		FullName:      r.FullName,
		Owner:         owner,
		Name:          r.Name,
		Description:   r.Description,
		Private:       r.Private,
		Fork:          r.Fork,
		Archived:      r.Archived,
		DefaultBranch: r.DefaultBranch,
		HTMLURL:       r.HTMLURL,
		CloneURL:      r.CloneURL,
		CreatedAt:     r.Created.UTC(),
		UpdatedAt:     r.Updated.UTC(),
	}
}

func pullRecord(repo string, p *sdk.PullRequest) forge.PullRequest {
	pr := forge.PullRequest{
		ID:        p.ID,
		Number:    int(p.Index),
		Repo:      repo,
		Title:     p.Title,
		Body:      p.Body,
		State:     string(p.State),
		Draft:     p.Draft,
		Merged:    p.HasMerged,
		MergedAt:  utcPtr(p.Merged),
		ClosedAt:  utcPtr(p.Closed),
		CreatedAt: timeOf(p.Created),
		UpdatedAt: timeOf(p.Updated),
		Author:    author(p.Poster),
		Labels:    labels(p.Labels),
		Assignees: logins(p.Assignees),
		HTMLURL:   p.HTMLURL,
	}
	if p.Head != nil {
		pr.Head, pr.HeadSHA = p.Head.Ref, p.Head.Sha
	}
	if p.Base != nil {
		pr.Base = p.Base.Ref
	}
	if p.MergedCommitID != nil {
		pr.MergeSHA = *p.MergedCommitID
	}
	return pr
}

// reviewState maps Gitea's review states to the github integration's.
// ok is false for what is not a submitted review (a pending draft, a
// review request). superseded tells that the same reviewer approved or
// requested changes later: Gitea then flags this review dismissed too, but
// it was not dismissed, so it keeps its state, as on GitHub; a review
// dismissed and not superseded was dismissed by someone: DISMISSED.
func reviewState(r *sdk.PullReview, superseded bool) (string, bool) {
	var state string
	switch r.State {
	case sdk.ReviewStateApproved:
		state = "APPROVED"
	case sdk.ReviewStateRequestChanges:
		state = "CHANGES_REQUESTED"
	case sdk.ReviewStateComment:
		state = "COMMENTED"
	default:
		return "", false
	}
	if r.Dismissed && !superseded {
		state = "DISMISSED"
	}
	return state, true
}

// lastVerdicts returns, per reviewer id, the id of their last approval or
// request for changes.
func lastVerdicts(rvs []*sdk.PullReview) map[int64]int64 {
	out := map[int64]int64{}
	for _, r := range rvs {
		if r.Reviewer == nil || (r.State != sdk.ReviewStateApproved && r.State != sdk.ReviewStateRequestChanges) {
			continue
		}
		out[r.Reviewer.ID] = max(out[r.Reviewer.ID], r.ID)
	}
	return out
}

func reviewRecord(repo string, number int, r *sdk.PullReview, state string) forge.Review {
	return forge.Review{
		ID:          r.ID,
		Repo:        repo,
		PullRequest: number,
		Author:      author(r.Reviewer),
		State:       state,
		Body:        r.Body,
		CommitID:    r.CommitID,
		SubmittedAt: r.Submitted.UTC(),
	}
}

func reviewCommentRecord(repo string, number int, c *sdk.PullReviewComment) forge.ReviewComment {
	line := c.LineNum
	if line == 0 {
		line = c.OldLineNum
	}
	return forge.ReviewComment{
		ID:          c.ID,
		Repo:        repo,
		PullRequest: number,
		ReviewID:    c.ReviewID,
		Author:      author(c.Reviewer),
		Body:        c.Body,
		Path:        c.Path,
		Line:        int(line),
		CommitID:    c.CommitID,
		CreatedAt:   c.Created.UTC(),
		UpdatedAt:   c.Updated.UTC(),
	}
}

func issueRecord(repo string, i *sdk.Issue) forge.Issue {
	return forge.Issue{
		ID:        i.ID,
		Number:    int(i.Index),
		Repo:      repo,
		Title:     i.Title,
		Body:      i.Body,
		State:     string(i.State),
		Author:    author(i.Poster),
		Labels:    labels(i.Labels),
		Assignees: logins(i.Assignees),
		Comments:  i.Comments,
		ClosedAt:  utcPtr(i.Closed),
		CreatedAt: i.Created.UTC(),
		UpdatedAt: i.Updated.UTC(),
		HTMLURL:   i.HTMLURL,
	}
}

func issueCommentRecord(repo string, c *sdk.Comment) forge.IssueComment {
	return forge.IssueComment{
		ID:        c.ID,
		Repo:      repo,
		Issue:     commentIssue(c),
		Author:    author(c.Poster),
		Body:      c.Body,
		CreatedAt: c.Created.UTC(),
		UpdatedAt: c.Updated.UTC(),
	}
}

// commentIssue is the number of the issue or pull request a comment is
// on, from its issue_url (issues), pull_request_url (pull requests) or
// html_url (.../issues/7#issuecomment-12); 0 when none says.
func commentIssue(c *sdk.Comment) int {
	for _, raw := range []string{c.IssueURL, c.PRURL, c.HTMLURL} {
		if raw == "" {
			continue
		}
		u, err := url.Parse(raw)
		if err != nil {
			continue
		}
		dir, last := path.Split(strings.TrimSuffix(u.Path, "/"))
		kind := path.Base(dir)
		if kind != "issues" && kind != "pulls" {
			continue
		}
		if n, err := strconv.Atoi(last); err == nil {
			return n
		}
	}
	return 0
}

func labels(ls []*sdk.Label) []string {
	out := make([]string, 0, len(ls))
	for _, l := range ls {
		if l != nil {
			out = append(out, l.Name)
		}
	}
	return out
}

func logins(us []*sdk.User) []string {
	out := make([]string, 0, len(us))
	for _, u := range us {
		if u != nil {
			out = append(out, u.UserName)
		}
	}
	return out
}

func utcPtr(t *time.Time) *time.Time {
	if t == nil || t.IsZero() {
		return nil
	}
	u := t.UTC()
	return &u
}
