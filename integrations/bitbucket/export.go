package bitbucket

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"courier/integrations"
	"courier/integrations/forge"
	"courier/integrations/git"
	"courier/sessions"
)

// owner is a workspace (Cloud) or a project (Data Center) and the repos
// exported under it.
type owner struct {
	name  string
	list  bool      // list its repos (repos is empty in the config)
	repos []repoRef // from repos
}

// kind is the owner's session prefix.
func (b *Bitbucket) kind() string {
	if b.cfg.Flavour == DataCenter {
		return "project"
	}
	return "workspace"
}

func (b *Bitbucket) plan() []*owner {
	var owners []*owner
	byName := map[string]*owner{}
	list := len(b.cfg.Repos) == 0
	for _, n := range append(slices.Clone(b.cfg.Workspaces), b.cfg.Projects...) {
		o := &owner{name: n, list: list}
		owners = append(owners, o)
		byName[strings.ToLower(n)] = o
	}
	for _, r := range b.cfg.Repos {
		on, slug, _ := strings.Cut(r, "/")
		o := byName[strings.ToLower(on)]
		if o == nil {
			o = &owner{name: on}
			owners = append(owners, o)
			byName[strings.ToLower(on)] = o
		}
		o.repos = append(o.repos, repoRef{owner: on, slug: slug})
	}
	return owners
}

