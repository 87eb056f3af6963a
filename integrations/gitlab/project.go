package gitlab

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	gl "gitlab.com/gitlab-org/api/client-go/v2"

	"courier/integrations/forge"
	"courier/integrations/git"
	"courier/sessions"
)

// modelCommit is the git integration's commit model, counted in the log.
const modelCommit = "commit"

// gitUser is the user name sent with the token to git over HTTP. GitLab
// takes any non-blank name with a personal, group or project access
// token, and "oauth2" with an OAuth token.
const gitUser = "oauth2"

// exportProject exports one project under its owner's session. failed
// reports an entity error (listed on the project's session); err ends the
// export.
func (g *GitLab) exportProject(ctx context.Context, c *gl.Client, os *sessions.Session, p *gl.Project) (failed bool, err error) {
	log := g.log.With().Str("project", p.PathWithNamespace).Logger()
	start := time.Now()
	ps := os.Track("project:" + p.PathWithNamespace)
	counts, err := g.syncProject(ctx, c, ps, p.PathWithNamespace)
	switch {
	case err == nil:
		ev := log.Info().Dur("took", time.Since(start))
		for _, m := range []string{forge.ModelRepo, forge.ModelPullRequest, forge.ModelPullRequestReview,
			forge.ModelPullRequestComment, forge.ModelIssue, forge.ModelIssueComment, modelCommit} {
			ev = ev.Int(m, counts[m])
		}
		ev.Msg("project exported")
		return false, ps.Done(ctx, "")
	case ctx.Err() != nil:
		return false, context.Cause(ctx)
	case isEntity(err):
		log.Error().Err(err).Msg("project failed")
		ps.Fail(err)
		return true, nil
	default:
		return false, err
	}
}

// syncProject sends the repo record, the merge requests (with their
// approvals, review states, diff notes and other notes) and the issues
// (with their notes) updated since the last export, then the new commits
// and the new or moved branches and tags.
func (g *GitLab) syncProject(ctx context.Context, c *gl.Client, ps *sessions.Session, path string) (map[string]int, error) {
	counts := map[string]int{}
	p, resp, err := c.Projects.GetProject(path, nil, gl.WithContext(ctx))
	if err := g.check("project "+path, resp, err); err != nil {
		return counts, err
	}
	// The horizon comes from this answer, received before any listing.
	hz := horizon(resp, time.Now())
	if err := g.exportRepoRecord(ctx, ps, p, counts); err != nil {
		return counts, err
	}
	ic, _, err := ps.Open(forge.ModelIssueComment)
	if err != nil {
		return counts, err
	}
	if p.MergeRequestsAccessLevel != gl.DisabledAccessControl {
		if err := g.exportMergeRequests(ctx, c, ps, ic, p, hz, counts); err != nil {
			return counts, err
		}
	}
	if p.IssuesAccessLevel != gl.DisabledAccessControl {
		if err := g.exportIssues(ctx, c, ps, ic, p, hz, counts); err != nil {
			return counts, err
		}
	}
	if err := ic.Done(ctx, ""); err != nil {
		return counts, err
	}
	if p.EmptyRepo || p.RepositoryAccessLevel == gl.DisabledAccessControl {
		return counts, nil
	}
	n, err := g.exportCommits(ctx, ps, p)
	counts[modelCommit] += int(n)
	return counts, err
}

// exportRepoRecord sends the repo when its record differs from the one
// sent last (the token is the record's hash).
func (g *GitLab) exportRepoRecord(ctx context.Context, ps *sessions.Session, p *gl.Project, counts map[string]int) error {
	s, tok, err := ps.Open(forge.ModelRepo)
	if err != nil {
		return err
	}
	rec := repoRecord(p)
	h := forge.HashOf(rec)
	if h == tok {
		return s.Done(ctx, "")
	}
	if err := s.Send(ctx, sessions.Record{ID: g.id(forge.ModelRepo, p.ID), Data: rec}); err != nil {
		return err
	}
	counts[forge.ModelRepo]++
	return s.Done(ctx, h)
}

// cursor reads a model session's token; one that does not parse starts
// that model over (a full re-send, never a gap).
func (g *GitLab) cursor(s *sessions.Session, tok string) forge.Cursor {
	cur, err := forge.ParseCursor(tok)
	if err != nil {
		g.log.Warn().Err(err).Strs("session", s.Path()).Msg("unreadable token; exporting this model from the start")
		return forge.Cursor{}
	}
	return cur
}

