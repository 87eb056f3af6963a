// Package forge holds what the forge integrations (GitHub, Gitea, GitLab,
// Bitbucket) share: the record models other systems rely on by name, the
// incremental cursor (update time, id as tie-breaker) and change hashes.
package forge

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Model names (PROTOCOL.md and issue 5: other systems rely on them).
const (
	ModelRepo               = "repo"
	ModelUser               = "user"
	ModelPullRequest        = "pull_request"
	ModelPullRequestReview  = "pull_request_review"
	ModelPullRequestComment = "pull_request_comment"
	ModelIssue              = "issue"
	ModelIssueComment       = "issue_comment"
)

// Repo is a repository.
type Repo struct {
	ID            int64     `json:"id"`
	FullName      string    `json:"full_name"` // owner/name
	Owner         string    `json:"owner"`
	Name          string    `json:"name"`
	Description   string    `json:"description"`
	Private       bool      `json:"private"`
	Fork          bool      `json:"fork"`
	Archived      bool      `json:"archived"`
	DefaultBranch string    `json:"default_branch"`
	HTMLURL       string    `json:"html_url"`
	CloneURL      string    `json:"clone_url"`
	CreatedAt     time.Time `json:"created_at"`
	UpdatedAt     time.Time `json:"updated_at"`
}

// User is an account.
type User struct {
	ID    int64  `json:"id"`
	Login string `json:"login"`
	Name  string `json:"name,omitempty"`
	Email string `json:"email,omitempty"`
	Type  string `json:"type,omitempty"` // User, Organization, Bot
}

// PullRequest is a pull (merge) request.
type PullRequest struct {
	ID        int64      `json:"id"`
	Number    int        `json:"number"`
	Repo      string     `json:"repo"`
	Title     string     `json:"title"`
	Body      string     `json:"body"`
	State     string     `json:"state"` // open, closed
	Draft     bool       `json:"draft"`
	Merged    bool       `json:"merged"`
	MergedAt  *time.Time `json:"merged_at"`
	ClosedAt  *time.Time `json:"closed_at"`
	CreatedAt time.Time  `json:"created_at"`
	UpdatedAt time.Time  `json:"updated_at"`
	Author    User       `json:"author"`
	Head      string     `json:"head_ref"`
	HeadSHA   string     `json:"head_sha"`
	Base      string     `json:"base_ref"`
	MergeSHA  string     `json:"merge_commit_sha,omitempty"`
	Labels    []string   `json:"labels"`
	Assignees []string   `json:"assignees"`
	HTMLURL   string     `json:"html_url"`
}

// Review is a pull request review.
type Review struct {
	ID          int64     `json:"id"`
	Repo        string    `json:"repo"`
	PullRequest int       `json:"pull_request"`
	Author      User      `json:"author"`
	State       string    `json:"state"` // APPROVED, CHANGES_REQUESTED, COMMENTED, ...
	Body        string    `json:"body"`
	CommitID    string    `json:"commit_id"`
	SubmittedAt time.Time `json:"submitted_at"`
}

// ReviewComment is a comment on a pull request's diff.
type ReviewComment struct {
	ID          int64     `json:"id"`
	Repo        string    `json:"repo"`
	PullRequest int       `json:"pull_request"`
	ReviewID    int64     `json:"review_id,omitempty"`
	Author      User      `json:"author"`
	Body        string    `json:"body"`
	Path        string    `json:"path"`
	Line        int       `json:"line,omitempty"`
	CommitID    string    `json:"commit_id"`
	CreatedAt   time.Time `json:"created_at"`
	UpdatedAt   time.Time `json:"updated_at"`
}

// Issue is an issue (not a pull request).
type Issue struct {
	ID        int64      `json:"id"`
	Number    int        `json:"number"`
	Repo      string     `json:"repo"`
	Title     string     `json:"title"`
	Body      string     `json:"body"`
	State     string     `json:"state"`
	Author    User       `json:"author"`
	Labels    []string   `json:"labels"`
	Assignees []string   `json:"assignees"`
	Comments  int        `json:"comments"`
	ClosedAt  *time.Time `json:"closed_at"`
	CreatedAt time.Time  `json:"created_at"`
	UpdatedAt time.Time  `json:"updated_at"`
	HTMLURL   string     `json:"html_url"`
}

// IssueComment is a comment on an issue or on a pull request's
// conversation.
type IssueComment struct {
	ID        int64     `json:"id"`
	Repo      string    `json:"repo"`
	Issue     int       `json:"issue"`
	Author    User      `json:"author"`
	Body      string    `json:"body"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
}

// Cursor is an incremental position: the last object emitted, by update
// time then id. APIs filter by "updated since" at second resolution, so
// objects updated in the same second as the cursor come back again; After
// drops exactly those already emitted, and nothing updated later is lost.
type Cursor struct {
	Updated time.Time
	ID      int64
}

// After reports whether an object is past the cursor.
func (c Cursor) After(updated time.Time, id int64) bool {
	if c.Updated.IsZero() {
		return true
	}
	u := updated.UTC()
	if !u.Equal(c.Updated) {
		return u.After(c.Updated)
	}
	return id > c.ID
}

// Advance moves the cursor to an emitted object if it is later.
func (c *Cursor) Advance(updated time.Time, id int64) {
	if c.After(updated, id) {
		c.Updated, c.ID = updated.UTC(), id
	}
}

// String is the token form: RFC 3339 with nanoseconds, a space, the id.
func (c Cursor) String() string {
	if c.Updated.IsZero() {
		return ""
	}
	return c.Updated.UTC().Format(time.RFC3339Nano) + " " + strconv.FormatInt(c.ID, 10)
}

// ParseCursor reads a token written by String; "" is the zero cursor.
func ParseCursor(s string) (Cursor, error) {
	if s == "" {
		return Cursor{}, nil
	}
	ts, id, ok := strings.Cut(s, " ")
	t, err := time.Parse(time.RFC3339Nano, ts)
	if !ok || err != nil {
		return Cursor{}, fmt.Errorf("bad cursor token %q", s)
	}
	n, err := strconv.ParseInt(id, 10, 64)
	if err != nil {
		return Cursor{}, fmt.Errorf("bad cursor token %q: %w", s, err)
	}
	return Cursor{Updated: t.UTC(), ID: n}, nil
}
