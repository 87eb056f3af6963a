// Package git exports commits, branches and tags of git repositories,
// local or remote, through bare mirrors kept in the integration's cache
// folder. It runs the real git program; see README.md for the config and
// the models.
package git

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"courier/integrations"
	"courier/sessions"
)

// Type is the integration's name.
const Type = "git"

// parallelRepos is how many repos are exported at once: one can fetch
// while another's log is parsed.
const parallelRepos = 2

// probeTimeout bounds Validate's reach of one repo.
const probeTimeout = 60 * time.Second

func init() {
	integrations.Register(integrations.Registration{
		Type:      Type,
		NewConfig: func() integrations.Config { c := &Config{}; c.SetToDefault(); return c },
		New: func(opts integrations.Options, cfg integrations.Config) (integrations.Integration, error) {
			return New(opts, cfg.(*Config))
		},
		Objects: []string{integrations.ObjectRepos},
	})
}

// Config of the git integration.
type Config struct {
	// Repos are local paths (absolute or relative, a working tree or a
	// bare repo) or URLs (https://, ssh://, file://, user@host:path).
	Repos []string `json:"repos" yaml:"repos"`
}

// SetToDefault empties the config: there is no default repo.
func (c *Config) SetToDefault() { *c = Config{} }

// Validate checks every repo's syntax and that no two repos share a name.
func (c *Config) Validate() error {
	if len(c.Repos) == 0 {
		return errors.New("repos: give at least one repository (a path or a URL)")
	}
	_, err := resolveRepos(c.Repos, "")
	return err
}

// resolveRepos parses every configured repo, relative paths against base;
// errors name the index.
func resolveRepos(raw []string, base string) ([]repoSpec, error) {
	var errs []error
	specs := make([]repoSpec, 0, len(raw))
	byName := map[string]int{}
	for i, v := range raw {
		s, err := parseRepo(i, v, base)
		if err != nil {
			errs = append(errs, fmt.Errorf("repos[%d]: %w", i, err))
			continue
		}
		if j, dup := byName[s.name]; dup {
			errs = append(errs, fmt.Errorf("repos[%d]: %s has the same repo name %q as repos[%d]; records of both would mix", i, s.display, s.name, j))
			continue
		}
		byName[s.name] = i
		specs = append(specs, s)
	}
	return specs, errors.Join(errs...)
}

// Git is one configured instance.
type Git struct {
	opts  integrations.Options
	repos []repoSpec
}

// New builds an instance. Relative local paths are made absolute now,
// against opts.BaseDir (the agent's root).
func New(opts integrations.Options, cfg *Config) (*Git, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("git config: %w", err)
	}
	// Against the root, two entries can name one repo that did not look
	// alike against the current folder.
	specs, err := resolveRepos(cfg.Repos, opts.BaseDir)
	if err != nil {
		return nil, fmt.Errorf("git config: %w", err)
	}
	cache := opts.CacheDir
	if cache == "" {
		dir, err := os.UserCacheDir()
		if err != nil {
			return nil, fmt.Errorf("git: no cache folder given and no user cache folder: %w", err)
		}
		cache = filepath.Join(dir, "courier", "git", opts.ID)
		opts.Logger.Warn().Str("cache", cache).Msg("no cache folder given; keeping git mirrors in the user cache folder")
	}
	for i := range specs {
		specs[i].mirror = filepath.Join(cache, mirrorDirName(specs[i]))
	}
	return &Git{opts: opts, repos: specs}, nil
}

// Validate reaches every repo (`git ls-remote`, which for a path also
// checks that it is a git repository) and says which cannot and why.
func (g *Git) Validate(ctx context.Context) integrations.Validation {
	v := integrations.Validation{Valid: true, Errors: []string{}}
	type result struct {
		branch string
		err    error
	}
	results := make([]result, len(g.repos))
	for i := range results {
		results[i].err = errors.New("not checked: validation was cancelled")
	}
	grp, _ := integrations.NewGroup(ctx, 4)
	for i, r := range g.repos {
		grp.Go(func(ctx context.Context) error {
			pctx, cancel := context.WithTimeout(ctx, probeTimeout)
			defer cancel()
			b, err := probe(pctx, r, os.TempDir())
			if err != nil && pctx.Err() != nil && ctx.Err() == nil {
				err = fmt.Errorf("no answer within %s", probeTimeout)
			}
			results[i] = result{b, err}
			return nil
		})
	}
	_ = grp.Wait() // each probe returns nil; its result says how it went
	details := make([]map[string]any, len(g.repos))
	for i, r := range g.repos {
		d := map[string]any{"repo": r.name, "url": r.display, "reachable": results[i].err == nil,
			"default_branch": results[i].branch}
		if err := results[i].err; err != nil {
			d["error"] = err.Error()
			v.Problem(fmt.Sprintf("%s: cannot reach: %v", r.label(), err))
		}
		details[i] = d
	}
	v.Details = map[string]any{"repos": details}
	return v
}

