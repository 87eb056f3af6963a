package gitea

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"

	sdk "code.gitea.io/sdk/gitea"

	"courier/integrations"
	"courier/sessions"
)

// Owner kinds, the prefix of their tracking sessions.
const (
	kindOrg  = "org"
	kindUser = "user"
)

// owner is an organization or a user and the repos exported under it.
type owner struct {
	kind  string
	name  string
	users bool       // named in organizations/users: export its users
	repos []repoName // from repos; nil: list them
	list  bool       // list the owner's repos (repos is empty in the config)
}

type repoName struct{ owner, name string }

func (r repoName) String() string { return r.owner + "/" + r.name }

// Export sends every configured owner's users and repos. A repo or an
// owner that fails is an entity error and the others go on; a rejected
// token, a server that cannot be reached or records that cannot be made
// durable end the export.
func (g *Gitea) Export(ctx context.Context, root *sessions.Session) error {
	g.mu.Lock()
	g.root = root
	g.mu.Unlock()
	defer func() {
		g.mu.Lock()
		g.root = nil
		g.mu.Unlock()
		g.http.CloseIdleConnections()
	}()
	c, _, err := g.client(ctx)
	if err != nil {
		return err
	}
	owners, err := g.plan(c)
	if err != nil {
		return err
	}

	type job struct {
		sess *sessions.Session
		repo repoName
	}
	var (
		jobs       []job
		ownerSess  = make([]*sessions.Session, len(owners))
		entities   int
		failedEnts int
	)
	for i, o := range owners {
		s := root.Track(o.kind + ":" + o.name)
		ownerSess[i] = s
		// Repos first: an owner that does not exist fails once, here.
		repos := o.repos
		if o.list {
			repos, err = g.ownerRepos(ctx, c, o)
			if err != nil {
				if !isEntity(err) {
					return err
				}
				g.log.Error().Err(err).Str("owner", o.name).Msg("cannot list repos")
				s.Fail(err)
				ownerSess[i] = nil
				entities++
				failedEnts++
				continue
			}
		}
		if o.users {
			entities++
			if err := g.exportUsers(ctx, c, s, o); err != nil {
				if !isEntity(err) {
					return err
				}
				failedEnts++
				g.log.Error().Err(err).Str("owner", o.name).Msg("users failed")
			}
		}
		for _, r := range repos {
			jobs = append(jobs, job{sess: s, repo: r})
		}
	}

	total := int64(len(jobs))
	var (
		mu   sync.Mutex
		done int64
	)
	g.progress(0, total)
	grp, gctx := integrations.NewGroup(ctx, parallelRepos)
	// Requests of the repos end with the group: the first fatal error
	// stops the others.
	gc, _, err := g.client(gctx)
	if err != nil {
		_ = grp.Wait() // nothing runs yet: this ends the group's context
		return err
	}
	for _, j := range jobs {
		grp.Go(func(ctx context.Context) error {
			failed, err := g.exportRepo(ctx, gc, j.sess, j.repo)
			mu.Lock()
			done++
			if failed {
				failedEnts++
			}
			n := done
			mu.Unlock()
			g.progress(n, total)
			return err
		})
	}
	if err := grp.Wait(); err != nil {
		return err
	}
	if ctx.Err() != nil {
		return context.Cause(ctx)
	}
	entities += len(jobs)
	if entities > 0 && failedEnts == entities {
		return errors.New("gitea: every repo and owner failed (see the entity errors)")
	}
	for _, s := range ownerSess {
		if s == nil {
			continue
		}
		if err := s.Done(ctx, ""); err != nil {
			return err
		}
	}
	return root.Done(ctx, "")
}

// plan lists the owners to export and, when repos are configured, which
// repo goes under which owner.
func (g *Gitea) plan(c *sdk.Client) ([]*owner, error) {
	var owners []*owner
	byName := map[string]*owner{}
	add := func(o *owner) {
		owners = append(owners, o)
		byName[strings.ToLower(o.name)] = o
	}
	list := len(g.cfg.Repos) == 0
	for _, n := range g.cfg.Organizations {
		add(&owner{kind: kindOrg, name: n, users: true, list: list})
	}
	for _, n := range g.cfg.Users {
		add(&owner{kind: kindUser, name: n, users: true, list: list})
	}
	for _, r := range g.cfg.Repos {
		on, name, _ := strings.Cut(r, "/")
		o := byName[strings.ToLower(on)]
		if o == nil {
			kind, err := g.ownerKind(c, on)
			if err != nil {
				return nil, err
			}
			o = &owner{kind: kind, name: on}
			add(o)
		}
		o.repos = append(o.repos, repoName{owner: on, name: name})
	}
	return owners, nil
}

// ownerKind tells an organization from a user (the API's user objects do
// not say), so that a repo named in repos sits under org:<owner> or
// user:<owner> like a listed one.
func (g *Gitea) ownerKind(c *sdk.Client, name string) (string, error) {
	_, resp, err := c.GetOrg(name)
	if err == nil {
		return kindOrg, nil
	}
	err = g.check("organization "+name, resp, err)
	var se *StatusError
	if errors.As(err, &se) && se.Status == http.StatusNotFound {
		return kindUser, nil
	}
	return "", fmt.Errorf("cannot tell whether %s is an organization or a user: %w", name, err)
}

// ownerRepos lists an organization's or a user's repos.
func (g *Gitea) ownerRepos(ctx context.Context, c *sdk.Client, o *owner) ([]repoName, error) {
	what := "repos of " + o.kind + " " + o.name
	fetch := func(page int) ([]*sdk.Repository, *sdk.Response, error) {
		lo := sdk.ListOptions{Page: page, PageSize: pageSize}
		if o.kind == kindOrg {
			return c.ListOrgRepos(o.name, sdk.ListOrgReposOptions{ListOptions: lo})
		}
		return c.ListUserRepos(o.name, sdk.ListReposOptions{ListOptions: lo})
	}
	repos, err := listAll(ctx, g, what, fetch, func(r *sdk.Repository) int64 { return r.ID }, nil)
	if err != nil {
		return nil, err
	}
	out := make([]repoName, 0, len(repos))
	for _, r := range repos {
		on := o.name
		if r.Owner != nil {
			on = r.Owner.UserName
		}
		// A user's list can hold repos of others (collaborations in old
		// versions): keep only the owner's own.
		if !strings.EqualFold(on, o.name) {
			continue
		}
		out = append(out, repoName{owner: on, name: r.Name})
	}
	slices.SortFunc(out, func(a, b repoName) int { return strings.Compare(a.String(), b.String()) })
	return out, nil
}
