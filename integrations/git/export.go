package git

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"

	"courier/integrations"
	"courier/sessions"
)

// Tunables of the commit stream (variables so tests can shrink them).
var (
	// sendBatch is how many commits go to the queue per Send.
	sendBatch = 200
	// checkpointEvery is how many commits are sent between checkpoints
	// of the commit session's token.
	checkpointEvery = 5000
	// pipelineDepth is how many parsed batches may wait for the queue.
	pipelineDepth = 2
	// maxCheckpointTips skips a checkpoint when the frontier of sent
	// commits is wider than this (very many open lines of work).
	maxCheckpointTips = 2000
)

// refsBatch is how many branch or tag records go per Send.
const refsBatch = 500

// commitToken is the commit session's token: every commit reachable from
// Tips was sent. The next export excludes them (^tip) from its log.
type commitToken struct {
	V    int      `json:"v"`
	Tips []string `json:"tips"`
}

func encodeTips(tips []string) string {
	t := slices.Clone(tips)
	slices.Sort(t)
	t = slices.Compact(t)
	b, _ := json.Marshal(commitToken{V: 1, Tips: t})
	return string(b)
}

func decodeTips(tok string) ([]string, error) {
	if tok == "" {
		return nil, nil
	}
	var t commitToken
	if err := json.Unmarshal([]byte(tok), &t); err != nil {
		return nil, err
	}
	if t.V != 1 {
		return nil, fmt.Errorf("token version %d", t.V)
	}
	for _, s := range t.Tips {
		if !isHex(s) {
			return nil, fmt.Errorf("token tip %q is not a sha", s)
		}
	}
	return t.Tips, nil
}

