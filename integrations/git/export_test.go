package git

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"courier/integrations"
	"courier/sessions"
)

// at is the environment of a commit made at date (with its own offset).
func at(date string) []string {
	return []string{"GIT_AUTHOR_DATE=" + date, "GIT_COMMITTER_DATE=" + date}
}

func write(t *testing.T, dir, name, content string) {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func numbered(n int, tag string) string {
	var b strings.Builder
	for i := 0; i < n; i++ {
		fmt.Fprintf(&b, "line %d %s\n", i, tag)
	}
	return b.String()
}

// richRepo builds a working-tree repo (its path has a space and a non-ASCII
// letter) with everything the commit model must get right.
func richRepo(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "src repo ü")
	gitT(t, "", nil, "init", "-q", "-b", "main", dir)
	g := func(env []string, args ...string) string { return gitT(t, dir, env, args...) }
	g(nil, "config", "user.name", "Ada Lövelace")
	g(nil, "config", "user.email", "ada@example.com")

	// root: text, unicode and spaces in paths, a binary file
	write(t, dir, "a.txt", numbered(20, "a"))
	write(t, dir, "dir with space/ü file.txt", "hello\nwörld\n")
	write(t, dir, "bin.dat", "\x00\x01\x02binary\x00")
	g(nil, "add", "-A")
	g(at("2024-03-01T10:00:00+05:30"), "commit", "-q", "-m", "root commit\n\nwith a body")

	// a pure rename into a unicode path, and a text change
	if err := os.MkdirAll(filepath.Join(dir, "renamed"), 0o755); err != nil {
		t.Fatal(err)
	}
	g(nil, "mv", "dir with space/ü file.txt", "renamed/ü ñ file.txt")
	write(t, dir, "a.txt", numbered(20, "a")+"one more\n")
	g(at("2024-03-02T09:30:00-08:00"), "commit", "-q", "-am", "rename and change")
	g(nil, "tag", "v0.1") // lightweight

	// rename + modify
	g(nil, "mv", "a.txt", "b.txt")
	body := numbered(20, "a") + "one more\n"
	write(t, dir, "b.txt", strings.Replace(body, "line 3 a", "line 3 changed", 1))
	g(at("2024-03-03T00:15:00+00:00"), "commit", "-q", "-am", "rename with changes")

	// delete a binary file, add another one with a space in its name
	g(nil, "rm", "-q", "bin.dat")
	write(t, dir, "new bin.png", "\x89PNG\x00\x00\x01")
	g(nil, "add", "-A")
	g(at("2024-03-04T23:59:59+13:45"), "commit", "-q", "-m", "binary swap")

	// an empty commit whose message has no trailing newline and trailing
	// blank lines inside (commit-tree keeps it exactly)
	head := strings.TrimSpace(g(nil, "rev-parse", "HEAD"))
	out, err := gitE(dir, at("2024-03-05T12:00:00-03:30"), strings.NewReader("empty: exact message\n\n\n  indented  \n\ttab\n\nno final newline"),
		"commit-tree", head+"^{tree}", "-p", head, "-F", "-")
	if err != nil {
		t.Fatal(err)
	}
	c := strings.TrimSpace(out)
	g(nil, "update-ref", "refs/heads/main", c)

	// a conflicting change on a feature branch and on main, merged with
	// the conflict resolved by hand
	g(nil, "checkout", "-q", "-b", "feature")
	write(t, dir, "b.txt", strings.Replace(body, "line 0 a", "line 0 feature", 1))
	g(at("2024-03-06T08:00:00+09:00"), "commit", "-q", "-am", "feature edits line 0")
	g(nil, "checkout", "-q", "main")
	write(t, dir, "b.txt", strings.Replace(body, "line 0 a", "line 0 main", 1))
	g(at("2024-03-06T09:00:00+01:00"), "commit", "-q", "-am", "main edits line 0")
	if _, err := gitE(dir, at("2024-03-07T10:00:00+02:00"), nil, "merge", "--no-ff", "-q", "feature"); err == nil {
		t.Fatal("expected a merge conflict")
	}
	write(t, dir, "b.txt", strings.Replace(body, "line 0 a", "line 0 resolved", 1)+"added while resolving\n")
	g(nil, "add", "b.txt")
	g(at("2024-03-07T10:00:00+02:00"), "commit", "-q", "--no-edit")
	g(nil, "tag", "-a", "v1.0", "-m", "release 1.0") // annotated

	// an octopus merge: three parents, in order
	for _, b := range []string{"o1", "o2"} {
		g(nil, "checkout", "-q", "-b", b, "main")
		write(t, dir, b+".txt", b+"\n")
		g(nil, "add", "-A")
		g(at("2024-03-08T10:00:00-05:00"), "commit", "-q", "-m", b)
	}
	g(nil, "checkout", "-q", "main")
	g(at("2024-03-09T10:00:00+05:30"), "merge", "-q", "--no-ff", "-m", "octopus", "o1", "o2")

	// a branch not merged anywhere, with a slash in its name
	g(nil, "checkout", "-q", "-b", "topic/x")
	write(t, dir, "topic.txt", "t\n")
	g(nil, "add", "-A")
	g(at("2024-03-10T10:00:00+00:00"), "commit", "-q", "-m", "topic")
	// a commit reachable only from an annotated tag
	g(nil, "checkout", "-q", "-b", "tmp")
	write(t, dir, "tagonly.txt", "x\n")
	g(nil, "add", "-A")
	g(at("2024-03-11T10:00:00-11:00"), "commit", "-q", "-m", "only tagged")
	g(nil, "tag", "-a", "tag-only", "-m", "the only way in")
	g(nil, "checkout", "-q", "main")
	g(nil, "branch", "-q", "-D", "tmp")
	return dir
}

