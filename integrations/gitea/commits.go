package gitea

import (
	"context"
	"encoding/base64"
	"fmt"
	"net/url"
	"os"
	"path/filepath"

	sdk "code.gitea.io/sdk/gitea"

	"courier/integrations/git"
	"courier/sessions"
)

// gitUser is the user name sent with the token in git's Basic
// authorization. Gitea ignores it when the password is an access token
// (it takes the token's owner); it is not the token itself because Gitea
// logs the user name of a Basic login at trace level.
const gitUser = "courier"

// modelCommit is the git integration's commit model, counted in the log.
const modelCommit = "commit"

// exportCommits exports a repo's commits, branches and tags through the
// git integration's mirrors (in this integration's cache folder). The
// token goes to each fetch as git configuration in the environment (an
// HTTP header scoped to the configured server): it is never written into
// the mirror, and git's messages are scrubbed of it. A fetch that fails
// is the repo's own failure (git.IsRepoError, an entity error).
func (g *Gitea) exportCommits(ctx context.Context, rs *sessions.Session, repo *sdk.Repository) (int64, error) {
	clone := g.cloneURL(repo)
	cache, err := g.cacheDir()
	if err != nil {
		return 0, err
	}
	basic := base64.StdEncoding.EncodeToString([]byte(gitUser + ":" + g.cfg.Token))
	n, err := git.ExportRemote(ctx, rs, git.Remote{
		URL:      clone,
		Name:     repo.FullName,
		CacheDir: cache,
		Config:   [][2]string{{"http." + g.base + "/.extraHeader", "Authorization: Basic " + basic}},
		Secrets:  []string{basic, string(g.cfg.Token)},
	})
	if err != nil {
		// git's messages are already scrubbed of Secrets.
		return n, fmt.Errorf("commits of %s: %w", repo.FullName, err)
	}
	return n, nil
}

// cloneURL is where a repo's git data is fetched: <url>/<owner>/<name>.git
// on the configured server. Gitea's clone_url is the same address when
// the server's ROOT_URL is the configured url; when it is not (a server
// reached under another name, a proxy, a ROOT_URL left at
// http://localhost:3000), the configured url is the one known to reach
// the server, and the only one the token is meant for.
func (g *Gitea) cloneURL(repo *sdk.Repository) string {
	own := repo.Owner.UserName
	u := g.base + "/" + url.PathEscape(own) + "/" + url.PathEscape(repo.Name) + ".git"
	if repo.CloneURL != "" && repo.CloneURL != u {
		g.rootOnce.Do(func() {
			g.log.Info().Str("clone_url", repo.CloneURL).Str("fetching", u).
				Msg("the server's clone_url (its ROOT_URL) differs from the configured url; git data is fetched from the configured url")
		})
	}
	return u
}

// cacheDir is where git mirrors live: the integration's cache folder, or
// the user's cache folder when none was given.
func (g *Gitea) cacheDir() (string, error) {
	if g.opts.CacheDir != "" {
		return filepath.Join(g.opts.CacheDir, "git"), nil
	}
	dir, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("gitea: no cache folder given and no user cache folder: %w", err)
	}
	return filepath.Join(dir, "courier", "gitea", g.opts.ID, "git"), nil
}
