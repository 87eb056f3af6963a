package gitea

import (
	"context"
	"fmt"
	"slices"
	"time"

	sdk "code.gitea.io/sdk/gitea"

	"courier/integrations/forge"
	"courier/sessions"
)

// exportRepo exports one repo under its owner's session. failed reports
// an entity error (listed on the repo's session); err ends the export.
func (g *Gitea) exportRepo(ctx context.Context, c *sdk.Client, os *sessions.Session, r repoName) (failed bool, err error) {
	log := g.log.With().Str("repo", r.String()).Logger()
	start := time.Now()
	rs := os.Track("repo:" + r.String())
	counts, err := g.syncRepo(ctx, c, rs, r)
	switch {
	case err == nil:
		ev := log.Info().Dur("took_ms", time.Since(start))
		for _, m := range []string{forge.ModelRepo, forge.ModelPullRequest, forge.ModelPullRequestReview,
			forge.ModelPullRequestComment, forge.ModelIssue, forge.ModelIssueComment, modelCommit} {
			ev = ev.Int(m, counts[m])
		}
		ev.Msg("repo exported")
		return false, rs.Done(ctx, "")
	case ctx.Err() != nil:
		return false, context.Cause(ctx)
	case isEntity(err):
		log.Error().Err(err).Msg("repo failed")
		rs.Fail(err)
		return true, nil
	default:
		return false, err
	}
}

// syncRepo sends the repo record and every pull request (with its reviews
// and review comments), issue and issue comment updated since the last
// export, then the new commits and the new or moved branches and tags
// (the git integration's models). It returns how many records of each
// model it sent (commits: how many commits).
func (g *Gitea) syncRepo(ctx context.Context, c *sdk.Client, rs *sessions.Session, r repoName) (map[string]int, error) {
	counts := map[string]int{}
	repo, resp, err := c.GetRepo(r.owner, r.name)
	if err := g.check("repo "+r.String(), resp, err); err != nil {
		return counts, err
	}
	// The horizon comes from this answer, received before any listing
	// starts: see settle.
	hz := horizon(resp, time.Now())
	if err := g.exportRepoRecord(ctx, rs, repo, counts); err != nil {
		return counts, err
	}
	if repo.HasPullRequests {
		if err := g.exportPulls(ctx, c, rs, repo, hz, counts); err != nil {
			return counts, err
		}
	}
	if repo.HasIssues && repo.ExternalTracker == nil {
		if err := g.exportIssues(ctx, c, rs, repo, hz, counts); err != nil {
			return counts, err
		}
	}
	if repo.HasPullRequests || (repo.HasIssues && repo.ExternalTracker == nil) {
		if err := g.exportIssueComments(ctx, c, rs, repo, hz, counts); err != nil {
			return counts, err
		}
	}
	n, err := g.exportCommits(ctx, rs, repo)
	counts[modelCommit] += int(n)
	return counts, err
}

// exportRepoRecord sends the repo when its record differs from the one
// sent last (the token is the record's hash).
func (g *Gitea) exportRepoRecord(ctx context.Context, rs *sessions.Session, repo *sdk.Repository, counts map[string]int) error {
	s, tok, err := rs.Open(forge.ModelRepo)
	if err != nil {
		return err
	}
	rec := repoRecord(repo)
	h := forge.HashOf(rec)
	if h == tok {
		return s.Done(ctx, "")
	}
	if err := s.Send(ctx, sessions.Record{ID: g.id(forge.ModelRepo, repo.ID), Data: rec}); err != nil {
		return err
	}
	counts[forge.ModelRepo]++
	return s.Done(ctx, h)
}

// cursor reads a model session's token; a token that does not parse
// starts that model over (a full re-send, never a gap).
func (g *Gitea) cursor(s *sessions.Session, tok string) forge.Cursor {
	cur, err := forge.ParseCursor(tok)
	if err != nil {
		g.log.Warn().Err(err).Strs("session", s.Path()).Msg("unreadable token; exporting this model from the start")
		return forge.Cursor{}
	}
	return cur
}