// Export sends every owner's projects and repos. A repo or an owner that
// fails is an entity error and the others go on; rejected credentials, a
// server that cannot be reached or records that cannot be made durable end
// the export.
func (b *Bitbucket) Export(ctx context.Context, root *sessions.Session) error {
	b.mu.Lock()
	b.root = root
	b.mu.Unlock()
	defer func() {
		b.mu.Lock()
		b.root = nil
		b.mu.Unlock()
		b.http.CloseIdleConnections()
	}()
	type job struct {
		sess *sessions.Session
		repo repoRef
	}
	var (
		jobs       []job
		ownerSess  []*sessions.Session
		entities   int
		failedEnts int
	)
	for _, o := range b.plan() {
		s := root.Track(b.kind() + ":" + o.name)
		entities++
		err := b.exportProjects(ctx, s, o)
		repos := o.repos
		if err == nil && o.list {
			repos, err = b.api.ownerRepos(ctx, o.name)
		}
		if err != nil {
			if !isEntity(err) {
				return err
			}
			b.log.Error().Err(err).Str("owner", o.name).Msg("owner failed")
			s.Fail(err)
			failedEnts++
			continue
		}
		ownerSess = append(ownerSess, s)
		for _, r := range repos {
			jobs = append(jobs, job{sess: s, repo: r})
		}
	}

	total := int64(len(jobs))
	var (
		mu   sync.Mutex
		done int64
	)
	b.progress(0, total)
	grp, _ := integrations.NewGroup(ctx, parallelRepos)
	for _, j := range jobs {
		grp.Go(func(ctx context.Context) error {
			failed, err := b.exportRepo(ctx, j.sess, j.repo)
			mu.Lock()
			done++
			if failed {
				failedEnts++
			}
			n := done
			mu.Unlock()
			b.progress(n, total)
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
		return errors.New("bitbucket: every repo and " + b.kind() + " failed (see the entity errors)")
	}
	for _, s := range ownerSess {
		if err := s.Done(ctx, ""); err != nil {
			return err
		}
	}
	return root.Done(ctx, "")
}

// exportProjects sends an owner's project records that changed (a
// workspace's projects, or the Data Center project itself) when the
// owner was named in the config; an owner known only from repos sends
// none. It fails for an owner that does not exist.
func (b *Bitbucket) exportProjects(ctx context.Context, os *sessions.Session, o *owner) error {
	if !o.list && !slices.ContainsFunc(append(slices.Clone(b.cfg.Workspaces), b.cfg.Projects...), func(n string) bool { return strings.EqualFold(n, o.name) }) {
		return nil
	}
	ps, err := b.api.projects(ctx, o.name)
	if err != nil {
		return err
	}
	s, tok, err := os.Open(ModelProject)
	if err != nil {
		return err
	}
	prev := parseHashes(tok)
	next := map[string]string{}
	var recs []sessions.Record
	for _, p := range ps {
		h := forge.HashOf(p)[:16]
		next[p.ID] = h
		if prev[p.ID] != h {
			recs = append(recs, sessions.Record{ID: b.id(ModelProject, p.ID), Data: p})
		}
	}
	if err := s.Send(ctx, recs...); err != nil {
		return err
	}
	return s.Done(ctx, formatHashes(next))
}

// exportRepo exports one repo under its owner's session. failed reports
// an entity error (listed on the repo's session); err ends the export.
func (b *Bitbucket) exportRepo(ctx context.Context, os *sessions.Session, ref repoRef) (failed bool, err error) {
	log := b.log.With().Str("repo", ref.String()).Logger()
	start := time.Now()
	rs := os.Track("repo:" + ref.String())
	counts, err := b.syncRepo(ctx, rs, ref)
	switch {
	case err == nil:
		ev := log.Info().Dur("took", time.Since(start))
		for _, m := range []string{ModelRepo, ModelPullRequest, ModelPullRequestReview, ModelPullRequestComment, modelCommit} {
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

// syncRepo sends the repo record, the pull requests updated since the
// last export with their reviews and comments, then the new commits and
// the new or moved branches and tags.
func (b *Bitbucket) syncRepo(ctx context.Context, rs *sessions.Session, ref repoRef) (map[string]int, error) {
	counts := map[string]int{}
	repo, date, err := b.api.repo(ctx, ref)
	if err != nil {
		return counts, err
	}
	// The horizon comes from this answer, received before any listing.
	hz := horizon(date, time.Now())
	if err := b.exportRepoRecord(ctx, rs, repo, counts); err != nil {
		return counts, err
	}
	if err := b.exportPulls(ctx, rs, repo, hz, counts); err != nil {
		return counts, err
	}
	n, err := b.exportCommits(ctx, rs, repo)
	counts[modelCommit] += int(n)
	return counts, err
}

func (b *Bitbucket) exportRepoRecord(ctx context.Context, rs *sessions.Session, repo Repo, counts map[string]int) error {
	s, tok, err := rs.Open(ModelRepo)
	if err != nil {
		return err
	}
	h := forge.HashOf(repo)
	if h == tok {
		return s.Done(ctx, "")
	}
	if err := s.Send(ctx, sessions.Record{ID: b.id(ModelRepo, repo.ID), Data: repo}); err != nil {
		return err
	}
	counts[ModelRepo]++
	return s.Done(ctx, h)
}

// exportPulls sends the pull requests updated after the cursor and before
// the horizon, in update order, each with its reviews and comments, a page
// at a time, checkpointing after each page.
func (b *Bitbucket) exportPulls(ctx context.Context, rs *sessions.Session, repo Repo, hz time.Time, counts map[string]int) error {
	s, tok, err := rs.Open(ModelPullRequest)
	if err != nil {
		return err
	}
	cur, err := forge.ParseCursor(tok)
	if err != nil {
		b.log.Warn().Err(err).Strs("session", s.Path()).Msg("unreadable token; exporting pull requests from the start")
		cur = forge.Cursor{}
	}
	all, err := b.api.pulls(ctx, repo, cur.Updated)
	if err != nil {
		return err
	}
	var prs []PullRequest
	for _, p := range all {
		if p.UpdatedAt.Before(hz) && cur.After(p.UpdatedAt, p.ID) {
			prs = append(prs, p)
		}
	}
	slices.SortFunc(prs, func(a, b PullRequest) int {
		if c := a.UpdatedAt.Compare(b.UpdatedAt); c != 0 {
			return c
		}
		return cmp.Compare(a.ID, b.ID)
	})
	rv, _, err := rs.Open(ModelPullRequestReview)
	if err != nil {
		return err
	}
	rc, _, err := rs.Open(ModelPullRequestComment)
	if err != nil {
		return err
	}
	key := func(p int64) string { return repo.ID + ":" + strconv.FormatInt(p, 10) }
	for start := 0; start < len(prs); start += pageSize {
		chunk := prs[start:min(start+pageSize, len(prs))]
		var recs, reviews, comments []sessions.Record
		for _, p := range chunk {
			rvs, cms, err := b.api.activity(ctx, repo, p.ID)
			if err != nil {
				return err
			}
			for _, r := range rvs {
				reviews = append(reviews, sessions.Record{ID: b.id(ModelPullRequestReview, r.ID), Data: r})
			}
			for _, c := range cms {
				comments = append(comments, sessions.Record{ID: b.id(ModelPullRequestComment, repo.ID+":"+strconv.FormatInt(c.ID, 10)), Data: c})
			}
			recs = append(recs, sessions.Record{ID: b.id(ModelPullRequest, key(p.ID)), Data: p})
		}
		// Reviews and comments first: the pull request's checkpoint must
		// follow them.
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
		cur.Advance(last.UpdatedAt, last.ID)
		if err := s.Checkpoint(ctx, cur.String()); err != nil {
			return err
		}
		counts[ModelPullRequest] += len(recs)
		counts[ModelPullRequestReview] += len(reviews)
		counts[ModelPullRequestComment] += len(comments)
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

// settle is how far behind the server's clock an export stops: a change
// whose time was taken just before a listing may commit just after it,
// and would then sort before a cursor that already passed its time. (The
// same rule as the gitea integration's; see README.md, "Incremental
// exports".)
const settle = time.Second

// horizon is the time before which pull requests are exported: the
// server's clock (the Date of the repo's answer, received before the
// listing) less settle, in whole seconds; without a Date, the local clock
// a little further back.
func horizon(date, now time.Time) time.Time {
	if !date.IsZero() {
		return date.UTC().Truncate(time.Second).Add(-settle)
	}
	return now.UTC().Truncate(time.Second).Add(-settle - 2*time.Second)
}

// exportCommits exports a repo's commits, branches and tags through the
// git integration's mirrors. The credentials go to each fetch as git
// configuration in the environment (an HTTP header scoped to the clone
// URL's server); they are never written into the mirror, and git's
// messages are scrubbed of them.
func (b *Bitbucket) exportCommits(ctx context.Context, rs *sessions.Session, repo Repo) (int64, error) {
	clone := b.api.cloneURL(repo)
	cache, err := b.cacheDir()
	if err != nil {
		return 0, err
	}
	u, err := url.Parse(clone)
	if err != nil {
		return 0, fmt.Errorf("commits of %s: clone URL: %w", repo.FullName, err)
	}
	scope := u.Scheme + "://" + u.Host + "/"
	header := b.api.gitAuth()
	_, cred, _ := strings.Cut(header, " ")
	n, err := git.ExportRemote(ctx, rs, git.Remote{
		URL:      clone,
		Name:     repo.FullName,
		CacheDir: cache,
		Config:   [][2]string{{"http." + scope + ".extraHeader", "Authorization: " + header}},
		Secrets:  []string{cred, string(b.cfg.Token)},
	})
	if err != nil {
		return n, fmt.Errorf("commits of %s: %w", repo.FullName, err)
	}
	return n, nil
}

func (b *Bitbucket) cacheDir() (string, error) {
	if b.opts.CacheDir != "" {
		return filepath.Join(b.opts.CacheDir, "git"), nil
	}
	dir, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("bitbucket: no cache folder given and no user cache folder: %w", err)
	}
	return filepath.Join(dir, "courier", "bitbucket", b.opts.ID, "git"), nil
}

// parseHashes reads "id=hash,id=hash" (ids may hold ':' and braces but
// never '=' or ','); a token that does not parse is empty (every record is
// sent again).
func parseHashes(tok string) map[string]string {
	out := map[string]string{}
	if tok == "" {
		return out
	}
	for _, part := range strings.Split(tok, ",") {
		id, h, ok := strings.Cut(part, "=")
		if !ok {
			return map[string]string{}
		}
		out[id] = h
	}
	return out
}

func formatHashes(m map[string]string) string {
	ids := make([]string, 0, len(m))
	for id := range m {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	parts := make([]string, len(ids))
	for i, id := range ids {
		parts[i] = id + "=" + m[id]
	}
	return strings.Join(parts, ",")
}