// exportMergeRequests sends the merge requests updated since the cursor,
// read newest update first (see listAll), then sent oldest first a page at
// a time, each page's approvals, review states and notes before the page
// and the checkpoint after it. A note, an approval or a review request
// adds a note to the merge request, which updates it: its notes and
// reviews come again with it.
func (g *GitLab) exportMergeRequests(ctx context.Context, c *gl.Client, ps, ic *sessions.Session, p *gl.Project, hz time.Time, counts map[string]int) error {
	s, tok, err := ps.Open(forge.ModelPullRequest)
	if err != nil {
		return err
	}
	cur := g.cursor(s, tok)
	full := p.PathWithNamespace
	fetch := func(next ...gl.RequestOptionFunc) ([]*gl.BasicMergeRequest, *gl.Response, error) {
		return c.MergeRequests.ListProjectMergeRequests(p.ID, &gl.ListProjectMergeRequestsOptions{
			ListOptions: gl.ListOptions{PerPage: pageSize},
			State:       gl.Ptr("all"), OrderBy: gl.Ptr("updated_at"), Sort: gl.Ptr("desc"),
			UpdatedAfter: since(cur),
		}, next...)
	}
	all, err := listAll(ctx, g, "merge requests of "+full, fetch, func(m *gl.BasicMergeRequest) int64 { return m.ID })
	if err != nil {
		return err
	}
	stamp := func(m *gl.BasicMergeRequest) stamped { return stamped{timeOf(m.UpdatedAt), m.ID} }
	mrs := pick(all, stamp, cur, hz)
	rv, _, err := ps.Open(forge.ModelPullRequestReview)
	if err != nil {
		return err
	}
	rc, _, err := ps.Open(forge.ModelPullRequestComment)
	if err != nil {
		return err
	}
	for start := 0; start < len(mrs); start += int(pageSize) {
		chunk := mrs[start:min(start+int(pageSize), len(mrs))]
		var recs, reviews, diffNotes, notes []sessions.Record
		for _, m := range chunk {
			rvs, err := g.reviews(ctx, c, p, m)
			if err != nil {
				return err
			}
			dn, ns, err := g.mrNotes(ctx, c, p, m)
			if err != nil {
				return err
			}
			reviews, diffNotes, notes = append(reviews, rvs...), append(diffNotes, dn...), append(notes, ns...)
			recs = append(recs, sessions.Record{ID: g.id(forge.ModelPullRequest, m.ID), Data: pullRecord(full, m)})
		}
		// What hangs off the merge requests first: their checkpoint must
		// follow it.
		for _, x := range []struct {
			s    *sessions.Session
			recs []sessions.Record
		}{{rv, reviews}, {rc, diffNotes}, {ic, notes}, {s, recs}} {
			if err := x.s.Send(ctx, x.recs...); err != nil {
				return err
			}
		}
		last := stamp(chunk[len(chunk)-1])
		cur.Advance(last.updated, last.id)
		if err := s.Checkpoint(ctx, cur.String()); err != nil {
			return err
		}
		counts[forge.ModelPullRequest] += len(recs)
		counts[forge.ModelPullRequestReview] += len(reviews)
		counts[forge.ModelPullRequestComment] += len(diffNotes)
		counts[forge.ModelIssueComment] += len(notes)
		s.Progress(int64(start+len(chunk)), int64(len(mrs)))
	}
	if err := rv.Done(ctx, ""); err != nil {
		return err
	}
	if err := rc.Done(ctx, ""); err != nil {
		return err
	}
	return s.Done(ctx, cur.String())
}