// wantCommit is what git itself says about sha in dir.
func wantCommit(t *testing.T, dir, repoName, sha string) Commit {
	t.Helper()
	out := gitT(t, dir, nil, "show", "-s", "--no-use-mailmap", "--format=%H%x00%P%x00%an%x00%ae%x00%aI%x00%cn%x00%ce%x00%cI", sha)
	f := strings.Split(strings.TrimSuffix(out, "\n"), "\x00")
	if len(f) != 8 {
		t.Fatalf("git show %s: %q", sha, out)
	}
	raw := gitT(t, dir, nil, "cat-file", "commit", sha)
	_, msg, ok := strings.Cut(raw, "\n\n")
	if !ok {
		msg = ""
	}
	c := Commit{SHA: f[0], Parents: strings.Fields(f[1]), Author: Person{f[2], f[3], f[4]},
		Committer: Person{f[5], f[6], f[7]}, Message: msg, Repo: repoName, Files: []File{}}
	if c.Parents == nil {
		c.Parents = []string{}
	}
	base := "4b825dc642cb6eb9a060e54bf8d69288fbee4904" // the empty tree
	if len(c.Parents) > 0 {
		base = c.Parents[0]
	}
	diff := gitT(t, dir, nil, "-c", "core.quotePath=false", "diff", "--numstat", "-M", "-z", base, sha)
	toks := strings.Split(diff, "\x00")
	for i := 0; i < len(toks); i++ {
		if toks[i] == "" {
			continue
		}
		parts := strings.SplitN(toks[i], "\t", 3)
		var file File
		if parts[0] == "-" {
			file.Binary = true
		} else {
			fmt.Sscan(parts[0], &file.Additions)
			fmt.Sscan(parts[1], &file.Deletions)
		}
		file.Path = parts[2]
		if parts[2] == "" {
			file.OldPath, file.Path = toks[i+1], toks[i+2]
			i += 2
		}
		c.Files = append(c.Files, file)
	}
	return c
}

