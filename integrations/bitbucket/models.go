package bitbucket

import (
	"context"
	"time"
)

// Model names: the forge models' names (integrations/forge) where the
// meaning is the same, and project.
const (
	ModelProject            = "project"
	ModelRepo               = "repo"
	ModelPullRequest        = "pull_request"
	ModelPullRequestReview  = "pull_request_review"
	ModelPullRequestComment = "pull_request_comment"
	modelCommit             = "commit"
)

// The records. Bitbucket Cloud identifies accounts, workspaces, projects
// and repositories by UUID, so their ids are strings here (unlike the
// forge models' numbers); Data Center's numeric ids are written as
// strings too, so that one backend schema fits both flavours. README.md
// lists every field.

// User is an account inside another record.
type User struct {
	ID    string `json:"id"`
	Login string `json:"login"`
	Name  string `json:"name"`
	Email string `json:"email,omitempty"`
}

// Project is a Cloud project (inside a workspace) or a Data Center project.
type Project struct {
	ID          string `json:"id"`
	Key         string `json:"key"`
	Name        string `json:"name"`
	Description string `json:"description"`
	Workspace   string `json:"workspace,omitempty"`
	Private     bool   `json:"private"`
	HTMLURL     string `json:"html_url"`
}

// Repo is a repository.
type Repo struct {
	ID            string     `json:"id"`
	FullName      string     `json:"full_name"` // workspace/slug or PROJECT/slug
	Owner         string     `json:"owner"`
	Slug          string     `json:"slug"`
	Name          string     `json:"name"`
	Project       string     `json:"project"`
	Description   string     `json:"description"`
	Private       bool       `json:"private"`
	Fork          bool       `json:"fork"`
	DefaultBranch string     `json:"default_branch,omitempty"`
	HTMLURL       string     `json:"html_url"`
	CloneURL      string     `json:"clone_url"`
	CreatedAt     *time.Time `json:"created_at"`
	UpdatedAt     *time.Time `json:"updated_at"`
}

// PullRequest is a pull request.
type PullRequest struct {
	ID           int64      `json:"id"`
	Repo         string     `json:"repo"`
	Title        string     `json:"title"`
	Body         string     `json:"body"`
	State        string     `json:"state"` // OPEN, MERGED, DECLINED, SUPERSEDED
	Draft        bool       `json:"draft"`
	Author       User       `json:"author"`
	Reviewers    []string   `json:"reviewers"`
	CreatedAt    time.Time  `json:"created_at"`
	UpdatedAt    time.Time  `json:"updated_at"`
	ClosedAt     *time.Time `json:"closed_at"`
	Head         string     `json:"head_ref"`
	HeadSHA      string     `json:"head_sha"`
	Base         string     `json:"base_ref"`
	MergeSHA     string     `json:"merge_commit_sha,omitempty"`
	CommentCount int        `json:"comment_count"`
	HTMLURL      string     `json:"html_url"`
}

// Review is an approval, a withdrawn approval or a request for changes.
type Review struct {
	ID          string    `json:"id"`
	Repo        string    `json:"repo"`
	PullRequest int64     `json:"pull_request"`
	Author      User      `json:"author"`
	State       string    `json:"state"` // APPROVED, UNAPPROVED, CHANGES_REQUESTED
	SubmittedAt time.Time `json:"submitted_at"`
}

// Comment is a comment on a pull request, general or on a line of its
// diff (path and line set).
type Comment struct {
	ID          int64     `json:"id"`
	Repo        string    `json:"repo"`
	PullRequest int64     `json:"pull_request"`
	ParentID    int64     `json:"parent_id,omitempty"`
	Author      User      `json:"author"`
	Body        string    `json:"body"`
	Path        string    `json:"path,omitempty"`
	Line        int       `json:"line,omitempty"`
	Deleted     bool      `json:"deleted"`
	CreatedAt   time.Time `json:"created_at"`
	UpdatedAt   time.Time `json:"updated_at"`
}

// repoRef names a repository: workspace or project key, and slug.
type repoRef struct{ owner, slug string }

func (r repoRef) String() string { return r.owner + "/" + r.slug }

// api is what the export needs of a flavour.
type api interface {
	// whoami names the credentials' account (validation).
	whoami(ctx context.Context) (string, error)
	// projects are an owner's project records: a workspace's projects, or
	// the Data Center project itself. It fails for an owner that does not
	// exist.
	projects(ctx context.Context, owner string) ([]Project, error)
	// ownerRepos lists an owner's repositories.
	ownerRepos(ctx context.Context, owner string) ([]repoRef, error)
	// repo reads one repository and the server's Date of the answer.
	repo(ctx context.Context, r repoRef) (Repo, time.Time, error)
	// pulls lists a repository's pull requests in every state; when the
	// flavour can, newest update first, stopping at the first page whose
	// last pull request was updated before floor.
	pulls(ctx context.Context, r Repo, floor time.Time) ([]PullRequest, error)
	// canReadPulls reads one page of pull requests (validation).
	canReadPulls(ctx context.Context, r Repo) error
	// activity returns a pull request's reviews and comments.
	activity(ctx context.Context, r Repo, pr int64) ([]Review, []Comment, error)
	// cloneURL is where git fetches the repository.
	cloneURL(r Repo) string
	// gitAuth is the Authorization header git sends.
	gitAuth() string
}