// reviews are a merge request's review records, one per reviewer: an
// approval (GET .../approvals) is APPROVED; otherwise a reviewer's state
// (GET .../reviewers, GitLab 16.x and later; absent before) of
// requested_changes is CHANGES_REQUESTED and reviewed is COMMENTED.
func (g *GitLab) reviews(ctx context.Context, c *gl.Client, p *gl.Project, m *gl.BasicMergeRequest) ([]sessions.Record, error) {
	full := p.PathWithNamespace
	what := fmt.Sprintf("approvals of %s!%d", full, m.IID)
	ap, resp, err := c.MergeRequestApprovals.GetConfiguration(p.ID, m.IID, gl.WithContext(ctx))
	if err := g.check(what, resp, err); err != nil {
		return nil, err
	}
	var out []sessions.Record
	approved := map[int64]bool{}
	add := func(u *gl.BasicUser, state string, at *time.Time) {
		out = append(out, sessions.Record{
			ID: g.id(forge.ModelPullRequestReview, fmt.Sprintf("%d-%d", m.ID, u.ID)),
			Data: forge.Review{ID: u.ID, Repo: full, PullRequest: int(m.IID), Author: basicUser(u),
				State: state, SubmittedAt: timeOf(at)},
		})
	}
	for _, a := range ap.ApprovedBy {
		if a == nil || a.User == nil {
			continue
		}
		approved[a.User.ID] = true
		add(a.User, stateApproved, a.ApprovedAt)
	}
	rs, resp, err := c.MergeRequests.GetMergeRequestReviewers(p.ID, m.IID, gl.WithContext(ctx))
	if err := g.check(fmt.Sprintf("reviewers of %s!%d", full, m.IID), resp, err); err != nil {
		var se *StatusError
		if errors.As(err, &se) && se.Status == http.StatusNotFound {
			return out, nil // a GitLab before the reviewers API
		}
		return nil, err
	}
	for _, r := range rs {
		if r == nil || r.User == nil || approved[r.User.ID] {
			continue
		}
		switch r.State {
		case "requested_changes":
			add(r.User, stateChangesRequested, r.CreatedAt)
		case "reviewed":
			add(r.User, stateCommented, r.CreatedAt)
		}
	}
	return out, nil
}

// mrNotes are a merge request's diff notes (pull_request_comment) and
// other notes (issue_comment); system notes ("added 1 commit") are not
// comments and are left out.
func (g *GitLab) mrNotes(ctx context.Context, c *gl.Client, p *gl.Project, m *gl.BasicMergeRequest) (diff, other []sessions.Record, err error) {
	full := p.PathWithNamespace
	fetch := func(next ...gl.RequestOptionFunc) ([]*gl.Note, *gl.Response, error) {
		return c.Notes.ListMergeRequestNotes(p.ID, m.IID, &gl.ListMergeRequestNotesOptions{
			ListOptions: gl.ListOptions{PerPage: pageSize}, OrderBy: gl.Ptr("created_at"), Sort: gl.Ptr("asc"),
		}, next...)
	}
	ns, err := listAll(ctx, g, fmt.Sprintf("notes of %s!%d", full, m.IID), fetch, func(n *gl.Note) int64 { return n.ID })
	if err != nil {
		return nil, nil, err
	}
	for _, n := range ns {
		switch {
		case n.System:
		case n.Type == gl.DiffNote || n.Type == gl.LegacyDiffNote || n.Position != nil:
			diff = append(diff, sessions.Record{ID: g.id(forge.ModelPullRequestComment, n.ID), Data: diffNoteRecord(full, m.IID, n)})
		default:
			other = append(other, sessions.Record{ID: g.id(forge.ModelIssueComment, n.ID), Data: issueCommentRecord(full, m.IID, noteableMergeRequest, n)})
		}
	}
	return diff, other, nil
}

