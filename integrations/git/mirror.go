package git

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
)

// Refspecs of the mirror: branches and tags only. A full mirror refspec
// (refs/*) would also copy a forge's pull-request and review refs, which
// can outnumber branches a hundred to one and are no part of the models.
var mirrorRefspecs = []string{"+refs/heads/*:refs/heads/*", "+refs/tags/*:refs/tags/*"}

// mirrorLocks serialises work on one mirror folder within the process (two
// exports of the same integration id would otherwise race on its refs).
var mirrorLocks = struct {
	sync.Mutex
	m map[string]chan struct{}
}{m: map[string]chan struct{}{}}

func lockMirror(ctx context.Context, dir string) (unlock func(), err error) {
	mirrorLocks.Lock()
	ch, ok := mirrorLocks.m[dir]
	if !ok {
		ch = make(chan struct{}, 1)
		mirrorLocks.m[dir] = ch
	}
	mirrorLocks.Unlock()
	select {
	case ch <- struct{}{}:
		return func() { <-ch }, nil
	case <-ctx.Done():
		return nil, context.Cause(ctx)
	}
}

// probe reaches the repo with `git ls-remote --symref <source> HEAD` and
// returns its default branch ("" when its HEAD is detached or unborn).
func probe(ctx context.Context, r repoSpec, workDir string) (string, error) {
	if r.local {
		if _, err := os.Stat(r.source); err != nil {
			if errors.Is(err, os.ErrNotExist) {
				return "", errors.New("no such file or directory")
			}
			return "", redactedErr(err, r)
		}
	}
	out, err := gitCmd{dir: workDir, secrets: r.secrets, config: r.config,
		args: []string{"ls-remote", "--symref", "--", r.source, "HEAD"}}.output(ctx)
	if err != nil {
		return "", err
	}
	for _, line := range strings.Split(string(out), "\n") {
		if ref, ok := strings.CutPrefix(line, "ref: "); ok {
			target, what, _ := strings.Cut(ref, "\t")
			if what == "HEAD" {
				return strings.TrimPrefix(target, "refs/heads/"), nil
			}
		}
	}
	return "", nil
}

func redactedErr(err error, r repoSpec) error {
	return errors.New(redactText(err.Error(), r.secrets))
}

// updateMirror brings the repo's bare mirror up to date: a first run
// creates it (a local clone for a path, which hardlinks objects; an empty
// bare repo for a URL), then every run fetches branches and tags with
// --prune. The source is given on the command line each time, so a
// credential in a URL is never written into the mirror (and
// --no-write-fetch-head keeps it out of FETCH_HEAD).
func updateMirror(ctx context.Context, r repoSpec, touch func()) error {
	if !isBareRepo(r.mirror) {
		if err := os.RemoveAll(r.mirror); err != nil {
			return fmt.Errorf("remove broken mirror %s: %w", r.mirror, err)
		}
		if err := createMirror(ctx, r, touch); err != nil {
			return err
		}
	}
	args := append([]string{"--git-dir=" + r.mirror, "fetch", "--prune", "--no-tags", "--no-write-fetch-head",
		"--no-recurse-submodules", "--progress", "--", r.source}, mirrorRefspecs...)
	_, err := gitCmd{dir: r.mirror, secrets: r.secrets, config: r.config, onStderr: touch, args: args}.output(ctx)
	return err
}

// isBareRepo is a cheap check that dir holds a bare repository.
func isBareRepo(dir string) bool {
	for _, p := range []string{"HEAD", "objects", "refs"} {
		if _, err := os.Stat(filepath.Join(dir, p)); err != nil {
			return false
		}
	}
	return true
}

// createMirror makes the mirror in a temporary folder next to its place
// and renames it there, so an interrupted first run leaves nothing half
// made under the real name.
func createMirror(ctx context.Context, r repoSpec, touch func()) error {
	parent := filepath.Dir(r.mirror)
	if err := os.MkdirAll(parent, 0o755); err != nil {
		return fmt.Errorf("create cache folder: %w", err)
	}
	// leftovers of a first run that was killed
	stale, _ := filepath.Glob(filepath.Join(parent, ".tmp-"+filepath.Base(r.mirror)+"-*"))
	for _, d := range stale {
		_ = os.RemoveAll(d)
	}
	tmp, err := os.MkdirTemp(parent, ".tmp-"+filepath.Base(r.mirror)+"-")
	if err != nil {
		return fmt.Errorf("create cache folder: %w", err)
	}
	defer os.RemoveAll(tmp)
	var c gitCmd
	if r.local {
		// A local clone hardlinks (or copies) the object files: no packing.
		c = gitCmd{dir: parent, secrets: r.secrets, onStderr: touch,
			args: []string{"clone", "--bare", "--no-tags", "--progress", "--", r.source, tmp}}
	} else {
		c = gitCmd{dir: parent, args: []string{"init", "--bare", "--quiet", tmp}}
	}
	if _, err := c.output(ctx); err != nil {
		return err
	}
	// Keep no remote in the mirror's config: the source is passed on each
	// fetch. Repos' own settings must not change what the export sees.
	_, _ = gitCmd{dir: tmp, args: []string{"--git-dir=" + tmp, "config", "--remove-section", "remote.origin"}}.output(ctx)
	if _, err := (gitCmd{dir: tmp, args: []string{"--git-dir=" + tmp, "config", "gc.autoDetach", "false"}}).output(ctx); err != nil {
		return err
	}
	if err := os.Rename(tmp, r.mirror); err != nil {
		return fmt.Errorf("move new mirror into place: %w", err)
	}
	return nil
}

