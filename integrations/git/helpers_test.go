package git

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/rs/zerolog"
	"go.uber.org/goleak"

	"courier/actors"
	"courier/integrations"
	"courier/internal/exporttest"
	"courier/queue"
	"courier/sessions"
)

// testHome is a HOME with no git config for every git the tests run.
var testHome string

func TestMain(m *testing.M) {
	var err error
	if testHome, err = os.MkdirTemp("", "courier-git-test-home-"); err != nil {
		panic(err)
	}
	for k, v := range map[string]string{
		"HOME": testHome, "XDG_CONFIG_HOME": testHome, "GIT_CONFIG_GLOBAL": os.DevNull,
		"GIT_CONFIG_NOSYSTEM": "1", "GIT_AUTHOR_NAME": "Default Author", "GIT_AUTHOR_EMAIL": "default@example.com",
		"GIT_COMMITTER_NAME": "Default Committer", "GIT_COMMITTER_EMAIL": "committer@example.com",
	} {
		if err := os.Setenv(k, v); err != nil {
			panic(err)
		}
	}
	goleak.VerifyTestMain(m, exporttest.GoleakOptions(goleak.Cleanup(func(int) {
		_ = os.RemoveAll(testHome)
		cleanupGenerated()
	}))...)
}

// git runs git in dir with extra environment and returns its stdout; a
// failure fails the test.
func gitT(t testing.TB, dir string, env []string, args ...string) string {
	t.Helper()
	out, err := gitE(dir, env, nil, args...)
	if err != nil {
		t.Fatalf("git %s: %v", strings.Join(args, " "), err)
	}
	return out
}

func gitE(dir string, env []string, stdin io.Reader, args ...string) (string, error) {
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdin = stdin
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("%v: %s", err, errb.String())
	}
	return out.String(), nil
}

// envelope is one delivered record.
type envelope = exporttest.Envelope

// rig is the real path: a Pebble queue on disk (exporttest.Rig, queue
// only) whose router delivers to a recorder, with the session store over
// it.
type rig struct {
	*exporttest.Rig
	q     *queue.Queue
	store actors.QueueStore
	coll  *exporttest.Recorder
	cache string
	log   zerolog.Logger
	seen  int // records delivered before the current export
}

func newRig(t testing.TB) *rig {
	t.Helper()
	r := exporttest.New(t, exporttest.Options{QueueOnly: true, Level: zerolog.WarnLevel, Echo: true})
	return &rig{Rig: r, q: r.Q, store: r.Store, coll: r.Rec, cache: t.TempDir(), log: r.Log}
}

const testID = "int_git"

func (r *rig) newGit(t testing.TB, repos ...string) *Git {
	t.Helper()
	g, err := New(integrations.Options{ID: testID, Logger: r.log, CacheDir: r.cache}, &Config{Repos: repos})
	if err != nil {
		t.Fatal(err)
	}
	return g
}

// export runs one export to its end and waits until every record it sent
// was delivered; it returns them with the run's stats and Export's error.
func (r *rig) export(t testing.TB, ctx context.Context, g *Git, reprocess bool) ([]envelope, sessions.Stats, error) {
	t.Helper()
	run := sessions.NewRun(sessions.RunOptions{IntegrationID: testID, Store: r.store, Reprocess: reprocess})
	err := g.Export(ctx, run.Root())
	st := run.Stats()
	var sent int
	for _, n := range st.Records {
		sent += int(n)
	}
	r.waitDelivered(t, r.seen+sent)
	r.seen += sent
	return r.coll.Take(), st, err
}

func (r *rig) waitDelivered(t testing.TB, n int) {
	t.Helper()
	r.WaitDelivered(t, n)
}

// byModel splits records by model.
func byModel(recs []envelope) map[string][]envelope {
	out := map[string][]envelope{}
	for _, e := range recs {
		out[e.Model] = append(out[e.Model], e)
	}
	return out
}

func decode[T any](t testing.TB, e envelope) T {
	t.Helper()
	var v T
	if err := json.Unmarshal(e.Data, &v); err != nil {
		t.Fatalf("%s: %v", e.ID, err)
	}
	return v
}

// lines splits output into non-empty lines.
func lines(s string) []string {
	var out []string
	sc := bufio.NewScanner(strings.NewReader(s))
	for sc.Scan() {
		if l := strings.TrimSpace(sc.Text()); l != "" {
			out = append(out, l)
		}
	}
	return out
}

// generated repos (fast-import) shared by tests and benchmarks of one run,
// kept under one folder that TestMain removes.
var (
	genMu   sync.Mutex
	genDir  string
	genRepo = map[int]string{}
)

func cleanupGenerated() {
	genMu.Lock()
	defer genMu.Unlock()
	if genDir != "" && os.Getenv("COURIER_GIT_BENCH_KEEP") == "" {
		_ = os.RemoveAll(genDir)
	}
}

