package gitlab

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"

	gl "gitlab.com/gitlab-org/api/client-go/v2"

	"courier/integrations"
	"courier/integrations/forge"
	"courier/sessions"
)

// Owner kinds, the prefix of their tracking sessions.
const (
	kindGroup    = "group"
	kindUser     = "user"
	kindProjects = "projects" // the projects named in projects
)

// owner is a group, a user, or the list of named projects, and the
// projects exported under it.
type owner struct {
	kind string
	name string // full path of a group, user name; "" for kindProjects
}

func (o owner) session() string {
	if o.kind == kindProjects {
		return kindProjects
	}
	return o.kind + ":" + o.name
}

// Export sends every configured group's and user's users and projects,
// then the named projects not already among them. A project or an owner
// that fails is an entity error and the others go on; a rejected token, a
// server that cannot be reached or records that cannot be made durable
// end the export.
func (g *GitLab) Export(ctx context.Context, root *sessions.Session) error {
	g.mu.Lock()
	g.root = root
	g.mu.Unlock()
	defer func() {
		g.mu.Lock()
		g.root = nil
		g.mu.Unlock()
		g.http.CloseIdleConnections()
	}()
	c, err := g.client()
	if err != nil {
		return err
	}
	// One request first: a rejected token or an unreachable server fails
	// here, once, rather than as an entity error of every group.
	if _, resp, err := c.Version.GetVersion(gl.WithContext(ctx)); err != nil {
		return g.reach(g.check("GET /api/v4/version", resp, err))
	}

	type job struct {
		sess *sessions.Session
		p    *gl.Project
	}
	var (
		jobs       []job
		ownerSess  []*sessions.Session
		entities   int
		failedEnts int
		seen       = map[int64]bool{}
	)
	for _, o := range g.owners() {
		s := root.Track(o.session())
		projects, err := g.ownerProjects(ctx, c, o)
		if err != nil {
			if !isEntity(err) {
				return err
			}
			g.log.Error().Err(err).Str("owner", o.session()).Msg("cannot list projects")
			s.Fail(err)
			entities++
			failedEnts++
			continue
		}
		if o.kind != kindProjects {
			entities++
			if err := g.exportUsers(ctx, c, s, o); err != nil {
				if !isEntity(err) {
					return err
				}
				failedEnts++
				g.log.Error().Err(err).Str("owner", o.session()).Msg("users failed")
			}
		}
		ownerSess = append(ownerSess, s)
		for _, p := range projects {
			// A project of a group and also named in projects is
			// exported once, under the group.
			if seen[p.ID] {
				continue
			}
			seen[p.ID] = true
			jobs = append(jobs, job{sess: s, p: p})
		}
	}

	total := int64(len(jobs))
	var (
		mu   sync.Mutex
		done int64
	)
	g.progress(0, total)
	grp, _ := integrations.NewGroup(ctx, parallelProjects)
	for _, j := range jobs {
		grp.Go(func(ctx context.Context) error {
			failed, err := g.exportProject(ctx, c, j.sess, j.p)
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
		return errors.New("gitlab: every project, group and user failed (see the entity errors)")
	}
	for _, s := range ownerSess {
		if err := s.Done(ctx, ""); err != nil {
			return err
		}
	}
	return root.Done(ctx, "")
}

// reach words the failure of the first request.
func (g *GitLab) reach(err error) error {
	var ae *AuthError
	if errors.As(err, &ae) {
		return err
	}
	var se *StatusError
	if errors.As(err, &se) {
		return errors.New("gitlab: " + g.base + " does not answer like a GitLab server (API v4): " + err.Error())
	}
	return errors.New("gitlab: cannot reach " + g.base + ": " + err.Error())
}

// owners lists the groups, the users, then the named projects.
func (g *GitLab) owners() []owner {
	var out []owner
	for _, n := range g.cfg.Groups {
		out = append(out, owner{kind: kindGroup, name: n})
	}
	for _, n := range g.cfg.Users {
		out = append(out, owner{kind: kindUser, name: n})
	}
	if len(g.cfg.Projects) > 0 {
		out = append(out, owner{kind: kindProjects})
	}
	return out
}

// ownerProjects lists a group's projects (subgroups included, shared
// projects not: they belong to their own group), a user's personal
// projects, or fetches the named projects. Listings use keyset
// pagination by id, which GitLab offers for these lists.
func (g *GitLab) ownerProjects(ctx context.Context, c *gl.Client, o owner) ([]*gl.Project, error) {
	key := func(p *gl.Project) int64 { return p.ID }
	lo := gl.ListOptions{Pagination: "keyset", PerPage: pageSize, OrderBy: "id", Sort: "asc"}
	var out []*gl.Project
	var err error
	switch o.kind {
	case kindGroup:
		fetch := func(next ...gl.RequestOptionFunc) ([]*gl.Project, *gl.Response, error) {
			return c.Groups.ListGroupProjects(o.name, &gl.ListGroupProjectsOptions{
				ListOptions: lo, IncludeSubGroups: gl.Ptr(true), WithShared: gl.Ptr(false),
			}, next...)
		}
		out, err = listAll(ctx, g, "projects of group "+o.name, fetch, key)
	case kindUser:
		fetch := func(next ...gl.RequestOptionFunc) ([]*gl.Project, *gl.Response, error) {
			return c.Projects.ListUserProjects(o.name, &gl.ListProjectsOptions{ListOptions: lo}, next...)
		}
		out, err = listAll(ctx, g, "projects of user "+o.name, fetch, key)
	default:
		// A named project that cannot be read fails as its own entity
		// (exportProject fetches it again); a stand-in carries its path.
		for _, path := range g.cfg.Projects {
			p, resp, err := c.Projects.GetProject(path, nil, gl.WithContext(ctx))
			if err := g.check("project "+path, resp, err); err != nil {
				if !isEntity(err) {
					return nil, err
				}
				p = &gl.Project{PathWithNamespace: path}
			}
			out = append(out, p)
		}
		return out, nil
	}
	if err != nil {
		return nil, err
	}
	slices.SortFunc(out, func(a, b *gl.Project) int { return strings.Compare(a.PathWithNamespace, b.PathWithNamespace) })
	return out, nil
}

// exportUsers sends a group's members (inherited ones included) or a
// user's account, when their record changed. The token holds a short
// hash per user id.
func (g *GitLab) exportUsers(ctx context.Context, c *gl.Client, os *sessions.Session, o owner) error {
	s, tok, err := os.Open(forge.ModelUser)
	if err != nil {
		return err
	}
	users, err := g.ownerUsers(ctx, c, o)
	if err != nil {
		if isEntity(err) {
			s.Fail(err)
		}
		return err
	}
	prev := forge.ParseHashes(tok)
	next := make(map[int64]string, len(users))
	var recs []sessions.Record
	for _, u := range users {
		h := forge.HashOf(u)[:16]
		next[u.ID] = h
		if prev[u.ID] != h {
			recs = append(recs, sessions.Record{ID: g.id(forge.ModelUser, u.ID), Data: u})
		}
	}
	if err := s.Send(ctx, recs...); err != nil {
		return err
	}
	return s.Done(ctx, forge.FormatHashes(next))
}

// ownerUsers are the user records of a group's members or of one user,
// sorted by id.
func (g *GitLab) ownerUsers(ctx context.Context, c *gl.Client, o owner) ([]forge.User, error) {
	var out []forge.User
	if o.kind == kindGroup {
		fetch := func(next ...gl.RequestOptionFunc) ([]*gl.GroupMember, *gl.Response, error) {
			return c.Groups.ListAllGroupMembers(o.name, &gl.ListGroupMembersOptions{ListOptions: gl.ListOptions{PerPage: pageSize}}, next...)
		}
		ms, err := listAll(ctx, g, "members of group "+o.name, fetch, func(m *gl.GroupMember) int64 { return m.ID })
		if err != nil {
			return nil, err
		}
		for _, m := range ms {
			out = append(out, member(m))
		}
	} else {
		u, err := g.userByName(ctx, c, o.name)
		if err != nil {
			return nil, err
		}
		out = append(out, account(u))
	}
	slices.SortFunc(out, func(a, b forge.User) int { return int(a.ID - b.ID) })
	return out, nil
}

// userByName finds a user by user name (GET /users?username=).
func (g *GitLab) userByName(ctx context.Context, c *gl.Client, name string) (*gl.User, error) {
	what := "user " + name
	us, resp, err := c.Users.ListUsers(&gl.ListUsersOptions{Username: gl.Ptr(name)}, gl.WithContext(ctx))
	if err := g.check(what, resp, err); err != nil {
		return nil, err
	}
	for _, u := range us {
		if strings.EqualFold(u.Username, name) {
			return u, nil
		}
	}
	return nil, &StatusError{What: what, Status: 404, Msg: "no such user"}
}