func TestExportMatchesGit(t *testing.T) {
	src := richRepo(t)
	r := newRig(t)
	g := r.newGit(t, src)
	name := src // a local path is named by its absolute path
	recs, st, err := r.export(t, context.Background(), g, false)
	if err != nil {
		t.Fatal(err)
	}
	if len(st.EntityErrors) > 0 {
		t.Fatalf("entity errors: %+v", st.EntityErrors)
	}
	m := byModel(recs)

	// every commit of every branch and tag, each once, as git says
	all := lines(gitT(t, src, nil, "rev-list", "--branches", "--tags"))
	if len(m["commit"]) != len(all) {
		t.Fatalf("%d commit records, git has %d commits", len(m["commit"]), len(all))
	}
	pos := map[string]int{}
	for i, e := range m["commit"] {
		c := decode[Commit](t, e)
		if _, dup := pos[c.SHA]; dup {
			t.Fatalf("commit %s sent twice", c.SHA)
		}
		pos[c.SHA] = i
		if e.ID != "git:"+name+":"+c.SHA {
			t.Errorf("id %q", e.ID)
		}
		if want := []string{testID, "repo:" + name, "commit"}; !slices.Equal(e.Session, want) {
			t.Errorf("session %q, want %q", e.Session, want)
		}
		want := wantCommit(t, src, name, c.SHA)
		if got, w := fmt.Sprintf("%+v", c), fmt.Sprintf("%+v", want); got != w {
			t.Errorf("commit %s:\n got %s\nwant %s", c.SHA, got, w)
		}
		for _, p := range c.Parents {
			if j, ok := pos[p]; !ok || j >= i {
				t.Errorf("commit %s sent before its parent %s", c.SHA, p)
			}
		}
	}

	// spot checks, so a change to richRepo cannot hollow the test out
	find := func(subject string) Commit {
		t.Helper()
		for _, e := range m["commit"] {
			c := decode[Commit](t, e)
			if strings.HasPrefix(c.Message, subject) {
				return c
			}
		}
		t.Fatalf("no commit %q", subject)
		return Commit{}
	}
	root := find("root commit")
	if len(root.Parents) != 0 || root.Message != "root commit\n\nwith a body\n" || root.Author.Date != "2024-03-01T10:00:00+05:30" {
		t.Errorf("root: %+v", root)
	}
	if !slices.Contains(root.Files, File{Path: "dir with space/ü file.txt", Additions: 2}) ||
		!slices.Contains(root.Files, File{Path: "bin.dat", Binary: true}) {
		t.Errorf("root files: %+v", root.Files)
	}
	if c := find("rename and change"); !slices.Contains(c.Files, File{Path: "renamed/ü ñ file.txt", OldPath: "dir with space/ü file.txt"}) ||
		c.Committer.Date != "2024-03-02T09:30:00-08:00" {
		t.Errorf("rename: %+v", c)
	}
	if c := find("rename with changes"); !slices.Equal(c.Files, []File{{Path: "b.txt", OldPath: "a.txt", Additions: 1, Deletions: 1}}) {
		t.Errorf("rename with changes: %+v", c.Files)
	}
	if c := find("binary swap"); !slices.Contains(c.Files, File{Path: "bin.dat", Binary: true}) ||
		!slices.Contains(c.Files, File{Path: "new bin.png", Binary: true}) || c.Author.Date != "2024-03-04T23:59:59+13:45" {
		t.Errorf("binary swap: %+v", c)
	}
	if c := find("empty: exact message"); len(c.Files) != 0 || !strings.HasSuffix(c.Message, "\n\nno final newline") {
		t.Errorf("empty: %+v", c)
	}
	merge := find("Merge branch 'feature'")
	if len(merge.Parents) != 2 || !slices.Equal(merge.Files, []File{{Path: "b.txt", Additions: 2, Deletions: 1}}) {
		t.Errorf("conflict merge against its first parent: %+v", merge)
	}
	if c := find("octopus"); len(c.Parents) != 3 || len(c.Files) != 2 {
		t.Errorf("octopus: %+v", c)
	}
	find("only tagged")

	// branches and tags as git says
	branches := map[string]Branch{}
	for _, e := range m["branch"] {
		b := decode[Branch](t, e)
		branches[b.Name] = b
		if e.ID != "git:"+name+":branch:"+b.Name {
			t.Errorf("branch id %q", e.ID)
		}
	}
	for _, l := range lines(gitT(t, src, nil, "for-each-ref", "--format=%(refname:short) %(objectname)", "refs/heads")) {
		n, sha, _ := strings.Cut(l, " ")
		if branches[n] != (Branch{Name: n, HeadSHA: sha, Repo: name}) {
			t.Errorf("branch %s: %+v, want head %s", n, branches[n], sha)
		}
		delete(branches, n)
	}
	if len(branches) > 0 {
		t.Errorf("extra branches: %+v", branches)
	}
	tags := map[string]Tag{}
	for _, e := range m["tag"] {
		tg := decode[Tag](t, e)
		tags[tg.Name] = tg
	}
	for n, annotated := range map[string]bool{"v0.1": false, "v1.0": true, "tag-only": true} {
		sha := strings.TrimSpace(gitT(t, src, nil, "rev-parse", n+"^{commit}"))
		if tags[n] != (Tag{Name: n, SHA: sha, Repo: name, Annotated: annotated}) {
			t.Errorf("tag %s: %+v, want %s", n, tags[n], sha)
		}
	}
	if len(tags) != 3 {
		t.Errorf("tags: %+v", tags)
	}
	if len(m["repo"]) != 1 {
		t.Fatalf("repo records: %d", len(m["repo"]))
	}
	rp := decode[Repo](t, m["repo"][0])
	mainSHA := strings.TrimSpace(gitT(t, src, nil, "rev-parse", "main"))
	if rp != (Repo{Name: name, URL: src, DefaultBranch: "main", HeadSHA: mainSHA}) || m["repo"][0].ID != "git:"+name {
		t.Errorf("repo: %+v", rp)
	}
	if st.Records["commit"] != int64(len(all)) {
		t.Errorf("stats: %+v", st.Records)
	}

	// nothing changed: the next export sends nothing
	recs, st, err = r.export(t, context.Background(), g, false)
	if err != nil || len(recs) != 0 || !st.Incremental {
		t.Fatalf("second export: %d records, %+v, %v", len(recs), st, err)
	}
}

