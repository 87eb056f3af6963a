package git

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"

	"courier/sessions"
)

// Remote is a repository that another integration (github, gitea) found
// and exports through this package's mirrors.
type Remote struct {
	// URL is the clone URL, without credentials.
	URL string
	// Name, when set, is the repo's name in record ids and session paths
	// ("owner/name"); otherwise it is derived from URL's path, which for a
	// server under a sub-path would carry the sub-path too.
	Name string
	// CacheDir is where the mirrors live (the calling integration's cache).
	CacheDir string
	// Config is git configuration for the fetch only, e.g.
	// {"http.https://host/.extraHeader", "Authorization: Basic ..."}:
	// credentials given per command through the environment, never written
	// into the mirror and never on a command line other users can see.
	Config [][2]string
	// Secrets are scrubbed from git's messages (the credentials in Config).
	Secrets []string
}

// ExportRemote brings r's mirror up to date and sends its new commits and
// its new or moved branches and tags under the tracking session rs (model
// sessions commit, branch and tag, as the git integration's own; record ids
// git:<name>:..., the name as the git integration derives it from the URL).
// A failure of the repository itself (unreachable, git failing) satisfies
// IsRepoError; any other error (records that cannot be sent, cancellation)
// must end the export.
func ExportRemote(ctx context.Context, rs *sessions.Session, r Remote) (commits int64, err error) {
	spec, err := parseRepo(0, r.URL, "")
	if err != nil {
		return 0, entity(err)
	}
	if r.Name != "" {
		spec.name = r.Name
	}
	spec.secrets = append(spec.secrets, r.Secrets...)
	spec.mirror = filepath.Join(r.CacheDir, mirrorDirName(spec))
	unlock, err := lockMirror(ctx, spec.mirror)
	if err != nil {
		return 0, err
	}
	defer unlock()
	touch := func() { rs.Progress(0, 0) }
	if !isBareRepo(spec.mirror) {
		if err := createMirror(ctx, spec, touch); err != nil { // no remote reached: no GitArgs needed
			return 0, entity(fmt.Errorf("create mirror: %w", err))
		}
	}
	// As updateMirror, with credential helpers off (none may store or
	// replace what the caller gives) and the caller's configuration.
	args := []string{"-c", "credential.helper=", "--git-dir=" + spec.mirror, "fetch", "--prune", "--no-tags",
		"--no-write-fetch-head", "--no-recurse-submodules", "--progress", "--", spec.source}
	if _, err := (gitCmd{dir: spec.mirror, secrets: spec.secrets, onStderr: touch, config: append(spec.config, r.Config...), args: append(args, mirrorRefspecs...)}).output(ctx); err != nil {
		return 0, entity(fmt.Errorf("update mirror: %w", err))
	}
	branches, tags, err := listRefs(ctx, spec)
	if err != nil {
		return 0, entity(fmt.Errorf("list refs: %w", err))
	}
	n, err := exportCommits(ctx, rs, spec, branches, tags)
	if err != nil {
		return n, err
	}
	if err := exportRefs(ctx, rs, spec, "branch", branches); err != nil {
		return n, err
	}
	return n, exportRefs(ctx, rs, spec, "tag", tags)
}

// IsRepoError reports whether an error of ExportRemote is the repository's
// own failure (report it as an entity error and go on).
func IsRepoError(err error) bool {
	var ee *entityError
	return errors.As(err, &ee)
}