func isHex(s string) bool {
	if len(s) != 40 && len(s) != 64 {
		return false
	}
	for _, c := range s {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// commitTips are the commits of every branch and tag, sorted, unique.
func commitTips(branches, tags []ref) []string {
	var tips []string
	for _, rf := range append(slices.Clone(branches), tags...) {
		if rf.commit != "" {
			tips = append(tips, rf.commit)
		}
	}
	slices.Sort(tips)
	return slices.Compact(tips)
}

// revisions is the --stdin input of rev-list and log: the tips, then each
// already-sent tip negated.
func revisions(tips, exclude []string) string {
	var b strings.Builder
	for _, t := range tips {
		b.WriteString(t)
		b.WriteByte('\n')
	}
	for _, t := range exclude {
		b.WriteByte('^')
		b.WriteString(t)
		b.WriteByte('\n')
	}
	return b.String()
}

// exportCommits sends the commits reachable from the branches and tags
// and not from the tips the last export recorded, parents before children,
// from one streaming `git log`.
func exportCommits(ctx context.Context, rs *sessions.Session, r repoSpec, branches, tags []ref) (int64, error) {
	sess, tok, err := rs.Open("commit")
	if err != nil {
		return 0, err
	}
	old, err := decodeTips(tok)
	if err != nil {
		// A token this code cannot read: export everything again (the
		// backend dedupes by record id) rather than fail forever.
		old = nil
	}
	if old, err = existingCommits(ctx, r, old); err != nil {
		return 0, entity(fmt.Errorf("check last export's tips: %w", err))
	}
	tips := commitTips(branches, tags)
	if len(tips) == 0 {
		return 0, sess.Done(ctx, "")
	}
	revs := revisions(tips, old)
	out, err := gitCmd{dir: r.mirror, stdin: strings.NewReader(revs),
		args: []string{"--git-dir=" + r.mirror, "rev-list", "--count", "--stdin"}}.output(ctx)
	if err != nil {
		return 0, entity(fmt.Errorf("count commits: %w", err))
	}
	total, err := strconv.ParseInt(strings.TrimSpace(string(out)), 10, 64)
	if err != nil {
		return 0, entity(fmt.Errorf("count commits: %q: %w", out, err))
	}
	sess.Progress(0, total)
	var sent int64
	if total > 0 {
		if sent, err = streamCommits(ctx, sess, r, revs, old, total); err != nil {
			return sent, err
		}
	}
	sess.Progress(sent, max(total, sent))
	return sent, sess.Done(ctx, encodeTips(tips))
}

// streamCommits runs one git log over revs and sends its commits in
// batches, checkpointing the token now and then. Parsing and sending run
// side by side with at most pipelineDepth batches between them, so git
// keeps producing while a batch waits for the queue's fsync.
//
// A checkpoint's token is the old tips plus the frontier of the commits
// sent so far (those with no child sent yet): with parents sent before
// children, every commit reachable from it was sent, so it is a valid
// place to resume from.
func streamCommits(ctx context.Context, sess *sessions.Session, r repoSpec, revs string, old []string, total int64) (int64, error) {
	grp, _ := integrations.NewGroup(ctx, 0)
	batches := make(chan []sessions.Record, pipelineDepth)
	grp.Go(func(ctx context.Context) error {
		defer close(batches)
		return parseCommits(ctx, r, revs, batches)
	})
	var sent int64
	grp.Go(func(ctx context.Context) error {
		frontier := map[string]struct{}{}
		var sinceCheckpoint int64
		for batch := range batches {
			if err := sess.Send(ctx, batch...); err != nil {
				return err
			}
			for _, rec := range batch {
				c := rec.Data.(Commit)
				for _, par := range c.Parents {
					delete(frontier, par)
				}
				frontier[c.SHA] = struct{}{}
			}
			sent += int64(len(batch))
			sinceCheckpoint += int64(len(batch))
			sess.Progress(sent, max(total, sent))
			if sinceCheckpoint >= int64(checkpointEvery) && len(frontier) <= maxCheckpointTips {
				if err := sess.Checkpoint(ctx, encodeTips(slices.Concat(old, mapKeys(frontier)))); err != nil {
					return err
				}
				sinceCheckpoint = 0
			}
		}
		return nil
	})
	err := grp.Wait()
	if err != nil && ctx.Err() != nil {
		return sent, context.Cause(ctx)
	}
	return sent, err
}

// parseCommits runs git log and hands its commits out in batches. Its
// errors are the repo's (entity errors).
func parseCommits(ctx context.Context, r repoSpec, revs string, out chan<- []sessions.Record) error {
	proc, err := gitCmd{dir: r.mirror, stdin: strings.NewReader(revs), args: logArgs(r.mirror)}.start(ctx)
	if err != nil {
		return entity(fmt.Errorf("git log: %w", err))
	}
	p := newLogParser(proc.Stdout, r.name)
	batch := make([]sessions.Record, 0, sendBatch)
	hand := func() bool {
		select {
		case out <- batch:
			batch = make([]sessions.Record, 0, sendBatch)
			return true
		case <-ctx.Done():
			return false
		}
	}
	for {
		c, err := p.next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			proc.stop()
			if ctx.Err() != nil {
				return context.Cause(ctx)
			}
			return entity(fmt.Errorf("read git log: %w", err))
		}
		batch = append(batch, sessions.Record{ID: "git:" + r.name + ":" + c.SHA, Data: c})
		if len(batch) == sendBatch && !hand() {
			proc.stop()
			return context.Cause(ctx)
		}
	}
	if err := proc.wait(); err != nil {
		if ctx.Err() != nil {
			return context.Cause(ctx)
		}
		return entity(err)
	}
	if len(batch) > 0 && !hand() {
		return context.Cause(ctx)
	}
	return nil
}

func mapKeys(m map[string]struct{}) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}

// Repo is the `repo` model.
type Repo struct {
	Name string `json:"name"`
	// URL is the configured address without credentials (the absolute
	// path for a local repo).
	URL           string `json:"url"`
	DefaultBranch string `json:"default_branch"`
	HeadSHA       string `json:"head_sha,omitempty"`
}