// exportPulls sends the pull requests updated since the cursor, each with
// its reviews and their comments, a page at a time, checkpointing after
// each page.
//
// The pulls list has no "since", so it is read newest update first
// (sort=recentupdate) until a page reaches objects older than the cursor.
// Newest first is what keeps offset paging safe: an update moves a pull
// request to the front, so the others can only be seen twice, never
// skipped (read oldest first, one would be skipped).
func (g *Gitea) exportPulls(ctx context.Context, c *sdk.Client, rs *sessions.Session, repo *sdk.Repository, hz time.Time, counts map[string]int) error {
	s, tok, err := rs.Open(forge.ModelPullRequest)
	if err != nil {
		return err
	}
	cur := g.cursor(s, tok)
	floor := since(cur)
	own, name, full := repo.Owner.UserName, repo.Name, repo.FullName
	fetch := func(page int) ([]*sdk.PullRequest, *sdk.Response, error) {
		return c.ListRepoPullRequests(own, name, sdk.ListPullRequestsOptions{
			ListOptions: sdk.ListOptions{Page: page, PageSize: pageSize},
			State:       sdk.StateAll, Sort: "recentupdate",
		})
	}
	stop := func(page []*sdk.PullRequest) bool {
		return !floor.IsZero() && timeOf(page[len(page)-1].Updated).Before(floor)
	}
	all, err := listAll(ctx, g, "pull requests of "+full, fetch, func(p *sdk.PullRequest) int64 { return p.ID }, stop)
	if err != nil {
		return err
	}
	prs := pick(all, func(p *sdk.PullRequest) stamped { return stamped{timeOf(p.Updated), p.ID} }, cur, hz)
	rv, _, err := rs.Open(forge.ModelPullRequestReview)
	if err != nil {
		return err
	}
	rc, _, err := rs.Open(forge.ModelPullRequestComment)
	if err != nil {
		return err
	}
	for start := 0; start < len(prs); start += pageSize {
		chunk := prs[start:min(start+pageSize, len(prs))]
		var recs, reviews, comments []sessions.Record
		for _, p := range chunk {
			rvs, cms, err := g.reviews(ctx, c, repo, p.Index)
			if err != nil {
				return err
			}
			reviews, comments = append(reviews, rvs...), append(comments, cms...)
			recs = append(recs, sessions.Record{ID: g.id(forge.ModelPullRequest, p.ID), Data: pullRecord(full, p)})
		}
		// Reviews first: the pull request's checkpoint must follow them.
		if err := rv.Send(ctx, reviews...); err != nil {
			return err
		}
		if err := rc.Send(ctx, comments...); err != nil {
			return err
		}
		if err := s.Send(ctx, recs...); err != nil {
			return err
		}
		last := chunk[len(chunk)-1]
		cur.Advance(timeOf(last.Updated), last.ID)
		if err := s.Checkpoint(ctx, cur.String()); err != nil {
			return err
		}
		counts[forge.ModelPullRequest] += len(recs)
		counts[forge.ModelPullRequestReview] += len(reviews)
		counts[forge.ModelPullRequestComment] += len(comments)
		s.Progress(int64(start+len(chunk)), int64(len(prs)))
	}
	if err := rv.Done(ctx, ""); err != nil {
		return err
	}
	if err := rc.Done(ctx, ""); err != nil {
		return err
	}
	return s.Done(ctx, cur.String())
}

// reviews returns the records of a pull request's submitted reviews and
// of their comments.
func (g *Gitea) reviews(ctx context.Context, c *sdk.Client, repo *sdk.Repository, number int64) (reviews, comments []sessions.Record, err error) {
	own, name, full := repo.Owner.UserName, repo.Name, repo.FullName
	what := fmt.Sprintf("reviews of %s#%d", full, number)
	fetch := func(page int) ([]*sdk.PullReview, *sdk.Response, error) {
		return c.ListPullReviews(own, name, number, sdk.ListPullReviewsOptions{ListOptions: sdk.ListOptions{Page: page, PageSize: pageSize}})
	}
	rvs, err := listAll(ctx, g, what, fetch, func(r *sdk.PullReview) int64 { return r.ID }, nil)
	if err != nil {
		return nil, nil, err
	}
	last := lastVerdicts(rvs)
	for _, r := range rvs {
		superseded := r.Reviewer != nil && last[r.Reviewer.ID] > r.ID
		state, ok := reviewState(r, superseded)
		if !ok {
			continue
		}
		reviews = append(reviews, sessions.Record{ID: g.id(forge.ModelPullRequestReview, r.ID), Data: reviewRecord(full, int(number), r, state)})
		if r.CodeCommentsCount == 0 {
			continue
		}
		cs, resp, err := c.ListPullReviewComments(own, name, number, r.ID)
		if err := g.check(fmt.Sprintf("comments of review %d of %s#%d", r.ID, full, number), resp, err); err != nil {
			return nil, nil, err
		}
		for _, cm := range cs {
			comments = append(comments, sessions.Record{ID: g.id(forge.ModelPullRequestComment, cm.ID), Data: reviewCommentRecord(full, int(number), cm)})
		}
	}
	return reviews, comments, nil
}

// exportIssues sends the issues (not pull requests) updated since the
// cursor. Gitea filters by "since" but sorts by creation, so the whole
// delta is read, then sent in update order a page at a time.
func (g *Gitea) exportIssues(ctx context.Context, c *sdk.Client, rs *sessions.Session, repo *sdk.Repository, hz time.Time, counts map[string]int) error {
	s, tok, err := rs.Open(forge.ModelIssue)
	if err != nil {
		return err
	}
	cur := g.cursor(s, tok)
	own, name, full := repo.Owner.UserName, repo.Name, repo.FullName
	fetch := func(page int) ([]*sdk.Issue, *sdk.Response, error) {
		return c.ListRepoIssues(own, name, sdk.ListIssueOption{
			ListOptions: sdk.ListOptions{Page: page, PageSize: pageSize},
			State:       sdk.StateAll, Type: sdk.IssueTypeIssue, Since: since(cur),
		})
	}
	all, err := listAll(ctx, g, "issues of "+full, fetch, func(i *sdk.Issue) int64 { return i.ID }, nil)
	if err != nil {
		return err
	}
	issues := pick(all, func(i *sdk.Issue) stamped { return stamped{i.Updated.UTC(), i.ID} }, cur, hz)
	n, err := sendPaged(ctx, s, &cur, issues,
		func(i *sdk.Issue) stamped { return stamped{i.Updated.UTC(), i.ID} },
		func(i *sdk.Issue) sessions.Record {
			return sessions.Record{ID: g.id(forge.ModelIssue, i.ID), Data: issueRecord(full, i)}
		})
	counts[forge.ModelIssue] += n
	return err
}