// generatedRepo returns a bare repo of n commits made with git fast-import:
// a main line touching two of 200 text files per commit, a side branch
// merged every 100 commits, a rename every 37 and a binary file every 53.
// With COURIER_GIT_BENCH_KEEP set, repos are kept in the system temp
// folder between runs.
func generatedRepo(t testing.TB, n int) string {
	t.Helper()
	genMu.Lock()
	defer genMu.Unlock()
	if p, ok := genRepo[n]; ok {
		return p
	}
	if genDir == "" {
		if os.Getenv("COURIER_GIT_BENCH_KEEP") != "" {
			genDir = filepath.Join(os.TempDir(), "courier-git-bench")
			if err := os.MkdirAll(genDir, 0o755); err != nil {
				t.Fatal(err)
			}
		} else {
			d, err := os.MkdirTemp("", "courier-git-gen-")
			if err != nil {
				t.Fatal(err)
			}
			genDir = d
		}
	}
	dir := filepath.Join(genDir, fmt.Sprintf("gen-%d.git", n))
	if _, err := os.Stat(filepath.Join(dir, "DONE")); err == nil {
		genRepo[n] = dir
		return dir
	}
	_ = os.RemoveAll(dir)
	gitT(t, "", nil, "init", "--bare", "-q", "-b", "main", dir)
	// stream into fast-import: a 100k-commit history never sits in memory
	cmd := exec.Command("git", "fast-import", "--quiet")
	cmd.Dir = dir
	var errb bytes.Buffer
	cmd.Stderr = &errb
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	w := bufio.NewWriterSize(in, 1<<16)
	writeFastImport(w, n)
	werr := w.Flush()
	_ = in.Close()
	if err := cmd.Wait(); err != nil || werr != nil {
		t.Fatalf("fast-import: %v %v: %s", err, werr, errb.String())
	}
	if err := os.WriteFile(filepath.Join(dir, "DONE"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	genRepo[n] = dir
	return dir
}

func writeFastImport(w *bufio.Writer, n int) {
	const files = 200
	content := make([][]string, files)
	names := make([]string, files)
	for f := range content {
		names[f] = fmt.Sprintf("src/dir %d/file_%03d.txt", f%10, f)
		for l := 0; l < 30; l++ {
			content[f] = append(content[f], fmt.Sprintf("line %d of file %d", l, f))
		}
	}
	blob := func(path string, data string) {
		fmt.Fprintf(w, "M 100644 inline %s\ndata %d\n%s\n", quoteFI(path), len(data), data)
	}
	base := int64(1_600_000_000)
	mark := 0
	mainTip := 0
	header := func(ref string, msg string, ts int64) {
		mark++
		fmt.Fprintf(w, "commit %s\nmark :%d\nauthor Gen Author <gen@example.com> %d +0200\ncommitter Gen Committer <gc@example.com> %d -0700\ndata %d\n%s\n",
			ref, mark, ts, ts, len(msg), msg)
	}
	for i := 0; i < n; {
		ts := base + int64(i)*60
		if i > 0 && i%100 == 0 && i+4 <= n {
			// a side branch of three commits, merged back
			for s := 0; s < 3; s++ {
				header("refs/heads/side", fmt.Sprintf("side %d.%d\n", i, s), ts+int64(s))
				if s == 0 {
					fmt.Fprintf(w, "from :%d\n", mainTip)
				}
				f := (i + s*7) % files
				content[f][s] = fmt.Sprintf("side change %d %d", i, s)
				blob(names[f], strings.Join(content[f], "\n")+"\n")
				i++
			}
			side := mark
			header("refs/heads/main", fmt.Sprintf("Merge side at %d\n", i), ts+10)
			fmt.Fprintf(w, "from :%d\nmerge :%d\n", mainTip, side)
			mainTip = mark
			i++
			continue
		}
		header("refs/heads/main", fmt.Sprintf("commit %d\n\nBody of commit %d.\n", i, i), ts)
		if mainTip != 0 {
			fmt.Fprintf(w, "from :%d\n", mainTip)
		}
		if i == 0 {
			for f := range content {
				blob(names[f], strings.Join(content[f], "\n")+"\n")
			}
		}
		for k := 0; k < 2; k++ {
			f := (i*7 + k*13) % files
			content[f][(i+k)%30] = fmt.Sprintf("changed at %d", i)
			content[f] = append(content[f], fmt.Sprintf("added at %d", i))
			if len(content[f]) > 60 {
				content[f] = content[f][20:]
			}
			blob(names[f], strings.Join(content[f], "\n")+"\n")
		}
		if i%37 == 5 {
			f := i % files
			old := names[f]
			names[f] = fmt.Sprintf("moved/%d/ü file_%03d.txt", i, f)
			fmt.Fprintf(w, "R %s %s\n", quoteFI(old), quoteFI(names[f]))
		}
		if i%53 == 7 {
			fmt.Fprintf(w, "M 100644 inline bin/blob_%d.bin\ndata 6\n", i%5)
			w.Write([]byte{0, 1, 2, byte(i), byte(i >> 8), byte(i >> 16), '\n'})
		}
		mainTip = mark
		i++
	}
	fmt.Fprintf(w, "reset refs/tags/gen-end\nfrom :%d\n\n", mainTip)
}

// quoteFI quotes a path for fast-import when it holds a space.
func quoteFI(p string) string {
	if strings.ContainsAny(p, " \"\\\n") {
		return fmt.Sprintf("%q", p)
	}
	return p
}