// exportIssues sends the issues updated since the cursor, each page's
// notes first, as exportMergeRequests does.
func (g *GitLab) exportIssues(ctx context.Context, c *gl.Client, ps, ic *sessions.Session, p *gl.Project, hz time.Time, counts map[string]int) error {
	s, tok, err := ps.Open(forge.ModelIssue)
	if err != nil {
		return err
	}
	cur := g.cursor(s, tok)
	full := p.PathWithNamespace
	fetch := func(next ...gl.RequestOptionFunc) ([]*gl.Issue, *gl.Response, error) {
		return c.Issues.ListProjectIssues(p.ID, &gl.ListProjectIssuesOptions{
			ListOptions: gl.ListOptions{PerPage: pageSize},
			Scope:       gl.Ptr("all"), OrderBy: gl.Ptr("updated_at"), Sort: gl.Ptr("desc"),
			UpdatedAfter: since(cur),
		}, next...)
	}
	all, err := listAll(ctx, g, "issues of "+full, fetch, func(i *gl.Issue) int64 { return i.ID })
	if err != nil {
		return err
	}
	stamp := func(i *gl.Issue) stamped { return stamped{timeOf(i.UpdatedAt), i.ID} }
	issues := pick(all, stamp, cur, hz)
	for start := 0; start < len(issues); start += int(pageSize) {
		chunk := issues[start:min(start+int(pageSize), len(issues))]
		var recs, notes []sessions.Record
		for _, i := range chunk {
			fetch := func(next ...gl.RequestOptionFunc) ([]*gl.Note, *gl.Response, error) {
				return c.Notes.ListIssueNotes(p.ID, i.IID, &gl.ListIssueNotesOptions{
					ListOptions: gl.ListOptions{PerPage: pageSize}, OrderBy: gl.Ptr("created_at"), Sort: gl.Ptr("asc"),
				}, next...)
			}
			ns, err := listAll(ctx, g, fmt.Sprintf("notes of %s#%d", full, i.IID), fetch, func(n *gl.Note) int64 { return n.ID })
			if err != nil {
				return err
			}
			for _, n := range ns {
				if !n.System {
					notes = append(notes, sessions.Record{ID: g.id(forge.ModelIssueComment, n.ID), Data: issueCommentRecord(full, i.IID, noteableIssue, n)})
				}
			}
			recs = append(recs, sessions.Record{ID: g.id(forge.ModelIssue, i.ID), Data: issueRecord(full, i)})
		}
		if err := ic.Send(ctx, notes...); err != nil {
			return err
		}
		if err := s.Send(ctx, recs...); err != nil {
			return err
		}
		last := stamp(chunk[len(chunk)-1])
		cur.Advance(last.updated, last.id)
		if err := s.Checkpoint(ctx, cur.String()); err != nil {
			return err
		}
		counts[forge.ModelIssue] += len(recs)
		counts[forge.ModelIssueComment] += len(notes)
		s.Progress(int64(start+len(chunk)), int64(len(issues)))
	}
	return s.Done(ctx, cur.String())
}

// exportCommits exports a project's commits, branches and tags through
// the git integration's mirrors. The token goes to each fetch as git
// configuration in the environment (an HTTP header scoped to the
// configured server), never into the mirror or onto a command line.
func (g *GitLab) exportCommits(ctx context.Context, ps *sessions.Session, p *gl.Project) (int64, error) {
	cache, err := g.cacheDir()
	if err != nil {
		return 0, err
	}
	basic := base64.StdEncoding.EncodeToString([]byte(gitUser + ":" + string(g.cfg.Token)))
	n, err := git.ExportRemote(ctx, ps, git.Remote{
		URL:      g.cloneURL(p),
		Name:     p.PathWithNamespace,
		CacheDir: cache,
		Config:   [][2]string{{"http." + g.base + "/.extraHeader", "Authorization: Basic " + basic}},
		Secrets:  []string{basic, string(g.cfg.Token)},
	})
	if err != nil {
		return n, fmt.Errorf("commits of %s: %w", p.PathWithNamespace, err)
	}
	return n, nil
}

// cloneURL is where a project's git data is fetched: its http_url_to_repo
// when that is under the configured url, otherwise <url>/<path>.git (a
// server whose external_url is not the address the agent reaches it by:
// the configured url is the one the token is meant for).
func (g *GitLab) cloneURL(p *gl.Project) string {
	if strings.HasPrefix(p.HTTPURLToRepo, g.base+"/") {
		return p.HTTPURLToRepo
	}
	segs := strings.Split(p.PathWithNamespace, "/")
	for i, s := range segs {
		segs[i] = url.PathEscape(s)
	}
	u := g.base + "/" + strings.Join(segs, "/") + ".git"
	g.cloneOnce.Do(func() {
		g.log.Info().Str("http_url_to_repo", p.HTTPURLToRepo).Str("fetching", u).
			Msg("the server's clone URLs (its external_url) are not under the configured url; git data is fetched from the configured url")
	})
	return u
}

func (g *GitLab) cacheDir() (string, error) {
	if g.opts.CacheDir != "" {
		return filepath.Join(g.opts.CacheDir, "git"), nil
	}
	dir, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("gitlab: no cache folder given and no user cache folder: %w", err)
	}
	return filepath.Join(dir, "courier", "gitlab", g.opts.ID, "git"), nil
}