func TestExportIncremental(t *testing.T) {
	src := richRepo(t)
	r := newRig(t)
	g := r.newGit(t, src)
	first, _, err := r.export(t, context.Background(), g, false)
	if err != nil {
		t.Fatal(err)
	}
	sentBefore := map[string]bool{}
	for _, e := range first {
		if e.Model == "commit" {
			sentBefore[e.ID] = true
		}
	}
	oldTips := lines(gitT(t, src, nil, "rev-parse", "--branches", "--tags"))

	// new commits on main, a new branch from an old commit, a moved tag,
	// a deleted branch
	gi := func(args ...string) string { return gitT(t, src, at("2024-04-01T10:00:00+05:30"), args...) }
	for i := 0; i < 2; i++ {
		write(t, src, "more.txt", numbered(i+1, "more"))
		gi("add", "-A")
		gi("commit", "-q", "-m", fmt.Sprintf("more %d", i))
	}
	gi("checkout", "-q", "-b", "later", "v0.1")
	for i := 0; i < 3; i++ {
		write(t, src, "later.txt", numbered(i+1, "later"))
		gi("add", "-A")
		gi("commit", "-q", "-m", fmt.Sprintf("later %d", i))
	}
	gi("checkout", "-q", "main")
	gi("tag", "-f", "v0.1", "main")
	gi("branch", "-q", "-D", "topic/x")

	want := lines(gitT(t, src, nil, append([]string{"rev-list", "--branches", "--tags", "--not"}, oldTips...)...))
	if len(want) != 5 {
		t.Fatalf("test setup: %d new commits", len(want))
	}
	second, st, err := r.export(t, context.Background(), g, false)
	if err != nil {
		t.Fatal(err)
	}
	m := byModel(second)
	var got []string
	for _, e := range m["commit"] {
		if sentBefore[e.ID] {
			t.Errorf("%s sent again", e.ID)
		}
		got = append(got, decode[Commit](t, e).SHA)
	}
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("second export sent %v, want %v", got, want)
	}
	if !st.Incremental {
		t.Error("not incremental")
	}
	branches := map[string]Branch{}
	for _, e := range m["branch"] {
		b := decode[Branch](t, e)
		branches[b.Name] = b
	}
	if len(branches) != 3 || branches["main"].HeadSHA == "" || branches["later"].HeadSHA == "" || !branches["topic/x"].Deleted {
		t.Errorf("branch records: %+v", branches)
	}
	if len(m["tag"]) != 1 || decode[Tag](t, m["tag"][0]).Name != "v0.1" {
		t.Errorf("tag records: %+v", m["tag"])
	}
	if len(m["repo"]) != 1 { // main moved: head_sha changed
		t.Errorf("repo records: %d", len(m["repo"]))
	}

	// a force push: main loses its last commit and gains another
	gi("reset", "-q", "--hard", "main~1")
	write(t, src, "forced.txt", "forced\n")
	gi("add", "-A")
	gi("commit", "-q", "-m", "forced")
	third, _, err := r.export(t, context.Background(), g, false)
	if err != nil {
		t.Fatal(err)
	}
	if c := byModel(third)["commit"]; len(c) != 1 || decode[Commit](t, c[0]).Message != "forced\n" {
		t.Errorf("after force push: %+v", c)
	}

	// a token naming a commit the mirror does not have (gone after a gc):
	// it is dropped, the known tip still excludes what it reaches
	mainSHA := strings.TrimSpace(gitT(t, src, nil, "rev-parse", "main"))
	bogus := strings.Repeat("ab", 20)
	path := sessions.TokenPath([]string{testID, "repo:" + src, "commit"})
	if err := r.store.PutToken(context.Background(), path, encodeTips([]string{bogus, mainSHA})); err != nil {
		t.Fatal(err)
	}
	fourth, _, err := r.export(t, context.Background(), g, false)
	if err != nil {
		t.Fatal(err)
	}
	want = lines(gitT(t, src, nil, "rev-list", "--branches", "--tags", "^"+mainSHA))
	if c := byModel(fourth)["commit"]; len(c) != len(want) || len(want) == 0 {
		t.Errorf("with an unknown tip in the token: %d commits, want %d", len(c), len(want))
	}

	// reprocessing sends everything again
	full, _, err := r.export(t, context.Background(), g, true)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(byModel(full)["commit"]); n != len(lines(gitT(t, src, nil, "rev-list", "--branches", "--tags"))) {
		t.Errorf("reprocess sent %d commits", n)
	}
}

