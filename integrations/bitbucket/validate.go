package bitbucket

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"courier/integrations"
)

// Validate checks that the server answers and takes the credentials, and
// that every workspace, project and repo named can be read; each problem
// names its key.
func (b *Bitbucket) Validate(ctx context.Context) integrations.Validation {
	defer b.http.CloseIdleConnections()
	v := integrations.Validation{Valid: true, Errors: []string{}, Details: map[string]any{"url": b.base.String(), "flavour": b.cfg.Flavour}}
	who, err := b.api.whoami(ctx)
	var ae *AuthError
	switch {
	case errors.As(err, &ae):
		v.Problem(fmt.Sprintf("token: rejected by %s (HTTP %d): it is wrong, expired or revoked", b.base, ae.Status))
		return v
	case isEntity(err) && b.cfg.Flavour == Cloud:
		// A workspace or repository access token is no user: /2.0/user
		// refuses it, and the reads below tell whether it works.
		v.Details["account"] = "(an access token, not a user)"
	case err != nil:
		v.Problem("url: " + b.redact(err.Error()))
		return v
	default:
		if b.cfg.Flavour == DataCenter {
			v.Details["server"] = who
		} else {
			v.Details["account"] = who
		}
	}
	var reachable []string
	key := "workspaces"
	if b.cfg.Flavour == DataCenter {
		key = "projects"
	}
	for _, n := range append(append([]string{}, b.cfg.Workspaces...), b.cfg.Projects...) {
		if _, err := b.api.projects(ctx, n); err != nil {
			if errors.As(err, &ae) {
				v.Problem(fmt.Sprintf("token: rejected by %s (HTTP %d): it is wrong, expired or revoked", b.base, ae.Status))
				return v
			}
			v.Problem(fmt.Sprintf("%s: %s: %s", key, n, b.missing(err)))
			continue
		}
		reachable = append(reachable, b.kind()+":"+n)
	}
	for _, r := range b.cfg.Repos {
		on, slug, _ := strings.Cut(r, "/")
		repo, _, err := b.api.repo(ctx, repoRef{owner: on, slug: slug})
		if err == nil {
			// The pull requests need their own permission (scope).
			err = b.api.canReadPulls(ctx, repo)
		}
		if err != nil {
			if errors.As(err, &ae) {
				v.Problem(fmt.Sprintf("token: rejected by %s (HTTP %d): it is wrong, expired or revoked", b.base, ae.Status))
				return v
			}
			v.Problem(fmt.Sprintf("repos: %s: %s", r, b.missing(err)))
			continue
		}
		reachable = append(reachable, "repo:"+r)
	}
	v.Details["reachable"] = reachable
	return v
}

// missing words an error for a person.
func (b *Bitbucket) missing(err error) string {
	var se *StatusError
	if errors.As(err, &se) {
		switch se.Status {
		case http.StatusNotFound:
			return "not found on " + b.base.String() + " (or not visible to the token)"
		case http.StatusForbidden:
			return "forbidden: " + se.Msg + " (give the token read permission on repositories, projects and pull requests)"
		}
	}
	return b.redact(err.Error())
}

// Onboard lists the repos or the projects an export would cover.
func (b *Bitbucket) Onboard(ctx context.Context, objectType string, emit func(integrations.Object) error) error {
	if objectType != integrations.ObjectRepos && objectType != integrations.ObjectProjects {
		return fmt.Errorf("%w: %q (bitbucket lists repos and projects)", integrations.ErrUnsupportedObject, objectType)
	}
	defer b.http.CloseIdleConnections()
	for _, o := range b.plan() {
		if objectType == integrations.ObjectProjects {
			if len(o.repos) > 0 && !o.list && !b.named(o.name) {
				continue
			}
			ps, err := b.api.projects(ctx, o.name)
			if err != nil {
				return err
			}
			for _, p := range ps {
				if err := emit(integrations.Object{ID: b.id(ModelProject, p.ID), Name: projectName(p), Data: map[string]any{
					"key": p.Key, "description": p.Description, "private": p.Private, "html_url": p.HTMLURL,
				}}); err != nil {
					return err
				}
			}
			continue
		}
		refs := o.repos
		if o.list {
			var err error
			if refs, err = b.api.ownerRepos(ctx, o.name); err != nil {
				return err
			}
		}
		for _, ref := range refs {
			r, _, err := b.api.repo(ctx, ref)
			if err != nil {
				return err
			}
			if err := emit(integrations.Object{ID: b.id(ModelRepo, r.ID), Name: r.FullName, Data: map[string]any{
				"project": r.Project, "description": r.Description, "private": r.Private, "fork": r.Fork, "html_url": r.HTMLURL,
			}}); err != nil {
				return err
			}
		}
	}
	return ctx.Err()
}

func (b *Bitbucket) named(n string) bool {
	for _, x := range append(append([]string{}, b.cfg.Workspaces...), b.cfg.Projects...) {
		if strings.EqualFold(x, n) {
			return true
		}
	}
	return false
}

func projectName(p Project) string {
	if p.Workspace != "" {
		return p.Workspace + "/" + p.Key
	}
	return p.Key
}
