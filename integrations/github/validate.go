package github

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"

	gh "github.com/google/go-github/v92/github"

	"courier/integrations"
	"courier/integrations/forge"
)

// scopeImplied lists, for each scope the export needs, the scopes that
// grant it (GitHub's scope hierarchy).
var scopeImplied = map[string][]string{
	"repo":      {"repo"},
	"read:org":  {"read:org", "write:org", "admin:org"},
	"read:user": {"read:user", "user"},
}

// neededScopes are the classic-token scopes this config needs, and why.
func (g *GitHub) neededScopes() map[string]string {
	need := map[string]string{"repo": "to read private repositories, their pull requests and issues"}
	if len(g.cfg.Organizations) > 0 {
		need["read:org"] = "to list the members of organizations (and private members)"
	}
	if len(g.cfg.Users) > 0 {
		need["read:user"] = "to read users' profiles"
	}
	return need
}

// Validate checks the token (and reports its scopes and the ones missing),
// then that every configured organization, user and repo can be reached.
func (g *GitHub) Validate(ctx context.Context) integrations.Validation {
	defer g.close()
	v := integrations.Validation{Valid: true, Errors: []string{}, Details: map[string]any{"url": g.client.BaseURL()}}

	u, resp, err := g.client.Users.Get(ctx, "")
	if err != nil {
		if errors.Is(classify(err), ErrUnauthorized) {
			v.Problem("token: rejected by GitHub (HTTP 401): it is expired, revoked or wrong")
			return v
		}
		// An app installation token cannot read /user (GitHub answers
		// 403): ask the API root. A server that cannot be reached at all
		// is not asked twice.
		var er *gh.ErrorResponse
		if errors.As(err, &er) {
			req, rerr := g.client.NewRequest(ctx, "GET", "", nil)
			if rerr == nil {
				resp, err = g.client.Do(req, nil)
			}
		}
		if err != nil {
			if errors.Is(classify(err), ErrUnauthorized) {
				v.Problem("token: rejected by GitHub (HTTP 401): it is expired, revoked or wrong")
			} else {
				v.Problem(fmt.Sprintf("url: cannot reach the GitHub API: %v", err))
			}
			return v
		}
	} else {
		v.Details["login"] = u.GetLogin()
	}
	if resp != nil {
		v.Details["rate_limit"] = map[string]any{"limit": resp.Rate.Limit, "remaining": resp.Rate.Remaining, "reset": resp.Rate.Reset.UTC()}
		if h, ok := resp.Header["X-Oauth-Scopes"]; ok {
			scopes := parseScopes(strings.Join(h, ","))
			v.Details["scopes"] = scopes
			var missing []string
			need := g.neededScopes()
			for _, s := range slices.Sorted(maps.Keys(need)) {
				if !slices.ContainsFunc(scopeImplied[s], func(x string) bool { return slices.Contains(scopes, x) }) {
					missing = append(missing, s)
					v.Problem(fmt.Sprintf("token: missing scope %s, needed %s", s, need[s]))
				}
			}
			v.Details["missing_scopes"] = missing
		} else {
			v.Details["scopes_note"] = "the token reports no OAuth scopes (a fine-grained or app token): access is checked per organization, user and repo"
		}
	}

	check := func(key, name string, get func() error) map[string]any {
		if err := get(); err != nil {
			msg := classify(err).Error()
			v.Problem(fmt.Sprintf("%s: %s: cannot reach: %s", key, name, msg))
			return map[string]any{"name": name, "reachable": false, "error": msg}
		}
		return map[string]any{"name": name, "reachable": true}
	}
	var orgs, users, repos []map[string]any
	for _, o := range g.cfg.Organizations {
		orgs = append(orgs, check("organizations", o, func() error { _, _, err := g.client.Organizations.Get(ctx, o); return err }))
	}
	for _, name := range g.cfg.Users {
		users = append(users, check("users", name, func() error { _, _, err := g.client.Users.Get(ctx, name); return err }))
	}
	for _, r := range g.cfg.Repos {
		o, n, _ := strings.Cut(r, "/")
		repos = append(repos, check("repos", r, func() error { _, _, err := g.client.Repositories.Get(ctx, o, n); return err }))
	}
	v.Details["organizations"], v.Details["users"], v.Details["repos"] = orgs, users, repos
	if ctx.Err() != nil {
		v.Problem(fmt.Sprintf("validation cancelled: %v", context.Cause(ctx)))
	}
	return v
}

