package gitlab

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	gl "gitlab.com/gitlab-org/api/client-go/v2"

	"courier/integrations"
	"courier/integrations/forge"
)

// Validate checks that the server answers as GitLab, that the token is
// accepted (GET /version, GET /user), and that every group, user and
// project can be read with it; each problem names its key.
func (g *GitLab) Validate(ctx context.Context) integrations.Validation {
	defer g.http.CloseIdleConnections()
	v := integrations.Validation{Valid: true, Errors: []string{}, Details: map[string]any{"url": g.base}}
	c, err := g.client()
	if err != nil {
		v.Problem("url: " + err.Error())
		return v
	}
	ver, resp, err := c.Version.GetVersion(gl.WithContext(ctx))
	if err := g.check("GET /api/v4/version", resp, err); err != nil {
		g.tokenOrURL(&v, g.reach(err))
		return v
	}
	v.Details["server_version"] = ver.Version
	me, resp, err := c.Users.CurrentUser(gl.WithContext(ctx))
	if err := g.check("GET /api/v4/user", resp, err); err != nil {
		g.tokenOrURL(&v, err)
		return v
	}
	v.Details["user"] = me.Username
	v.Details["bot"] = me.Bot // group and project access tokens act as bot users

	var reachable []string
	var probe *gl.Project
	one := gl.ListOptions{PerPage: 1}
	for _, n := range g.cfg.Groups {
		_, resp, err := c.Groups.GetGroup(n, nil, gl.WithContext(ctx))
		if err := g.check("group "+n, resp, err); err != nil {
			v.Problem(fmt.Sprintf("groups: %s: %s", n, g.missing(err)))
			continue
		}
		ps, resp, err := c.Groups.ListGroupProjects(n, &gl.ListGroupProjectsOptions{ListOptions: one, IncludeSubGroups: gl.Ptr(true)}, gl.WithContext(ctx))
		if err := g.check("projects of group "+n, resp, err); err != nil {
			v.Problem(fmt.Sprintf("groups: %s: cannot list its projects: %s", n, g.missing(err)))
			continue
		}
		if probe == nil && len(ps) > 0 {
			probe = ps[0]
		}
		reachable = append(reachable, "group:"+n)
	}
	for _, n := range g.cfg.Users {
		if _, err := g.userByName(ctx, c, n); err != nil {
			v.Problem(fmt.Sprintf("users: %s: %s", n, g.missing(err)))
			continue
		}
		reachable = append(reachable, "user:"+n)
	}
	for _, n := range g.cfg.Projects {
		p, resp, err := c.Projects.GetProject(n, nil, gl.WithContext(ctx))
		if err := g.check("project "+n, resp, err); err != nil {
			v.Problem(fmt.Sprintf("projects: %s: %s", n, g.missing(err)))
			continue
		}
		if probe == nil {
			probe = p
		}
		reachable = append(reachable, "project:"+n)
	}
	v.Details["reachable"] = reachable
	if probe != nil {
		g.probeScopes(ctx, c, probe, &v)
	}
	return v
}

// tokenOrURL reports the failure of the first requests against the key
// that is wrong.
func (g *GitLab) tokenOrURL(v *integrations.Validation, err error) {
	var ae *AuthError
	if errors.As(err, &ae) {
		v.Problem(fmt.Sprintf("token: rejected by %s (HTTP %d: %s): it is wrong, expired or revoked", g.base, ae.Status, ae.Msg))
		return
	}
	var se *StatusError
	if errors.As(err, &se) && se.Status == http.StatusForbidden {
		v.Problem("token: " + g.missing(err))
		return
	}
	v.Problem("url: " + err.Error())
}

// probeScopes reads one merge request and one issue of p, so that a
// token without read_api is reported now rather than as entity errors of
// every project.
func (g *GitLab) probeScopes(ctx context.Context, c *gl.Client, p *gl.Project, v *integrations.Validation) {
	one := gl.ListOptions{PerPage: 1}
	if p.MergeRequestsAccessLevel != gl.DisabledAccessControl {
		_, resp, err := c.MergeRequests.ListProjectMergeRequests(p.ID, &gl.ListProjectMergeRequestsOptions{ListOptions: one}, gl.WithContext(ctx))
		if err := g.check("merge requests of "+p.PathWithNamespace, resp, err); err != nil {
			v.Problem(fmt.Sprintf("token: cannot read merge requests of %s: %s", p.PathWithNamespace, g.missing(err)))
		}
	}
	if p.IssuesAccessLevel != gl.DisabledAccessControl {
		_, resp, err := c.Issues.ListProjectIssues(p.ID, &gl.ListProjectIssuesOptions{ListOptions: one}, gl.WithContext(ctx))
		if err := g.check("issues of "+p.PathWithNamespace, resp, err); err != nil {
			v.Problem(fmt.Sprintf("token: cannot read issues of %s: %s", p.PathWithNamespace, g.missing(err)))
		}
	}
}

// missing words an error for a person.
func (g *GitLab) missing(err error) string {
	var se *StatusError
	if errors.As(err, &se) {
		switch se.Status {
		case http.StatusNotFound:
			return "not found on " + g.base + " (or not visible to the token)"
		case http.StatusForbidden:
			return "forbidden: " + se.Msg + " (the token needs the read_api scope and at least the Reporter role)"
		}
	}
	return err.Error()
}

// Onboard lists the projects or the users an export would cover.
func (g *GitLab) Onboard(ctx context.Context, objectType string, emit func(integrations.Object) error) error {
	if objectType != integrations.ObjectRepos && objectType != integrations.ObjectUsers {
		return fmt.Errorf("%w: %q (gitlab lists repos and users)", integrations.ErrUnsupportedObject, objectType)
	}
	defer g.http.CloseIdleConnections()
	c, err := g.client()
	if err != nil {
		return err
	}
	seen := map[int64]bool{}
	for _, o := range g.owners() {
		if objectType == integrations.ObjectUsers {
			if o.kind == kindProjects {
				continue
			}
			users, err := g.ownerUsers(ctx, c, o)
			if err != nil {
				return err
			}
			for _, u := range users {
				if seen[u.ID] {
					continue
				}
				seen[u.ID] = true
				if err := emit(integrations.Object{ID: g.id(forge.ModelUser, u.ID), Name: u.Login, Data: map[string]any{
					"name": u.Name, "email": u.Email, "type": u.Type,
				}}); err != nil {
					return err
				}
			}
			continue
		}
		ps, err := g.ownerProjects(ctx, c, o)
		if err != nil {
			return err
		}
		for _, p := range ps {
			if p.ID == 0 {
				// A named project that cannot be read.
				_, resp, err := c.Projects.GetProject(p.PathWithNamespace, nil, gl.WithContext(ctx))
				return g.check("project "+p.PathWithNamespace, resp, err)
			}
			if seen[p.ID] {
				continue
			}
			seen[p.ID] = true
			rec := repoRecord(p)
			if err := emit(integrations.Object{ID: g.id(forge.ModelRepo, p.ID), Name: p.PathWithNamespace, Data: map[string]any{
				"owner": rec.Owner, "description": rec.Description, "private": rec.Private, "fork": rec.Fork,
				"archived": rec.Archived, "html_url": rec.HTMLURL, "updated_at": rec.UpdatedAt,
			}}); err != nil {
				return err
			}
		}
	}
	return ctx.Err()
}