// Onboard lists the configured repos.
func (g *Git) Onboard(ctx context.Context, objectType string, emit func(integrations.Object) error) error {
	if objectType != integrations.ObjectRepos {
		return fmt.Errorf("%w: %q (git lists repos)", integrations.ErrUnsupportedObject, objectType)
	}
	for _, r := range g.repos {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := emit(integrations.Object{ID: "git:" + r.name, Name: r.name, Data: map[string]any{"url": r.display}}); err != nil {
			return err
		}
	}
	return nil
}

// Export exports every repo, parallelRepos at a time. A repo that fails is
// an entity error and the others go on; the export fails when every repo
// failed, or when records cannot be made durable.
func (g *Git) Export(ctx context.Context, root *sessions.Session) error {
	var (
		mu       sync.Mutex
		failures []error
	)
	grp, _ := integrations.NewGroup(ctx, parallelRepos)
	for _, r := range g.repos {
		grp.Go(func(ctx context.Context) error {
			failed, err := g.exportRepo(ctx, root, r)
			if failed != nil {
				mu.Lock()
				failures = append(failures, fmt.Errorf("%s: %w", r.label(), failed))
				mu.Unlock()
			}
			return err
		})
	}
	if err := grp.Wait(); err != nil {
		return err
	}
	if ctx.Err() != nil {
		return context.Cause(ctx)
	}
	if len(failures) == len(g.repos) {
		return fmt.Errorf("git: every repo failed: %w", errors.Join(failures...))
	}
	return root.Done(ctx, "")
}

// entityError marks a failure of one repo (git could not reach, fetch or
// read it), as opposed to a failure of the export itself.
type entityError struct{ err error }

func (e *entityError) Error() string { return e.err.Error() }
func (e *entityError) Unwrap() error { return e.err }

func entity(err error) error {
	if err == nil {
		return nil
	}
	return &entityError{err: err}
}

// exportRepo exports one repo under its tracking session. It returns the
// repo's own failure (reported as an entity error) apart from a failure
// that must end the export (cancellation, records that cannot be sent).
func (g *Git) exportRepo(ctx context.Context, root *sessions.Session, r repoSpec) (failed, fatal error) {
	log := g.opts.Logger.With().Str("repo", r.name).Logger()
	start := time.Now()
	rs := root.Track("repo:" + r.name)
	n, err := g.syncRepo(ctx, rs, r)
	var ee *entityError
	switch {
	case err == nil:
		log.Info().Int64("commits", n).Dur("took_ms", time.Since(start)).Msg("repo exported")
		return nil, rs.Done(ctx, "")
	case ctx.Err() != nil:
		return nil, context.Cause(ctx)
	case errors.As(err, &ee):
		log.Error().Err(ee.err).Msg("repo failed")
		rs.Fail(ee.err)
		return ee.err, nil
	default:
		return nil, err
	}
}

// syncRepo updates the mirror, then sends the repo, its new commits, and
// its changed branches and tags. It returns the commits sent.
func (g *Git) syncRepo(ctx context.Context, rs *sessions.Session, r repoSpec) (int64, error) {
	unlock, err := lockMirror(ctx, r.mirror)
	if err != nil {
		return 0, err
	}
	defer unlock()
	// git's progress meter on stderr shows the watchdog that a long clone
	// or fetch is alive.
	touch := func() { rs.Progress(0, 0) }
	defaultBranch, err := probe(ctx, r, os.TempDir())
	if err != nil {
		return 0, entity(fmt.Errorf("cannot reach: %w", err))
	}
	if err := updateMirror(ctx, r, touch); err != nil {
		return 0, entity(fmt.Errorf("update mirror: %w", err))
	}
	branches, tags, err := listRefs(ctx, r)
	if err != nil {
		return 0, entity(fmt.Errorf("list refs: %w", err))
	}
	if err := exportRepoRecord(ctx, rs, r, defaultBranch, branches); err != nil {
		return 0, err
	}
	n, err := exportCommits(ctx, rs, r, branches, tags)
	if err != nil {
		return n, err
	}
	if err := exportRefs(ctx, rs, r, "branch", branches); err != nil {
		return n, err
	}
	return n, exportRefs(ctx, rs, r, "tag", tags)
}
