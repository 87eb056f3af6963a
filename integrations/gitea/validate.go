package gitea

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"

	sdk "code.gitea.io/sdk/gitea"

	"courier/integrations"
	"courier/integrations/forge"
)

// Validate checks that the server answers, that the token is accepted
// (GET /api/v1/user), and that every organization, user and repo is
// reachable and readable with it; each problem names its key and what is
// missing.
func (g *Gitea) Validate(ctx context.Context) integrations.Validation {
	defer g.http.CloseIdleConnections()
	v := integrations.Validation{Valid: true, Errors: []string{}, Details: map[string]any{"url": g.base}}
	c, ver, err := g.client(ctx)
	var ae *AuthError
	if errors.As(err, &ae) {
		v.Problem(fmt.Sprintf("token: rejected by %s (HTTP %d): it is wrong, expired or revoked", g.base, ae.Status))
		return v
	}
	if err != nil {
		v.Problem("url: " + err.Error())
		return v
	}
	v.Details["server_version"] = ver
	me, resp, err := c.GetMyUserInfo()
	if err := g.check("GET /api/v1/user", resp, err); err != nil {
		if errors.As(err, &ae) {
			v.Problem(fmt.Sprintf("token: rejected by %s (HTTP %d): it is wrong, expired or revoked", g.base, ae.Status))
		} else {
			v.Problem("token: cannot read the token's own user (scope read:user?): " + err.Error())
		}
		return v
	}
	v.Details["user"] = me.UserName
	v.Details["admin"] = me.IsAdmin

	var reachable []string
	var probe *sdk.Repository // one readable repo, to check the token's scopes on
	for _, n := range g.cfg.Organizations {
		_, resp, err := c.GetOrg(n)
		if err := g.check("organization "+n, resp, err); err != nil {
			v.Problem(fmt.Sprintf("organizations: %s: %s", n, g.missing(err)))
			continue
		}
		repos, resp, err := c.ListOrgRepos(n, sdk.ListOrgReposOptions{ListOptions: sdk.ListOptions{Page: 1, PageSize: 1}})
		if err := g.check("repos of organization "+n, resp, err); err != nil {
			v.Problem(fmt.Sprintf("organizations: %s: cannot list its repos: %s", n, g.missing(err)))
			continue
		}
		if probe == nil && len(repos) > 0 {
			probe = repos[0]
		}
		reachable = append(reachable, "org:"+n)
	}
	for _, n := range g.cfg.Users {
		_, resp, err := c.GetUserInfo(n)
		if err := g.check("user "+n, resp, err); err != nil {
			v.Problem(fmt.Sprintf("users: %s: %s", n, g.missing(err)))
			continue
		}
		reachable = append(reachable, "user:"+n)
	}
	for _, r := range g.cfg.Repos {
		own, name, _ := strings.Cut(r, "/")
		repo, resp, err := c.GetRepo(own, name)
		if err := g.check("repo "+r, resp, err); err != nil {
			v.Problem(fmt.Sprintf("repos: %s: %s", r, g.missing(err)))
			continue
		}
		if probe == nil {
			probe = repo
		}
		reachable = append(reachable, "repo:"+r)
	}
	v.Details["reachable"] = reachable
	if probe != nil {
		g.probeScopes(c, probe, &v)
	}
	return v
}

// probeScopes reads one pull request and one issue of repo, so a token
// without the scopes for them (read:repository, read:issue) is reported
// now rather than as entity errors of every repo.
func (g *Gitea) probeScopes(c *sdk.Client, repo *sdk.Repository, v *integrations.Validation) {
	own, name := repo.Owner.UserName, repo.Name
	lo := sdk.ListOptions{Page: 1, PageSize: 1}
	if repo.HasPullRequests {
		_, resp, err := c.ListRepoPullRequests(own, name, sdk.ListPullRequestsOptions{ListOptions: lo, State: sdk.StateAll})
		if err := g.check("pull requests of "+repo.FullName, resp, err); err != nil {
			v.Problem(fmt.Sprintf("token: cannot read pull requests of %s: %s", repo.FullName, g.missing(err)))
		}
	}
	if repo.HasIssues {
		_, resp, err := c.ListRepoIssues(own, name, sdk.ListIssueOption{ListOptions: lo, State: sdk.StateAll, Type: sdk.IssueTypeIssue})
		if err := g.check("issues of "+repo.FullName, resp, err); err != nil {
			v.Problem(fmt.Sprintf("token: cannot read issues of %s: %s", repo.FullName, g.missing(err)))
		}
	}
}