// ref is one branch or tag of the mirror.
type ref struct {
	name string // without refs/heads/ or refs/tags/
	// object is what the ref points at (a tag object for an annotated tag).
	object string
	// commit is object peeled to a commit; "" when it peels to something
	// else (a tag of a tree or blob).
	commit    string
	annotated bool
}

// refs lists the mirror's branches and tags, sorted by name, tags peeled.
func listRefs(ctx context.Context, r repoSpec) (branches, tags []ref, err error) {
	out, err := gitCmd{dir: r.mirror, args: []string{"--git-dir=" + r.mirror, "for-each-ref",
		"--format=%(objectname) %(objecttype) %(refname)", "refs/heads", "refs/tags"}}.output(ctx)
	if err != nil {
		return nil, nil, err
	}
	var toPeel []int
	for _, line := range strings.Split(string(out), "\n") {
		if line == "" {
			continue
		}
		parts := strings.SplitN(line, " ", 3)
		if len(parts) != 3 {
			return nil, nil, fmt.Errorf("git for-each-ref: unexpected line %q", line)
		}
		rf := ref{object: parts[0]}
		switch {
		case strings.HasPrefix(parts[2], "refs/heads/"):
			rf.name = strings.TrimPrefix(parts[2], "refs/heads/")
			if parts[1] == "commit" {
				rf.commit = rf.object
			}
			branches = append(branches, rf)
		case strings.HasPrefix(parts[2], "refs/tags/"):
			rf.name = strings.TrimPrefix(parts[2], "refs/tags/")
			switch parts[1] {
			case "commit":
				rf.commit = rf.object
			case "tag":
				rf.annotated = true
				toPeel = append(toPeel, len(tags))
			}
			tags = append(tags, rf)
		}
	}
	if len(toPeel) > 0 {
		objs := make([]string, len(toPeel))
		for i, t := range toPeel {
			objs[i] = tags[t].object + "^{}"
		}
		types, err := objectTypes(ctx, r, objs)
		if err != nil {
			return nil, nil, err
		}
		for i, t := range toPeel {
			if types[i].typ == "commit" {
				tags[t].commit = types[i].id
			}
		}
	}
	sort.Slice(branches, func(i, j int) bool { return branches[i].name < branches[j].name })
	sort.Slice(tags, func(i, j int) bool { return tags[i].name < tags[j].name })
	return branches, tags, nil
}

type objectType struct{ id, typ string } // typ "" when missing

// objectTypes resolves object names with one `git cat-file --batch-check`.
func objectTypes(ctx context.Context, r repoSpec, names []string) ([]objectType, error) {
	var in bytes.Buffer
	for _, n := range names {
		in.WriteString(n)
		in.WriteByte('\n')
	}
	out, err := gitCmd{dir: r.mirror, stdin: &in, args: []string{"--git-dir=" + r.mirror, "cat-file",
		"--batch-check=%(objectname) %(objecttype)"}}.output(ctx)
	if err != nil {
		return nil, err
	}
	res := make([]objectType, 0, len(names))
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		line := sc.Text()
		if strings.HasSuffix(line, " missing") || strings.HasSuffix(line, " ambiguous") {
			res = append(res, objectType{})
			continue
		}
		id, typ, _ := strings.Cut(line, " ")
		res = append(res, objectType{id: id, typ: typ})
	}
	if len(res) != len(names) {
		return nil, fmt.Errorf("git cat-file: %d answers for %d objects", len(res), len(names))
	}
	return res, nil
}

// existingCommits keeps the shas that name commits in the mirror. After a
// force push and a gc an old tip may be gone; excluding it would fail the
// log, so it is dropped (at worst re-sending commits the backend dedupes).
func existingCommits(ctx context.Context, r repoSpec, shas []string) ([]string, error) {
	if len(shas) == 0 {
		return nil, nil
	}
	names := make([]string, len(shas))
	for i, s := range shas {
		names[i] = s + "^{commit}"
	}
	types, err := objectTypes(ctx, r, names)
	if err != nil {
		return nil, err
	}
	var out []string
	for i, t := range types {
		if t.typ == "commit" && t.id == shas[i] {
			out = append(out, shas[i])
		}
	}
	return out, nil
}