func TestExportBadRepoAmongGood(t *testing.T) {
	src := richRepo(t)
	notRepo := t.TempDir()
	missing := filepath.Join(t.TempDir(), "missing")
	r := newRig(t)
	g := r.newGit(t, missing, src, notRepo)
	recs, st, err := r.export(t, context.Background(), g, false)
	if err != nil {
		t.Fatalf("export failed for a bad repo among good ones: %v", err)
	}
	if n := len(byModel(recs)["commit"]); n == 0 {
		t.Error("the good repo was not exported")
	}
	if len(st.EntityErrors) != 2 {
		t.Fatalf("entity errors: %+v", st.EntityErrors)
	}
	for _, ee := range st.EntityErrors {
		if len(ee.Path) != 2 || ee.Path[0] != testID || (ee.Path[1] != "repo:"+missing && ee.Path[1] != "repo:"+notRepo) {
			t.Errorf("entity error path %q", ee.Path)
		}
		if !strings.Contains(ee.Error, "cannot reach") {
			t.Errorf("entity error %q", ee.Error)
		}
	}

	// every repo bad: the export fails, saying why, without credentials
	g = r.newGit(t, missing, "https://someone:hunter2secret@127.0.0.1:1/acme/x.git")
	_, _, err = r.export(t, context.Background(), g, false)
	if err == nil || !strings.Contains(err.Error(), "every repo failed") {
		t.Fatalf("all bad: %v", err)
	}
	if strings.Contains(err.Error(), "hunter2secret") || strings.Contains(err.Error(), "someone") {
		t.Errorf("credentials in the error: %v", err)
	}
	if !strings.Contains(err.Error(), "repos[1] https://127.0.0.1:1/acme/x.git") {
		t.Errorf("error does not name the repo: %v", err)
	}
}