// missing words an error for a person: not found (or hidden from the
// token), forbidden (a scope is missing: Gitea names it), or as it is.
func (g *Gitea) missing(err error) string {
	var se *StatusError
	if errors.As(err, &se) {
		switch se.Status {
		case http.StatusNotFound:
			return "not found on " + g.base + " (or not visible to the token's user)"
		case http.StatusForbidden:
			return "forbidden: " + se.Msg + " (give the token the read scopes it names)"
		}
	}
	return err.Error()
}

// Onboard lists the repos or the users an export would cover.
func (g *Gitea) Onboard(ctx context.Context, objectType string, emit func(integrations.Object) error) error {
	if objectType != integrations.ObjectRepos && objectType != integrations.ObjectUsers {
		return fmt.Errorf("%w: %q (gitea lists repos and users)", integrations.ErrUnsupportedObject, objectType)
	}
	defer g.http.CloseIdleConnections()
	c, _, err := g.client(ctx)
	if err != nil {
		return err
	}
	owners, err := g.plan(c)
	if err != nil {
		return err
	}
	if objectType == integrations.ObjectUsers {
		return g.onboardUsers(ctx, c, owners, emit)
	}
	for _, o := range owners {
		var names []repoName
		if o.list {
			if names, err = g.ownerRepos(ctx, c, o); err != nil {
				return err
			}
		} else {
			names = o.repos
		}
		for _, r := range names {
			repo, resp, err := c.GetRepo(r.owner, r.name)
			if err := g.check("repo "+r.String(), resp, err); err != nil {
				return err
			}
			rec := repoRecord(repo)
			if err := emit(integrations.Object{ID: g.id(forge.ModelRepo, repo.ID), Name: repo.FullName, Data: map[string]any{
				"owner": rec.Owner, "description": rec.Description, "private": rec.Private, "fork": rec.Fork,
				"archived": rec.Archived, "html_url": rec.HTMLURL, "updated_at": rec.UpdatedAt,
			}}); err != nil {
				return err
			}
		}
	}
	return ctx.Err()
}

func (g *Gitea) onboardUsers(ctx context.Context, c *sdk.Client, owners []*owner, emit func(integrations.Object) error) error {
	seen := map[int64]bool{}
	for _, o := range owners {
		if !o.users {
			continue
		}
		var users []*sdk.User
		var err error
		if o.kind == kindOrg {
			fetch := func(page int) ([]*sdk.User, *sdk.Response, error) {
				return c.ListOrgMembership(o.name, sdk.ListOrgMembershipOption{ListOptions: sdk.ListOptions{Page: page, PageSize: pageSize}})
			}
			users, err = listAll(ctx, g, "members of organization "+o.name, fetch, func(u *sdk.User) int64 { return u.ID }, nil)
		} else {
			u, resp, e := c.GetUserInfo(o.name)
			err = g.check("user "+o.name, resp, e)
			users = []*sdk.User{u}
		}
		if err != nil {
			return err
		}
		slices.SortFunc(users, func(a, b *sdk.User) int { return strings.Compare(a.UserName, b.UserName) })
		for _, u := range users {
			if seen[u.ID] {
				continue
			}
			seen[u.ID] = true
			a := account(u)
			if err := emit(integrations.Object{ID: g.id(forge.ModelUser, u.ID), Name: u.UserName, Data: map[string]any{
				"name": a.Name, "email": a.Email, "type": a.Type,
			}}); err != nil {
				return err
			}
		}
	}
	return ctx.Err()
}
