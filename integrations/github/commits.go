package github

import (
	"context"
	"encoding/base64"
	"fmt"
	"net/url"
	"os"
	"path/filepath"

	gh "github.com/google/go-github/v92/github"

	"courier/integrations/git"
	"courier/sessions"
)

// exportCommits exports a repo's commits, branches and tags through the
// git integration's mirrors (in this integration's cache folder), fetching
// with the token given through git's environment as an HTTP header scoped
// to the clone URL's host: it is never written into the mirror nor on a
// command line, and git's messages are scrubbed of it.
func (g *GitHub) exportCommits(ctx context.Context, rs *sessions.Session, r *gh.Repository) error {
	clone := r.GetCloneURL()
	if clone == "" {
		return nil
	}
	u, err := url.Parse(clone)
	if err != nil || u.Host == "" {
		return &entityError{err: fmt.Errorf("commits: clone_url %q is not a URL", clone)}
	}
	cache, err := g.cacheDir()
	if err != nil {
		return err
	}
	basic := base64.StdEncoding.EncodeToString([]byte("x-access-token:" + string(g.cfg.Token)))
	scope := u.Scheme + "://" + u.Host + "/"
	_, err = git.ExportRemote(ctx, rs, git.Remote{
		URL:      clone,
		CacheDir: cache,
		Config:   [][2]string{{"http." + scope + ".extraHeader", "Authorization: Basic " + basic}},
		Secrets:  []string{basic, string(g.cfg.Token)},
	})
	if err != nil && git.IsRepoError(err) {
		return &entityError{err: fmt.Errorf("commits: %w", err)}
	}
	return err
}

// cacheDir is where git mirrors live: the integration's cache folder, or
// the user's cache folder when none was given.
func (g *GitHub) cacheDir() (string, error) {
	if g.opts.CacheDir != "" {
		return filepath.Join(g.opts.CacheDir, "git"), nil
	}
	dir, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("github: no cache folder given and no user cache folder: %w", err)
	}
	return filepath.Join(dir, "courier", "github", g.opts.ID, "git"), nil
}
