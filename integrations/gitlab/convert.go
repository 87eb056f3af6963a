package gitlab

import (
	gl "gitlab.com/gitlab-org/api/client-go/v2"

	"courier/integrations/forge"
)

// User types in forge.User.Type.
const (
	typeUser = "User"
	typeBot  = "Bot"
)

// Review states, as the github integration names them.
const (
	stateApproved         = "APPROVED"
	stateChangesRequested = "CHANGES_REQUESTED"
	stateCommented        = "COMMENTED"
)

// Noteable types in issue_comment records.
const (
	noteableIssue        = "Issue"
	noteableMergeRequest = "MergeRequest"
)

func basicUser(u *gl.BasicUser) forge.User {
	if u == nil {
		return forge.User{}
	}
	return forge.User{ID: u.ID, Login: u.Username}
}

func account(u *gl.User) forge.User {
	a := forge.User{ID: u.ID, Login: u.Username, Name: u.Name, Email: u.PublicEmail, Type: typeUser}
	if a.Email == "" {
		a.Email = u.Email // visible to administrators only
	}
	if u.Bot {
		a.Type = typeBot
	}
	return a
}

func member(m *gl.GroupMember) forge.User {
	a := forge.User{ID: m.ID, Login: m.Username, Name: m.Name, Email: m.PublicEmail, Type: typeUser}
	if a.Email == "" {
		a.Email = m.Email // group managed accounts, for their owners
	}
	return a
}

func repoRecord(p *gl.Project) forge.Repo {
	r := forge.Repo{
		ID:            p.ID,
		FullName:      p.PathWithNamespace,
		Name:          p.Path,
		Description:   p.Description,
		Private:       p.Visibility != gl.PublicVisibility,
		Fork:          p.ForkedFromProject != nil,
		Archived:      p.Archived,
		DefaultBranch: p.DefaultBranch,
		HTMLURL:       p.WebURL,
		CloneURL:      p.HTTPURLToRepo,
		CreatedAt:     timeOf(p.CreatedAt),
		UpdatedAt:     timeOf(p.UpdatedAt),
	}
	if p.Namespace != nil {
		r.Owner = p.Namespace.FullPath
	}
	if r.UpdatedAt.IsZero() {
		// updated_at came with GitLab 17.x; before, last_activity_at.
		r.UpdatedAt = timeOf(p.LastActivityAt)
	}
	return r
}

// prState maps GitLab's opened, closed, merged and locked to open or
// closed, as on GitHub; merged sets Merged.
func prState(s string) string {
	if s == "opened" {
		return "open"
	}
	return "closed"
}

func pullRecord(repo string, m *gl.BasicMergeRequest) forge.PullRequest {
	pr := forge.PullRequest{
		ID:        m.ID,
		Number:    int(m.IID),
		Repo:      repo,
		Title:     m.Title,
		Body:      m.Description,
		State:     prState(m.State),
		Draft:     m.Draft,
		Merged:    m.State == "merged",
		MergedAt:  utcPtr(m.MergedAt),
		ClosedAt:  utcPtr(m.ClosedAt),
		CreatedAt: timeOf(m.CreatedAt),
		UpdatedAt: timeOf(m.UpdatedAt),
		Author:    basicUser(m.Author),
		Head:      m.SourceBranch,
		HeadSHA:   m.SHA,
		Base:      m.TargetBranch,
		MergeSHA:  m.MergeCommitSHA,
		Labels:    labels(m.Labels),
		Assignees: logins(m.Assignees),
		HTMLURL:   m.WebURL,
	}
	if pr.MergeSHA == "" {
		pr.MergeSHA = m.SquashCommitSHA
	}
	if pr.Merged && pr.ClosedAt == nil {
		// GitLab leaves closed_at empty on a merge; GitHub closes it then.
		pr.ClosedAt = pr.MergedAt
	}
	return pr
}

func issueRecord(repo string, i *gl.Issue) forge.Issue {
	is := forge.Issue{
		ID:        i.ID,
		Number:    int(i.IID),
		Repo:      repo,
		Title:     i.Title,
		Body:      i.Description,
		State:     prState(i.State),
		Labels:    labels(i.Labels),
		Comments:  int(i.UserNotesCount),
		ClosedAt:  utcPtr(i.ClosedAt),
		CreatedAt: timeOf(i.CreatedAt),
		UpdatedAt: timeOf(i.UpdatedAt),
		HTMLURL:   i.WebURL,
		Assignees: []string{},
	}
	if i.Author != nil {
		is.Author = forge.User{ID: i.Author.ID, Login: i.Author.Username}
	}
	for _, a := range i.Assignees {
		if a != nil {
			is.Assignees = append(is.Assignees, a.Username)
		}
	}
	return is
}

// IssueComment is an issue_comment record: forge's, plus which kind of
// object it is on, since GitLab numbers issues and merge requests apart
// (issue 3 and merge request !3 are different objects).
type IssueComment struct {
	forge.IssueComment
	NoteableType string `json:"noteable_type"` // Issue or MergeRequest
}

func noteAuthor(n *gl.Note) forge.User {
	return forge.User{ID: n.Author.ID, Login: n.Author.Username}
}

func issueCommentRecord(repo string, number int64, kind string, n *gl.Note) IssueComment {
	return IssueComment{IssueComment: forge.IssueComment{
		ID:        n.ID,
		Repo:      repo,
		Issue:     int(number),
		Author:    noteAuthor(n),
		Body:      n.Body,
		CreatedAt: timeOf(n.CreatedAt),
		UpdatedAt: timeOf(n.UpdatedAt),
	}, NoteableType: kind}
}

func diffNoteRecord(repo string, number int64, n *gl.Note) forge.ReviewComment {
	rc := forge.ReviewComment{
		ID:          n.ID,
		Repo:        repo,
		PullRequest: int(number),
		Author:      noteAuthor(n),
		Body:        n.Body,
		CommitID:    n.CommitID,
		CreatedAt:   timeOf(n.CreatedAt),
		UpdatedAt:   timeOf(n.UpdatedAt),
	}
	if p := n.Position; p != nil {
		rc.Path, rc.Line = p.NewPath, int(p.NewLine)
		if rc.Path == "" {
			rc.Path = p.OldPath
		}
		if rc.Line == 0 {
			rc.Line = int(p.OldLine)
		}
		if p.HeadSHA != "" {
			rc.CommitID = p.HeadSHA
		}
	}
	return rc
}

func labels(ls gl.Labels) []string {
	out := make([]string, 0, len(ls))
	return append(out, ls...)
}

func logins(us []*gl.BasicUser) []string {
	out := make([]string, 0, len(us))
	for _, u := range us {
		if u != nil {
			out = append(out, u.Username)
		}
	}
	return out
}