func TestValidate(t *testing.T) {
	src := richRepo(t)
	bare := filepath.Join(t.TempDir(), "bare.git")
	gitT(t, "", nil, "clone", "-q", "--bare", src, bare)
	bare2 := filepath.Join(t.TempDir(), "other.git")
	gitT(t, "", nil, "clone", "-q", "--bare", src, bare2)
	r := newRig(t)
	g := r.newGit(t, src, "file://"+bare2, bare)
	v := g.Validate(context.Background())
	if !v.Valid || len(v.Errors) != 0 {
		t.Fatalf("good repos: %+v", v)
	}
	details := v.Details["repos"].([]map[string]any)
	for _, d := range details {
		if d["reachable"] != true || d["default_branch"] != "main" {
			t.Errorf("details: %+v", d)
		}
	}

	missing := filepath.Join(t.TempDir(), "nope")
	g = r.newGit(t, src, missing, t.TempDir(), "https://x-token-abcdef123456@127.0.0.1:1/acme/api.git")
	v = g.Validate(context.Background())
	if v.Valid || len(v.Errors) != 3 {
		t.Fatalf("bad repos: %+v", v)
	}
	for i, want := range []string{
		"repos[1] " + missing + ": cannot reach: no such file or directory",
		"does not appear to be a git repository",
		"repos[3] https://127.0.0.1:1/acme/api.git: cannot reach: git ls-remote: exit status 128: fatal: unable to access",
	} {
		if !strings.Contains(v.Errors[i], want) {
			t.Errorf("error %d: %q does not say %q", i, v.Errors[i], want)
		}
	}
	for _, e := range v.Errors {
		if strings.Contains(e, "x-token-abcdef123456") {
			t.Errorf("credential in %q", e)
		}
	}
	details = v.Details["repos"].([]map[string]any)
	if details[0]["reachable"] != true || details[1]["reachable"] != false || details[3]["url"] != "https://127.0.0.1:1/acme/api.git" {
		t.Errorf("details: %+v", details)
	}
}

func TestOnboard(t *testing.T) {
	r := newRig(t)
	g := r.newGit(t, "/srv/git/api.git", "https://tok@github.com/acme/web.git", "git@host:team/tools.git")
	var got []string
	err := g.Onboard(context.Background(), "repos", func(o integrations.Object) error {
		got = append(got, o.ID+" "+o.Name+" "+o.Data["url"].(string))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"git:/srv/git/api /srv/git/api /srv/git/api.git", "git:acme/web acme/web https://github.com/acme/web.git",
		"git:team/tools team/tools git@host:team/tools.git"}
	if !slices.Equal(got, want) {
		t.Errorf("got %q", got)
	}
	if err := g.Onboard(context.Background(), "users", nil); !errors.Is(err, integrations.ErrUnsupportedObject) {
		t.Errorf("users: %v", err)
	}
}

func TestExportCancel(t *testing.T) {
	src := generatedRepo(t, 5000)
	r := newRig(t)
	g := r.newGit(t, src)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	r.coll.SetAfter(func(n int) {
		if n >= 300 {
			cancel()
		}
	})
	start := time.Now()
	run := sessions.NewRun(sessions.RunOptions{IntegrationID: testID, Store: r.store})
	err := g.Export(ctx, run.Root())
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled export: %v", err)
	}
	if took := time.Since(start); took > 20*time.Second {
		t.Errorf("cancel took %s", took)
	}
	if st := run.Stats(); len(st.EntityErrors) != 0 {
		t.Errorf("a cancelled repo is no entity error: %+v", st.EntityErrors)
	}
}