// exportRepoRecord sends the repo record when it changed since the last
// export (its token is the record itself).
func exportRepoRecord(ctx context.Context, rs *sessions.Session, r repoSpec, defaultBranch string, branches []ref) error {
	sess, tok, err := rs.Open("repo")
	if err != nil {
		return err
	}
	rec := Repo{Name: r.name, URL: r.display, DefaultBranch: defaultBranch}
	for _, b := range branches {
		if b.name == defaultBranch {
			rec.HeadSHA = b.commit
		}
	}
	b, _ := json.Marshal(rec)
	if string(b) == tok {
		return sess.Done(ctx, "")
	}
	if err := sess.Send(ctx, sessions.Record{ID: "git:" + r.name, Data: rec}); err != nil {
		return err
	}
	return sess.Done(ctx, string(b))
}

// Branch is the `branch` model.
type Branch struct {
	Name    string `json:"name"`
	HeadSHA string `json:"head_sha"`
	Repo    string `json:"repo"`
	// Deleted marks a branch that existed at the last export and is gone.
	Deleted bool `json:"deleted,omitempty"`
}

// Tag is the `tag` model.
type Tag struct {
	Name string `json:"name"`
	// SHA is the commit the tag points to, annotated tags peeled.
	SHA       string `json:"sha"`
	Repo      string `json:"repo"`
	Annotated bool   `json:"annotated"`
	Deleted   bool   `json:"deleted,omitempty"`
}

// exportRefs sends the branches (model "branch") or tags ("tag") that are
// new or moved since the last export, and a deleted record for each that
// is gone. The token maps each name to the object its ref pointed at.
func exportRefs(ctx context.Context, rs *sessions.Session, r repoSpec, model string, refs []ref) error {
	sess, tok, err := rs.Open(model)
	if err != nil {
		return err
	}
	old := map[string]string{}
	if tok != "" {
		if err := json.Unmarshal([]byte(tok), &old); err != nil {
			old = map[string]string{} // unreadable: send them all again
		}
	}
	cur := make(map[string]string, len(refs))
	changed := false
	var batch []sessions.Record
	send := func(rec sessions.Record) error {
		changed = true
		batch = append(batch, rec)
		if len(batch) < refsBatch {
			return nil
		}
		err := sess.Send(ctx, batch...)
		batch = batch[:0]
		return err
	}
	prefix := "git:" + r.name + ":" + model + ":"
	for _, rf := range refs {
		cur[rf.name] = rf.object
		if old[rf.name] == rf.object {
			continue
		}
		var rec sessions.Record
		if model == "branch" {
			rec = sessions.Record{ID: prefix + rf.name, Data: Branch{Name: rf.name, HeadSHA: rf.commit, Repo: r.name}}
		} else {
			if rf.commit == "" {
				continue // a tag of a tree or a blob: no commit to point to
			}
			rec = sessions.Record{ID: prefix + rf.name, Data: Tag{Name: rf.name, SHA: rf.commit, Repo: r.name, Annotated: rf.annotated}}
		}
		if err := send(rec); err != nil {
			return err
		}
	}
	gone := make([]string, 0)
	for name := range old {
		if _, ok := cur[name]; !ok {
			gone = append(gone, name)
		}
	}
	slices.Sort(gone)
	for _, name := range gone {
		var data any = Branch{Name: name, Repo: r.name, Deleted: true}
		if model == "tag" {
			data = Tag{Name: name, Repo: r.name, Deleted: true}
		}
		if err := send(sessions.Record{ID: prefix + name, Data: data}); err != nil {
			return err
		}
	}
	if len(batch) > 0 {
		if err := sess.Send(ctx, batch...); err != nil {
			return err
		}
	}
	if !changed && len(gone) == 0 && len(old) == len(cur) {
		return sess.Done(ctx, "")
	}
	b, _ := json.Marshal(cur)
	return sess.Done(ctx, string(b))
}