// exportIssueComments sends the comments on issues and on pull requests'
// conversations updated since the cursor; like issues, the delta is read
// whole (Gitea sorts it by creation) and sent in update order.
func (g *Gitea) exportIssueComments(ctx context.Context, c *sdk.Client, rs *sessions.Session, repo *sdk.Repository, hz time.Time, counts map[string]int) error {
	s, tok, err := rs.Open(forge.ModelIssueComment)
	if err != nil {
		return err
	}
	cur := g.cursor(s, tok)
	own, name, full := repo.Owner.UserName, repo.Name, repo.FullName
	fetch := func(page int) ([]*sdk.Comment, *sdk.Response, error) {
		return c.ListRepoIssueComments(own, name, sdk.ListIssueCommentOptions{
			ListOptions: sdk.ListOptions{Page: page, PageSize: pageSize}, Since: since(cur),
		})
	}
	all, err := listAll(ctx, g, "issue comments of "+full, fetch, func(c *sdk.Comment) int64 { return c.ID }, nil)
	if err != nil {
		return err
	}
	stamp := func(c *sdk.Comment) stamped { return stamped{c.Updated.UTC(), c.ID} }
	cms := pick(all, stamp, cur, hz)
	n, err := sendPaged(ctx, s, &cur, cms, stamp, func(c *sdk.Comment) sessions.Record {
		return sessions.Record{ID: g.id(forge.ModelIssueComment, c.ID), Data: issueCommentRecord(full, c)}
	})
	counts[forge.ModelIssueComment] += n
	return err
}

// sendPaged sends items (in cursor order) a page at a time, advancing
// and checkpointing the cursor after each page, then ends the session.
func sendPaged[T any](ctx context.Context, s *sessions.Session, cur *forge.Cursor, items []T, stamp func(T) stamped, record func(T) sessions.Record) (int, error) {
	sent := 0
	for start := 0; start < len(items); start += pageSize {
		chunk := items[start:min(start+pageSize, len(items))]
		recs := make([]sessions.Record, len(chunk))
		for i, it := range chunk {
			recs[i] = record(it)
		}
		if err := s.Send(ctx, recs...); err != nil {
			return sent, err
		}
		sent += len(recs)
		last := stamp(chunk[len(chunk)-1])
		cur.Advance(last.updated, last.id)
		if err := s.Checkpoint(ctx, cur.String()); err != nil {
			return sent, err
		}
		s.Progress(int64(sent), int64(len(items)))
	}
	return sent, s.Done(ctx, cur.String())
}

// exportUsers sends an organization's members, or a user's own account,
// when their record changed. The token holds a short hash per user id.
func (g *Gitea) exportUsers(ctx context.Context, c *sdk.Client, os *sessions.Session, o *owner) error {
	s, tok, err := os.Open(forge.ModelUser)
	if err != nil {
		return err
	}
	var users []*sdk.User
	if o.kind == kindOrg {
		fetch := func(page int) ([]*sdk.User, *sdk.Response, error) {
			return c.ListOrgMembership(o.name, sdk.ListOrgMembershipOption{ListOptions: sdk.ListOptions{Page: page, PageSize: pageSize}})
		}
		users, err = listAll(ctx, g, "members of organization "+o.name, fetch, func(u *sdk.User) int64 { return u.ID }, nil)
	} else {
		var u *sdk.User
		var resp *sdk.Response
		u, resp, err = c.GetUserInfo(o.name)
		err = g.check("user "+o.name, resp, err)
		users = []*sdk.User{u}
	}
	if err != nil {
		if isEntity(err) {
			s.Fail(err)
		}
		return err
	}
	slices.SortFunc(users, func(a, b *sdk.User) int { return int(a.ID - b.ID) })
	prev := forge.ParseHashes(tok)
	next := make(map[int64]string, len(users))
	var recs []sessions.Record
	for _, u := range users {
		rec := account(u)
		h := forge.HashOf(rec)[:16]
		next[u.ID] = h
		if prev[u.ID] != h {
			recs = append(recs, sessions.Record{ID: g.id(forge.ModelUser, u.ID), Data: rec})
		}
	}
	if err := s.Send(ctx, recs...); err != nil {
		return err
	}
	return s.Done(ctx, forge.FormatHashes(next))
}