// TestExportCheckpointResume stops an export part-way (as a crash would)
// and checks that the next one resumes after the last checkpoint: every
// commit is sent, and few twice.
func TestExportCheckpointResume(t *testing.T) {
	defer func(b, c int) { sendBatch, checkpointEvery = b, c }(sendBatch, checkpointEvery)
	sendBatch, checkpointEvery = 50, 500
	src := generatedRepo(t, 5000)
	r := newRig(t)
	g := r.newGit(t, src)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	r.coll.SetAfter(func(n int) {
		if n >= 2200 {
			cancel()
		}
	})
	run := sessions.NewRun(sessions.RunOptions{IntegrationID: testID, Store: r.store})
	if err := g.Export(ctx, run.Root()); !errors.Is(err, context.Canceled) {
		t.Fatalf("first export: %v", err)
	}
	sent := int(run.Stats().Records["commit"]) + int(run.Stats().Records["repo"])
	r.waitDelivered(t, sent)
	r.seen = sent
	first := byModel(r.coll.Take())["commit"]
	tok, ok, err := r.store.Token(sessions.TokenPath([]string{testID, "repo:" + strings.TrimSuffix(src, ".git"), "commit"}))
	if err != nil || !ok {
		t.Fatalf("no checkpoint token: %v", err)
	}
	tips, err := decodeTips(tok)
	if err != nil || len(tips) == 0 {
		t.Fatalf("checkpoint token %q: %v", tok, err)
	}
	r.coll.SetAfter(nil)
	second, _, err := r.export(t, context.Background(), g, false)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]int{}
	for _, e := range append(first, byModel(second)["commit"]...) {
		seen[e.ID]++
	}
	if len(seen) != 5000 {
		t.Fatalf("%d distinct commits over both exports, want 5000", len(seen))
	}
	again := len(first) + len(byModel(second)["commit"]) - 5000
	if again > checkpointEvery+sendBatch {
		t.Errorf("%d commits sent twice; a checkpoint every %d should bound it", again, checkpointEvery)
	}
	t.Logf("first export sent %d commits, the resumed one %d (%d again)", len(first), len(byModel(second)["commit"]), again)
}

// TestExportLargeRepo exports 5,000 commits and checks count, order and
// uniqueness; it logs the time against git log and the heap in use.
func TestExportLargeRepo(t *testing.T) {
	src := generatedRepo(t, 5000)
	r := newRig(t)
	g := r.newGit(t, src)
	start := time.Now()
	recs, _, err := r.export(t, context.Background(), g, false)
	if err != nil {
		t.Fatal(err)
	}
	took := time.Since(start)
	commits := byModel(recs)["commit"]
	if len(commits) != 5000 {
		t.Fatalf("%d commits, want 5000", len(commits))
	}
	pos := map[string]int{}
	for i, e := range commits {
		c := decode[Commit](t, e)
		pos[c.SHA] = i
		for _, p := range c.Parents {
			if j, ok := pos[p]; !ok || j >= i {
				t.Fatalf("commit %s before its parent %s", c.SHA, p)
			}
		}
	}
	for _, e := range commits[:50] { // spot-check against git
		c := decode[Commit](t, e)
		if got, want := fmt.Sprintf("%+v", c), fmt.Sprintf("%+v", wantCommit(t, src, strings.TrimSuffix(src, ".git"), c.SHA)); got != want {
			t.Errorf("commit %s:\n got %s\nwant %s", c.SHA, got, want)
		}
	}
	t.Logf("exported 5000 commits in %s (with mirror clone)", took)
}

func TestValidateCancelled(t *testing.T) {
	r := newRig(t)
	g := r.newGit(t, t.TempDir())
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	v := g.Validate(ctx)
	if v.Valid || len(v.Errors) != 1 || !strings.Contains(v.Errors[0], "cannot reach") {
		t.Errorf("cancelled validation: %+v", v)
	}
	if d := v.Details["repos"].([]map[string]any); d[0]["reachable"] != false {
		t.Errorf("details: %+v", d)
	}
}

