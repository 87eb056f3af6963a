package github

import (
	"strconv"
	"strings"
	"time"

	gh "github.com/google/go-github/v92/github"

	"courier/integrations/forge"
)

// The conversions from go-github's types to the shared forge models.
// README.md lists every field.

func ts(t *gh.Timestamp) time.Time {
	if t == nil {
		return time.Time{}
	}
	return t.UTC()
}

func tsPtr(t *gh.Timestamp) *time.Time {
	if t == nil || t.IsZero() {
		return nil
	}
	u := t.UTC()
	return &u
}

func toUser(u *gh.User) forge.User {
	if u == nil {
		return forge.User{}
	}
	return forge.User{ID: u.GetID(), Login: u.GetLogin(), Name: u.GetName(), Email: u.GetEmail(), Type: u.GetType()}
}

func toRepo(r *gh.Repository) forge.Repo {
	return forge.Repo{
		ID:            r.GetID(),
		FullName:      r.GetFullName(),
		Owner:         r.GetOwner().GetLogin(),
		Name:          r.GetName(),
		Description:   r.GetDescription(),
		Private:       r.GetPrivate(),
		Fork:          r.GetFork(),
		Archived:      r.GetArchived(),
		DefaultBranch: r.GetDefaultBranch(),
		HTMLURL:       r.GetHTMLURL(),
		CloneURL:      r.GetCloneURL(),
		CreatedAt:     ts(r.CreatedAt),
		UpdatedAt:     ts(r.UpdatedAt),
	}
}

func labelNames(ls []*gh.Label) []string {
	out := make([]string, 0, len(ls))
	for _, l := range ls {
		out = append(out, l.GetName())
	}
	return out
}

func logins(us []*gh.User) []string {
	out := make([]string, 0, len(us))
	for _, u := range us {
		out = append(out, u.GetLogin())
	}
	return out
}

func toPullRequest(repo string, p *gh.PullRequest) forge.PullRequest {
	merged := p.GetMerged() || p.MergedAt != nil
	return forge.PullRequest{
		ID:        p.GetID(),
		Number:    p.GetNumber(),
		Repo:      repo,
		Title:     p.GetTitle(),
		Body:      p.GetBody(),
		State:     p.GetState(),
		Draft:     p.GetDraft(),
		Merged:    merged,
		MergedAt:  tsPtr(p.MergedAt),
		ClosedAt:  tsPtr(p.ClosedAt),
		CreatedAt: ts(p.CreatedAt),
		UpdatedAt: ts(p.UpdatedAt),
		Author:    toUser(p.User),
		Head:      p.GetHead().GetRef(),
		HeadSHA:   p.GetHead().GetSHA(),
		Base:      p.GetBase().GetRef(),
		MergeSHA:  mergeSHA(merged, p.GetMergeCommitSHA()),
		Labels:    labelNames(p.Labels),
		Assignees: logins(p.Assignees),
		HTMLURL:   p.GetHTMLURL(),
	}
}

// mergeSHA keeps merge_commit_sha only for a merged pull request: on an
// open one GitHub fills it with its test merge, which is in no branch.
func mergeSHA(merged bool, sha string) string {
	if !merged {
		return ""
	}
	return sha
}

func toReview(repo string, number int, r *gh.PullRequestReview) forge.Review {
	return forge.Review{
		ID:          r.GetID(),
		Repo:        repo,
		PullRequest: number,
		Author:      toUser(r.User),
		State:       r.GetState(),
		Body:        r.GetBody(),
		CommitID:    r.GetCommitID(),
		SubmittedAt: ts(r.SubmittedAt),
	}
}

func toReviewComment(repo string, number int, c *gh.PullRequestComment) forge.ReviewComment {
	line := c.GetLine()
	if c.Line == nil {
		line = c.GetOriginalLine() // outdated: the line where it was made
	}
	return forge.ReviewComment{
		ID:          c.GetID(),
		Repo:        repo,
		PullRequest: number,
		ReviewID:    c.GetPullRequestReviewID(),
		Author:      toUser(c.User),
		Body:        c.GetBody(),
		Path:        c.GetPath(),
		Line:        line,
		CommitID:    c.GetCommitID(),
		CreatedAt:   ts(c.CreatedAt),
		UpdatedAt:   ts(c.UpdatedAt),
	}
}

func toIssue(repo string, i *gh.Issue) forge.Issue {
	return forge.Issue{
		ID:        i.GetID(),
		Number:    i.GetNumber(),
		Repo:      repo,
		Title:     i.GetTitle(),
		Body:      i.GetBody(),
		State:     i.GetState(),
		Author:    toUser(i.User),
		Labels:    labelNames(i.Labels),
		Assignees: logins(i.Assignees),
		Comments:  i.GetComments(),
		ClosedAt:  tsPtr(i.ClosedAt),
		CreatedAt: ts(i.CreatedAt),
		UpdatedAt: ts(i.UpdatedAt),
		HTMLURL:   i.GetHTMLURL(),
	}
}

func toIssueComment(repo string, c *gh.IssueComment) forge.IssueComment {
	return forge.IssueComment{
		ID:        c.GetID(),
		Repo:      repo,
		Issue:     issueNumber(c.GetIssueURL()),
		Author:    toUser(c.User),
		Body:      c.GetBody(),
		CreatedAt: ts(c.CreatedAt),
		UpdatedAt: ts(c.UpdatedAt),
	}
}

// issueNumber reads the number at the end of an issue's API URL
// (".../repos/acme/api/issues/12"); 0 when there is none.
func issueNumber(u string) int {
	i := strings.LastIndexByte(u, '/')
	n, err := strconv.Atoi(u[i+1:])
	if err != nil {
		return 0
	}
	return n
}
