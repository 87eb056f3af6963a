package github

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	gh "github.com/google/go-github/v92/github"

	"courier/integrations"
	"courier/integrations/forge"
	"courier/sessions"
)

// entityError is a failure of one entity (an organization's listing, a
// repo) that the export reports and goes on from, as opposed to one that
// ends it (a rejected token, cancellation, records that cannot be sent).
type entityError struct{ err error }

func (e *entityError) Error() string { return e.err.Error() }
func (e *entityError) Unwrap() error { return e.err }

// apiErr classifies an error of a GitHub call: a 401 ends the export
// (ErrUnauthorized); anything else fails the entity being exported.
func apiErr(ctx context.Context, err error) error {
	if err == nil {
		return nil
	}
	if ctx.Err() != nil {
		return context.Cause(ctx)
	}
	err = classify(err)
	if errors.Is(err, ErrUnauthorized) {
		return err
	}
	return &entityError{err: err}
}

// owner is an organization or a user and its tracking session.
type owner struct {
	kind  string // "org" or "user"
	login string
	sess  *sessions.Session
	repos *sessions.Session // model session of its repo records, when opened
	users *sessions.Session // model session of its user records, when opened
}

// target is one repo to export.
type target struct {
	owner *owner
	repo  *gh.Repository
}

// plan is what an export works through.
type plan struct {
	root    *sessions.Session
	owners  map[string]*owner // by kind:login, lower case
	order   []*owner
	targets []target
	ids     map[int64]bool
}

func (p *plan) owner(kind, login string) *owner {
	k := kind + ":" + strings.ToLower(login)
	if o := p.owners[k]; o != nil {
		return o
	}
	o := &owner{kind: kind, login: login, sess: p.root.Track(kind + ":" + login)}
	p.owners[k] = o
	p.order = append(p.order, o)
	return o
}

// Export sends repos and users, then each repo's pull requests (with
// reviews and review comments), issues, issue comments and commits,
// parallelRepos repos at a time. A repo (or an organization's listing)
// that fails is an entity error and the others go on; a rejected token
// fails the integration.
func (g *GitHub) Export(ctx context.Context, root *sessions.Session) error {
	g.root.Store(root)
	defer g.root.Store(nil)
	defer g.close()

	me, err := g.me(ctx)
	if err != nil {
		return err
	}
	p := &plan{root: root, owners: map[string]*owner{}, ids: map[int64]bool{}}
	if err := g.collect(ctx, p, me); err != nil {
		return err
	}
	total := int64(len(p.targets))
	g.setProgress(root, 0, total)
	var done atomic.Int64
	grp, _ := integrations.NewGroup(ctx, parallelRepos)
	for _, t := range p.targets {
		grp.Go(func(ctx context.Context) error {
			err := g.exportRepo(ctx, t)
			g.setProgress(root, done.Add(1), total)
			return err
		})
	}
	if err := grp.Wait(); err != nil {
		return err
	}
	if ctx.Err() != nil {
		return context.Cause(ctx)
	}
	for _, o := range p.order {
		if o.sess.State() == sessions.Running {
			if err := o.sess.Done(ctx, ""); err != nil {
				return err
			}
		}
	}
	return root.Done(ctx, "")
}

// me is the token's own login; "" when the token cannot say (an app
// installation token). A rejected token ends the export here, before
// anything else is tried.
func (g *GitHub) me(ctx context.Context) (string, error) {
	u, _, err := g.client.Users.Get(ctx, "")
	if err != nil {
		if err := apiErr(ctx, err); !isEntity(err) {
			return "", err
		}
		g.opts.Logger.Debug().Err(err).Msg("the token's own user is not readable; going on")
		return "", nil
	}
	return u.GetLogin(), nil
}

func isEntity(err error) bool {
	var ee *entityError
	return errors.As(err, &ee)
}