// TestExportStoreFailureIsFatal: records that cannot be made durable fail
// the export itself, not just the repo.
func TestExportStoreFailureIsFatal(t *testing.T) {
	src := generatedRepo(t, 5000)
	r := newRig(t)
	g := r.newGit(t, src)
	run := sessions.NewRun(sessions.RunOptions{IntegrationID: testID, Store: r.store})
	var err error
	grp, _ := integrations.NewGroup(context.Background(), 0)
	grp.Go(func(ctx context.Context) error {
		err = g.Export(ctx, run.Root())
		return nil
	})
	r.waitDelivered(t, 200)
	if cerr := r.q.Close(context.Background()); cerr != nil {
		t.Fatal(cerr)
	}
	_ = grp.Wait()
	if err == nil && run.Stats().Records["commit"] == 5000 {
		t.Skip("the export finished before the queue closed")
	}
	if err == nil || strings.Contains(err.Error(), "every repo failed") {
		t.Fatalf("export with a closed queue: %v", err)
	}
	if st := run.Stats(); len(st.EntityErrors) != 0 {
		t.Errorf("a store failure is no entity error: %+v", st.EntityErrors)
	}
}

func TestExportEmptyRepo(t *testing.T) {
	empty := filepath.Join(t.TempDir(), "empty.git")
	gitT(t, "", nil, "init", "-q", "--bare", "-b", "main", empty)
	r := newRig(t)
	g := r.newGit(t, empty)
	recs, st, err := r.export(t, context.Background(), g, false)
	if err != nil || len(st.EntityErrors) != 0 {
		t.Fatalf("empty repo: %v %+v", err, st.EntityErrors)
	}
	m := byModel(recs)
	if len(m["commit"]) != 0 || len(m["branch"]) != 0 || len(m["repo"]) != 1 {
		t.Fatalf("records: %+v", recs)
	}
	if rp := decode[Repo](t, m["repo"][0]); rp.HeadSHA != "" || rp.Name != strings.TrimSuffix(empty, ".git") {
		t.Errorf("repo: %+v", rp)
	}
	// its first commits arrive later
	work := filepath.Join(t.TempDir(), "work")
	gitT(t, "", nil, "clone", "-q", empty, work)
	write(t, work, "f.txt", "x\n")
	gitT(t, work, nil, "add", "-A")
	gitT(t, work, nil, "commit", "-q", "-m", "first")
	gitT(t, work, nil, "push", "-q", "origin", "HEAD:main")
	recs, _, err = r.export(t, context.Background(), g, false)
	if err != nil {
		t.Fatal(err)
	}
	if m := byModel(recs); len(m["commit"]) != 1 || len(m["branch"]) != 1 || decode[Repo](t, m["repo"][0]).DefaultBranch != "main" {
		t.Errorf("after the first push: %+v", recs)
	}
}

// TestExportFileURL goes through git's transport (init --bare + fetch)
// rather than a local clone, and checks the mirror keeps no address.
func TestExportFileURL(t *testing.T) {
	src := richRepo(t)
	r := newRig(t)
	g := r.newGit(t, "file://"+src)
	recs, st, err := r.export(t, context.Background(), g, false)
	if err != nil || len(st.EntityErrors) != 0 {
		t.Fatalf("%v %+v", err, st.EntityErrors)
	}
	if n, want := len(byModel(recs)["commit"]), len(lines(gitT(t, src, nil, "rev-list", "--branches", "--tags"))); n != want {
		t.Errorf("%d commits, want %d", n, want)
	}
	mirror := g.repos[0].mirror
	if !strings.HasPrefix(mirror, r.cache+"/") || !isBareRepo(mirror) {
		t.Fatalf("mirror %s", mirror)
	}
	if _, err := os.Stat(filepath.Join(mirror, "FETCH_HEAD")); err == nil {
		t.Error("the mirror has a FETCH_HEAD (it would hold the URL)")
	}
	cfg, err := os.ReadFile(filepath.Join(mirror, "config"))
	if err != nil || strings.Contains(string(cfg), "url") {
		t.Errorf("mirror config %q %v", cfg, err)
	}
	// a mirror folder that is not a repository is made again
	if err := os.RemoveAll(filepath.Join(mirror, "objects")); err != nil {
		t.Fatal(err)
	}
	recs, st, err = r.export(t, context.Background(), g, true)
	if err != nil || len(st.EntityErrors) != 0 || len(byModel(recs)["commit"]) == 0 {
		t.Fatalf("after breaking the mirror: %v %+v", err, st.EntityErrors)
	}
}