func parseScopes(h string) []string {
	out := []string{}
	for _, s := range strings.Split(h, ",") {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	slices.Sort(out)
	return out
}

// Onboard lists repos (those an export would export) or users (members of
// the organizations, and the configured users).
func (g *GitHub) Onboard(ctx context.Context, objectType string, emit func(integrations.Object) error) error {
	defer g.close()
	switch objectType {
	case integrations.ObjectRepos:
		return g.onboardRepos(ctx, emit)
	case integrations.ObjectUsers:
		return g.onboardUsers(ctx, emit)
	}
	return fmt.Errorf("%w: %q (github lists repos and users)", integrations.ErrUnsupportedObject, objectType)
}

func (g *GitHub) onboardRepos(ctx context.Context, emit func(integrations.Object) error) error {
	me, err := g.me(ctx)
	if err != nil {
		return err
	}
	filter := map[string]bool{}
	for _, r := range g.cfg.Repos {
		filter[strings.ToLower(r)] = true
	}
	seen := map[int64]bool{}
	found := map[string]bool{}
	send := func(r *gh.Repository) error {
		key := strings.ToLower(r.GetFullName())
		if len(filter) > 0 && !filter[key] || seen[r.GetID()] {
			return nil
		}
		seen[r.GetID()], found[key] = true, true
		return emit(integrations.Object{ID: g.id(forge.ModelRepo, r.GetID()), Name: r.GetFullName(), Data: map[string]any{
			"private": r.GetPrivate(), "archived": r.GetArchived(), "fork": r.GetFork(),
			"default_branch": r.GetDefaultBranch(), "html_url": r.GetHTMLURL(),
		}})
	}
	var lists []func() ([]*gh.Repository, error)
	for _, o := range g.cfg.Organizations {
		lists = append(lists, func() ([]*gh.Repository, error) { return g.orgRepos(ctx, o) })
	}
	for _, u := range g.cfg.Users {
		lists = append(lists, func() ([]*gh.Repository, error) { return g.userRepos(ctx, u, me) })
	}
	for _, list := range lists {
		repos, err := list()
		if err != nil {
			return err
		}
		for _, r := range repos {
			if err := send(r); err != nil {
				return err
			}
		}
	}
	for _, full := range g.cfg.Repos {
		if found[strings.ToLower(full)] {
			continue
		}
		o, n, _ := strings.Cut(full, "/")
		r, _, err := g.client.Repositories.Get(ctx, o, n)
		if err != nil {
			return fmt.Errorf("repos: %s: %w", full, classify(err))
		}
		if err := send(r); err != nil {
			return err
		}
	}
	return ctx.Err()
}

func (g *GitHub) onboardUsers(ctx context.Context, emit func(integrations.Object) error) error {
	seen := map[int64]bool{}
	send := func(u *gh.User, data map[string]any) error {
		if seen[u.GetID()] {
			return nil
		}
		seen[u.GetID()] = true
		data["type"] = u.GetType()
		return emit(integrations.Object{ID: g.id(forge.ModelUser, u.GetID()), Name: u.GetLogin(), Data: data})
	}
	for _, o := range g.cfg.Organizations {
		members, err := g.orgMembers(ctx, o)
		if err != nil {
			return fmt.Errorf("organizations: %s: members: %w", o, err)
		}
		for _, m := range members {
			if err := send(m, map[string]any{"organization": o}); err != nil {
				return err
			}
		}
	}
	for _, name := range g.cfg.Users {
		u, _, err := g.client.Users.Get(ctx, name)
		if err != nil {
			return fmt.Errorf("users: %s: %w", name, classify(err))
		}
		if err := send(u, map[string]any{"name": u.GetName()}); err != nil {
			return err
		}
	}
	return ctx.Err()
}