// collect lists the configured owners' repos and users, sends their
// records, and fills p with the repos to export.
func (g *GitHub) collect(ctx context.Context, p *plan, me string) error {
	filter := map[string]string{} // lower-case owner/name -> as configured
	for _, r := range g.cfg.Repos {
		filter[strings.ToLower(r)] = r
	}
	found := map[string]bool{}
	add := func(o *owner, r *gh.Repository) {
		key := strings.ToLower(r.GetFullName())
		if len(filter) > 0 && filter[key] == "" || p.ids[r.GetID()] {
			return
		}
		found[key] = true
		p.ids[r.GetID()] = true
		p.targets = append(p.targets, target{owner: o, repo: r})
	}
	// ownerFailed records an owner whose listing failed, unless fatal.
	ownerFailed := func(o *owner, what string, err error) error {
		if !isEntity(err) {
			return err
		}
		err = fmt.Errorf("%s: %w", what, err)
		g.opts.Logger.Error().Err(err).Str("owner", o.login).Msg("owner failed")
		o.sess.Fail(err)
		return nil
	}

	for _, name := range g.cfg.Organizations {
		o := p.owner("org", name)
		members, err := g.orgMembers(ctx, name)
		if err == nil {
			err = g.sendUsers(ctx, o, members)
		}
		if err != nil {
			// The members alone failed (a token that may not read them):
			// the organization's repos are still exported.
			if !isEntity(err) {
				return err
			}
			if o.users == nil {
				s, _, oerr := o.sess.Open(forge.ModelUser)
				if oerr != nil {
					return oerr
				}
				o.users = s
			}
			g.opts.Logger.Error().Err(err).Str("owner", name).Msg("organization members failed")
			o.users.Fail(fmt.Errorf("list members: %w", err))
			o.users = nil
		}
		repos, err := g.orgRepos(ctx, name)
		if err != nil {
			if err := ownerFailed(o, "list repos", err); err != nil {
				return err
			}
			continue
		}
		for _, r := range repos {
			add(o, r)
		}
	}
	for _, name := range g.cfg.Users {
		o := p.owner("user", name)
		u, _, err := g.client.Users.Get(ctx, name)
		if err != nil {
			if err := ownerFailed(o, "get user", apiErr(ctx, err)); err != nil {
				return err
			}
			continue
		}
		if err := g.sendUsers(ctx, o, []*gh.User{u}); err != nil {
			return err
		}
		repos, err := g.userRepos(ctx, name, me)
		if err != nil {
			if err := ownerFailed(o, "list repos", err); err != nil {
				return err
			}
			continue
		}
		for _, r := range repos {
			add(o, r)
		}
	}
	// Listed repos that no owner listing brought: fetched one by one, under
	// their owner's session.
	for _, full := range g.cfg.Repos {
		key := strings.ToLower(full)
		if found[key] {
			continue
		}
		ownerName, name, _ := strings.Cut(full, "/")
		r, _, err := g.client.Repositories.Get(ctx, ownerName, name)
		if err != nil {
			err = apiErr(ctx, err)
			if !isEntity(err) {
				return err
			}
			parent := p.root
			for _, kind := range []string{"org", "user"} {
				if o := p.owners[kind+":"+strings.ToLower(ownerName)]; o != nil {
					parent = o.sess
				}
			}
			err = fmt.Errorf("get repo: %w", err)
			g.opts.Logger.Error().Err(err).Str("repo", full).Msg("repo failed")
			parent.Track("repo:" + full).Fail(err)
			found[key] = true
			continue
		}
		kind := "user"
		if r.GetOwner().GetType() == "Organization" {
			kind = "org"
		}
		add(p.owner(kind, r.GetOwner().GetLogin()), r)
	}

	// Repo records, per owner.
	byOwner := map[*owner][]sessions.Record{}
	for _, t := range p.targets {
		byOwner[t.owner] = append(byOwner[t.owner], sessions.Record{ID: g.id(forge.ModelRepo, t.repo.GetID()), Data: toRepo(t.repo)})
	}
	for _, o := range p.order {
		if recs := byOwner[o]; len(recs) > 0 {
			s, _, err := o.sess.Open(forge.ModelRepo)
			if err != nil {
				return err
			}
			o.repos = s
			if err := s.Send(ctx, recs...); err != nil {
				return err
			}
		}
		for _, s := range []*sessions.Session{o.repos, o.users} {
			if s != nil {
				if err := s.Done(ctx, ""); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// sendUsers sends user records into o's user session.
func (g *GitHub) sendUsers(ctx context.Context, o *owner, users []*gh.User) error {
	if o.users == nil {
		s, _, err := o.sess.Open(forge.ModelUser)
		if err != nil {
			return err
		}
		o.users = s
	}
	recs := make([]sessions.Record, 0, len(users))
	for _, u := range users {
		recs = append(recs, sessions.Record{ID: g.id(forge.ModelUser, u.GetID()), Data: toUser(u)})
	}
	return o.users.Send(ctx, recs...)
}

// all pages through a go-github listing.
func all[T any](ctx context.Context, list func(opts gh.ListOptions) ([]T, *gh.Response, error)) ([]T, error) {
	var out []T
	opts := gh.ListOptions{PerPage: perPage, Page: 1}
	for {
		items, resp, err := list(opts)
		if err != nil {
			return nil, apiErr(ctx, err)
		}
		out = append(out, items...)
		if resp == nil || resp.NextPage == 0 {
			return out, nil
		}
		opts.Page = resp.NextPage
	}
}

func (g *GitHub) orgMembers(ctx context.Context, org string) ([]*gh.User, error) {
	return all(ctx, func(o gh.ListOptions) ([]*gh.User, *gh.Response, error) {
		return g.client.Organizations.ListMembers(ctx, org, &gh.ListMembersOptions{ListOptions: o})
	})
}

func (g *GitHub) orgRepos(ctx context.Context, org string) ([]*gh.Repository, error) {
	return all(ctx, func(o gh.ListOptions) ([]*gh.Repository, *gh.Response, error) {
		return g.client.Repositories.ListByOrg(ctx, org, &gh.RepositoryListByOrgOptions{Type: "all", Sort: "full_name", ListOptions: o})
	})
}

// userRepos lists the repos a user owns. For the token's own user it asks
// /user/repos, the one listing that includes private repos.
func (g *GitHub) userRepos(ctx context.Context, user, me string) ([]*gh.Repository, error) {
	if me != "" && strings.EqualFold(user, me) {
		return all(ctx, func(o gh.ListOptions) ([]*gh.Repository, *gh.Response, error) {
			return g.client.Repositories.ListByAuthenticatedUser(ctx, &gh.RepositoryListByAuthenticatedUserOptions{
				Affiliation: "owner", Visibility: "all", Sort: "full_name", ListOptions: o})
		})
	}
	return all(ctx, func(o gh.ListOptions) ([]*gh.Repository, *gh.Response, error) {
		return g.client.Repositories.ListByUser(ctx, user, &gh.RepositoryListByUserOptions{Type: "owner", Sort: "full_name", ListOptions: o})
	})
}

// exportRepo exports one repo under its tracking session and returns only
// errors that must end the export.
func (g *GitHub) exportRepo(ctx context.Context, t target) error {
	full := t.repo.GetFullName()
	log := g.opts.Logger.With().Str("repo", full).Logger()
	start := time.Now()
	rs := t.owner.sess.Track("repo:" + full)
	err := g.syncRepo(ctx, rs, t.repo)
	switch {
	case err == nil:
		log.Info().Dur("took_ms", time.Since(start)).Msg("repo exported")
		return rs.Done(ctx, "")
	case ctx.Err() != nil:
		return context.Cause(ctx)
	case isEntity(err):
		log.Error().Err(err).Msg("repo failed")
		rs.Fail(err)
		return nil
	default:
		return err
	}
}

// syncRepo sends a repo's pull requests, issues, issue comments and
// commits.
func (g *GitHub) syncRepo(ctx context.Context, rs *sessions.Session, r *gh.Repository) error {
	ownerName, name, full := r.GetOwner().GetLogin(), r.GetName(), r.GetFullName()
	if err := g.exportPulls(ctx, rs, ownerName, name, full); err != nil {
		return err
	}
	if err := g.exportIssues(ctx, rs, ownerName, name, full); err != nil {
		return err
	}
	if err := g.exportIssueComments(ctx, rs, ownerName, name, full); err != nil {
		return err
	}
	return g.exportCommits(ctx, rs, r)
}

// openCursor opens a model session and reads its cursor; a token that does
// not parse starts the model over (the backend dedupes the re-sent).
func (g *GitHub) openCursor(rs *sessions.Session, model string) (*sessions.Session, forge.Cursor, error) {
	s, tok, err := rs.Open(model)
	if err != nil {
		return nil, forge.Cursor{}, err
	}
	c, err := forge.ParseCursor(tok)
	if err != nil {
		g.opts.Logger.Warn().Err(err).Strs("session", s.Path()).Msg("unreadable token: exporting this model in full")
		c = forge.Cursor{}
	}
	return s, c, nil
}

func (g *GitHub) exportPulls(ctx context.Context, rs *sessions.Session, ownerName, name, full string) error {
	prs, start, err := g.openCursor(rs, forge.ModelPullRequest)
	if err != nil {
		return err
	}
	reviews, _, err := rs.Open(forge.ModelPullRequestReview)
	if err != nil {
		return err
	}
	comments, _, err := rs.Open(forge.ModelPullRequestComment)
	if err != nil {
		return err
	}
	p := pager[*gh.PullRequest]{
		list: func(ctx context.Context, _ time.Time, page int) (listPage[*gh.PullRequest], error) {
			list, resp, err := g.client.PullRequests.List(ctx, ownerName, name, &gh.PullRequestListOptions{
				State: "all", Sort: "updated", Direction: "asc", ListOptions: gh.ListOptions{Page: page, PerPage: perPage}})
			if err != nil {
				return listPage[*gh.PullRequest]{}, apiErr(ctx, err)
			}
			items := make([]item[*gh.PullRequest], len(list))
			for i, pr := range list {
				items[i] = item[*gh.PullRequest]{v: pr, id: pr.GetID(), updated: ts(pr.UpdatedAt)}
			}
			return pageOf(items, resp), nil
		},
		emit: func(ctx context.Context, list []*gh.PullRequest) error {
			var revRecs, comRecs []sessions.Record
			prRecs := make([]sessions.Record, 0, len(list))
			for _, pr := range list {
				n := pr.GetNumber()
				revs, err := all(ctx, func(o gh.ListOptions) ([]*gh.PullRequestReview, *gh.Response, error) {
					return g.client.PullRequests.ListReviews(ctx, ownerName, name, n, &o)
				})
				if err != nil {
					return fmt.Errorf("pull request #%d: reviews: %w", n, err)
				}
				for _, rv := range revs {
					if rv.GetState() == "PENDING" {
						continue // a draft, visible to its author only
					}
					revRecs = append(revRecs, sessions.Record{ID: g.id(forge.ModelPullRequestReview, rv.GetID()), Data: toReview(full, n, rv)})
				}
				coms, err := all(ctx, func(o gh.ListOptions) ([]*gh.PullRequestComment, *gh.Response, error) {
					return g.client.PullRequests.ListComments(ctx, ownerName, name, n, &gh.PullRequestListCommentsOptions{ListOptions: o})
				})
				if err != nil {
					return fmt.Errorf("pull request #%d: review comments: %w", n, err)
				}
				for _, c := range coms {
					comRecs = append(comRecs, sessions.Record{ID: g.id(forge.ModelPullRequestComment, c.GetID()), Data: toReviewComment(full, n, c)})
				}
				prRecs = append(prRecs, sessions.Record{ID: g.id(forge.ModelPullRequest, pr.GetID()), Data: toPullRequest(full, pr)})
			}
			// Reviews and comments first: the pull requests' cursor is
			// committed after everything of theirs is durable.
			if err := reviews.Send(ctx, revRecs...); err != nil {
				return err
			}
			if err := comments.Send(ctx, comRecs...); err != nil {
				return err
			}
			return prs.Send(ctx, prRecs...)
		},
		checkpoint: func(ctx context.Context, c forge.Cursor) error { return prs.Checkpoint(ctx, c.String()) },
		progress:   func(page, last int) { prs.Progress(int64(page), int64(last)) },
	}
	end, err := p.run(ctx, start)
	if err != nil {
		return err
	}
	for _, s := range []*sessions.Session{reviews, comments} {
		if err := s.Done(ctx, ""); err != nil {
			return err
		}
	}
	return prs.Done(ctx, end.String())
}

func (g *GitHub) exportIssues(ctx context.Context, rs *sessions.Session, ownerName, name, full string) error {
	issues, start, err := g.openCursor(rs, forge.ModelIssue)
	if err != nil {
		return err
	}
	p := pager[*gh.Issue]{
		keyset: true,
		list: func(ctx context.Context, since time.Time, page int) (listPage[*gh.Issue], error) {
			list, resp, err := g.client.Issues.ListByRepo(ctx, ownerName, name, &gh.IssueListByRepoOptions{
				State: "all", Sort: "updated", Direction: "asc", Since: since, ListOptions: gh.ListOptions{Page: page, PerPage: perPage}})
			if hasStatus(err, http.StatusGone) {
				return listPage[*gh.Issue]{}, nil // "Issues are disabled for this repo"
			}
			if err != nil {
				return listPage[*gh.Issue]{}, apiErr(ctx, err)
			}
			items := make([]item[*gh.Issue], len(list))
			for i, is := range list {
				items[i] = item[*gh.Issue]{v: is, id: is.GetID(), updated: ts(is.UpdatedAt)}
			}
			return pageOf(items, resp), nil
		},
		emit: func(ctx context.Context, list []*gh.Issue) error {
			recs := make([]sessions.Record, 0, len(list))
			for _, is := range list {
				// The issues API lists pull requests too: those are
				// exported as pull_request.
				if is.IsPullRequest() {
					continue
				}
				recs = append(recs, sessions.Record{ID: g.id(forge.ModelIssue, is.GetID()), Data: toIssue(full, is)})
			}
			return issues.Send(ctx, recs...)
		},
		checkpoint: func(ctx context.Context, c forge.Cursor) error { return issues.Checkpoint(ctx, c.String()) },
		progress:   func(page, last int) { issues.Progress(int64(page), int64(last)) },
	}
	end, err := p.run(ctx, start)
	if err != nil {
		return err
	}
	return issues.Done(ctx, end.String())
}

func (g *GitHub) exportIssueComments(ctx context.Context, rs *sessions.Session, ownerName, name, full string) error {
	comments, start, err := g.openCursor(rs, forge.ModelIssueComment)
	if err != nil {
		return err
	}
	sortBy, dir := "updated", "asc"
	p := pager[*gh.IssueComment]{
		keyset: true,
		list: func(ctx context.Context, since time.Time, page int) (listPage[*gh.IssueComment], error) {
			opts := &gh.IssueListCommentsOptions{Sort: &sortBy, Direction: &dir, ListOptions: gh.ListOptions{Page: page, PerPage: perPage}}
			if !since.IsZero() {
				opts.Since = &since
			}
			list, resp, err := g.client.Issues.ListComments(ctx, ownerName, name, 0, opts)
			if hasStatus(err, http.StatusGone) {
				return listPage[*gh.IssueComment]{}, nil // issues disabled
			}
			if err != nil {
				return listPage[*gh.IssueComment]{}, apiErr(ctx, err)
			}
			items := make([]item[*gh.IssueComment], len(list))
			for i, c := range list {
				items[i] = item[*gh.IssueComment]{v: c, id: c.GetID(), updated: ts(c.UpdatedAt)}
			}
			return pageOf(items, resp), nil
		},
		emit: func(ctx context.Context, list []*gh.IssueComment) error {
			recs := make([]sessions.Record, 0, len(list))
			for _, c := range list {
				recs = append(recs, sessions.Record{ID: g.id(forge.ModelIssueComment, c.GetID()), Data: toIssueComment(full, c)})
			}
			return comments.Send(ctx, recs...)
		},
		checkpoint: func(ctx context.Context, c forge.Cursor) error { return comments.Checkpoint(ctx, c.String()) },
		progress:   func(page, last int) { comments.Progress(int64(page), int64(last)) },
	}
	end, err := p.run(ctx, start)
	if err != nil {
		return err
	}
	return comments.Done(ctx, end.String())
}
