package git

import (
	"errors"
	"fmt"
	"io"
	"net/url"
	"slices"
	"strings"
	"testing"

	"courier/integrations"
)

func TestConfig(t *testing.T) {
	for _, tc := range []struct {
		raw  string
		want string // "" = valid
	}{
		{`{"repos": ["/srv/git/api.git", "https://github.com/acme/web.git", "git@host:team/tools.git", "ssh://git@host:2222/x/y.git", "file:///srv/z.git", "rel/path"]}`, ""},
		{"repos:\n  - /srv/git/api.git\n  - https://github.com/acme/web\n", ""},
		{`{}`, "repos: give at least one repository"},
		{`{"repos": []}`, "repos: give at least one repository"},
		{`{"repos": ["/a", ""]}`, "repos[1]: empty"},
		{`{"repos": ["/a", "/b", " /c"]}`, "repos[2]: has leading or trailing spaces"},
		{`{"repos": ["https://host/"]}`, "repos[0]: has no repository path"},
		{`{"repos": ["https:///x.git"]}`, "repos[0]: URL without a host"},
		{`{"repos": ["https://github.com/acme/api.git", "git@gitlab.com:acme/api"]}`, `repos[1]: git@gitlab.com:acme/api has the same repo name "acme/api" as repos[0]`},
		{`{"repos": ["https://u:pw@host/%zz"]}`, "repos[0]: not a valid URL"},
		{`{"repo": ["/a"]}`, `git config: unknown key "repo" (line 1); did you mean "repos"?`},
		{"repos: [/a]\nextra: 1\n", `git config: unknown key "extra" (line 2)`},
		{"repos:\n  - /a\n  - ''\n", "repos[1]: empty: give a path or a URL (line 3)"},
	} {
		_, err := integrations.DecodeConfig(Type, []byte(tc.raw))
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%s: %v", tc.raw, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%s: error %v, want %q", tc.raw, err, tc.want)
		}
		if err != nil && strings.Contains(err.Error(), ":pw@") {
			t.Errorf("credential in %v", err)
		}
	}
	if slices.Index(integrations.Types(), Type) < 0 {
		t.Error("git is not registered")
	}
}

func TestParseRepo(t *testing.T) {
	for _, tc := range []struct{ raw, name, display string }{
		{"https://github.com/acme/api.git", "acme/api", "https://github.com/acme/api.git"},
		{"https://x-access-token:ghp_secret@github.com/acme/api.git/", "acme/api", "https://github.com/acme/api.git/"},
		{"https://ghp_tokenonly@github.com/acme/api", "acme/api", "https://github.com/acme/api"},
		{"ssh://git@host:2222/team/x.git", "team/x", "ssh://git@host:2222/team/x.git"},
		{"ssh://git:pw@host/team/x.git", "team/x", "ssh://git@host/team/x.git"},
		{"git@github.com:acme/api.git", "acme/api", "git@github.com:acme/api.git"},
		{"host:/abs/repo", "abs/repo", "host:/abs/repo"},
		{"file:///srv/git/api.git", "/srv/git/api", "file:///srv/git/api.git"},
		{"/home/u/proj/.git", "/home/u/proj", "/home/u/proj/.git"},
		{"/srv/repos/my repo ü.git/", "/srv/repos/my repo ü", "/srv/repos/my repo ü.git"},
	} {
		s, err := parseRepo(0, tc.raw, "")
		if err != nil {
			t.Errorf("%s: %v", tc.raw, err)
			continue
		}
		if s.name != tc.name || s.display != tc.display {
			t.Errorf("%s: name %q display %q, want %q %q", tc.raw, s.name, s.display, tc.name, tc.display)
		}
	}
	s, err := parseRepo(0, "relative/dir", "")
	if err != nil || !s.local || !strings.HasSuffix(s.name, "/relative/dir") || !strings.HasPrefix(s.name, "/") {
		t.Errorf("relative path: %+v %v", s, err)
	}
	// Against a base (the agent's root), not the current folder.
	if s, err := parseRepo(0, "../checkouts/web", "/srv/agent"); err != nil || s.name != "/srv/checkouts/web" || s.source != "/srv/checkouts/web" {
		t.Errorf("relative path against a base: %+v %v", s, err)
	}
	if s, err := parseRepo(0, "/abs/api.git", "/srv/agent"); err != nil || s.name != "/abs/api" {
		t.Errorf("absolute path with a base: %+v %v", s, err)
	}
	// mirror folders: readable, stable, distinct per address, no credentials
	a, _ := parseRepo(0, "https://tok1@github.com/acme/api.git", "")
	b, _ := parseRepo(0, "https://tok2@github.com/acme/api.git", "")
	c, _ := parseRepo(0, "https://gitlab.com/acme/api.git", "")
	if mirrorDirName(a) != mirrorDirName(b) || mirrorDirName(a) == mirrorDirName(c) ||
		!strings.HasPrefix(mirrorDirName(a), "acme_api-") || strings.Contains(mirrorDirName(a), "tok") {
		t.Errorf("mirror names %q %q %q", mirrorDirName(a), mirrorDirName(b), mirrorDirName(c))
	}
	long, _ := parseRepo(0, "/"+strings.Repeat("ü/x", 40), "")
	if n := mirrorDirName(long); len(n) > 60 || strings.ContainsAny(n, "/ü") {
		t.Errorf("long name %q", n)
	}
}

func TestRedact(t *testing.T) {
	u, _ := url.Parse("https://user:p%40ss%2Fword@host/x.git")
	secrets := secretsOf(u)
	msg := "fatal: unable to access 'https://user:p%40ss%2Fword@host/x.git/': password p@ss/word rejected; see http://other:thing@h/"
	got := redactText(msg, secrets)
	for _, bad := range []string{"p%40ss", "p@ss/word", "other:thing"} {
		if strings.Contains(got, bad) {
			t.Errorf("%q left in %q", bad, got)
		}
	}
	if !strings.Contains(got, "host/x.git") {
		t.Errorf("too much scrubbed: %q", got)
	}
	// an ssh user name is no secret and must not scrub the word "git"
	u, _ = url.Parse("ssh://git@host/x.git")
	if s := secretsOf(u); len(s) != 0 {
		t.Errorf("ssh user treated as a secret: %q", s)
	}
}

// gitLog renders commits as git log's -z output with logFormat.
func gitLog(commits ...string) string { return strings.Join(commits, "") }

func logCommit(sha, parents, msg string, numstat ...string) string {
	s := "\x01" + sha + "\x00" + parents + "\x00A U\x00a@x\x002024-03-01T10:00:00+05:30\x00C O\x00c@x\x002024-03-01T10:00:00-08:00\x00" + msg + "\x00"
	if len(numstat) > 0 {
		s += "\n" + strings.Join(numstat, "")
	}
	return s
}

func TestLogParser(t *testing.T) {
	sha := func(c byte) string { return strings.Repeat(string(c), 40) }
	longMsg := strings.Repeat("long message line with \x01 and \t inside\n", 20000) // > the reader's buffer
	in := gitLog(
		logCommit(sha('a'), "", "root\n", "3\t0\ta b.txt\x00", "-\t-\tbin/ü.dat\x00"),
		logCommit(sha('b'), sha('a'), longMsg, "1\t2\t\x00a b.txt\x00c\td.txt\x00", "0\t0\t\x00x\x00y\x00"),
		logCommit(sha('c'), sha('b')+" "+sha('a'), ""),
		logCommit(sha('d'), sha('c'), "no newline", "10\t20\t\x01weird\x00"),
	)
	p := newLogParser(strings.NewReader(in), "acme/api")
	var got []Commit
	for {
		c, err := p.next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, c)
	}
	if len(got) != 4 {
		t.Fatalf("%d commits", len(got))
	}
	if c := got[0]; c.SHA != sha('a') || len(c.Parents) != 0 || c.Parents == nil || c.Message != "root\n" ||
		!slices.Equal(c.Files, []File{{Path: "a b.txt", Additions: 3}, {Path: "bin/ü.dat", Binary: true}}) ||
		c.Author != (Person{"A U", "a@x", "2024-03-01T10:00:00+05:30"}) || c.Committer.Date != "2024-03-01T10:00:00-08:00" || c.Repo != "acme/api" {
		t.Errorf("root: %+v", c)
	}
	if c := got[1]; c.Message != longMsg || !slices.Equal(c.Files, []File{{Path: "c\td.txt", OldPath: "a b.txt", Additions: 1, Deletions: 2}, {Path: "y", OldPath: "x"}}) {
		t.Errorf("rename: %+v", c.Files)
	}
	if c := got[2]; !slices.Equal(c.Parents, []string{sha('b'), sha('a')}) || c.Message != "" || c.Files == nil || len(c.Files) != 0 {
		t.Errorf("merge: %+v", c)
	}
	if c := got[3]; c.Message != "no newline" || !slices.Equal(c.Files, []File{{Path: "\x01weird", Additions: 10, Deletions: 20}}) {
		t.Errorf("last: %+v", c)
	}

	for _, bad := range []string{
		"garbage",
		logCommit(sha('a'), "", "x")[:50],
		logCommit(sha('a'), "", "x", "1\t2\x00"),
		logCommit(sha('a'), "", "x", "x\ty\tpath\x00"),
		logCommit(sha('a'), "", "x", "1\t1\t\x00old\x00"),
	} {
		p := newLogParser(strings.NewReader(bad), "r")
		if _, err := p.next(); err == nil || errors.Is(err, io.EOF) {
			t.Errorf("%q: no error (%v)", bad, err)
		}
	}
}

// stepReader hands out one commit per Read, and checks that the parser
// never asks for more than one commit ahead of what it returned: the
// parser streams rather than reading the whole log first.
type stepReader struct {
	t        *testing.T
	n, given int
	parsed   *int
	pending  []byte
}

func (r *stepReader) Read(b []byte) (int, error) {
	if len(r.pending) == 0 {
		if r.given == r.n {
			return 0, io.EOF
		}
		if r.given > *r.parsed+2 {
			r.t.Fatalf("parser asked for commit %d having returned %d", r.given, *r.parsed)
		}
		r.pending = []byte(logCommit(fmt.Sprintf("%040d", r.given), "", fmt.Sprintf("commit %d\n", r.given), "1\t1\tf.txt\x00"))
		r.given++
	}
	n := copy(b, r.pending)
	r.pending = r.pending[n:]
	return n, nil
}

func TestLogParserStreams(t *testing.T) {
	parsed := 0
	const n = 100_000
	p := newLogParser(&stepReader{t: t, n: n, parsed: &parsed}, "r")
	for {
		c, err := p.next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if c.SHA != fmt.Sprintf("%040d", parsed) {
			t.Fatalf("commit %d is %s", parsed, c.SHA)
		}
		parsed++
	}
	if parsed != n {
		t.Fatalf("parsed %d of %d", parsed, n)
	}
}

func TestTokens(t *testing.T) {
	a, b := strings.Repeat("a", 40), strings.Repeat("b", 64)
	tok := encodeTips([]string{b, a, a})
	if tok != `{"v":1,"tips":["`+a+`","`+b+`"]}` {
		t.Errorf("token %s", tok)
	}
	if tips, err := decodeTips(tok); err != nil || !slices.Equal(tips, []string{a, b}) {
		t.Errorf("decode: %v %v", tips, err)
	}
	for _, bad := range []string{"x", `{"v":2,"tips":[]}`, `{"v":1,"tips":["--output=/etc/passwd"]}`} {
		if _, err := decodeTips(bad); err == nil {
			t.Errorf("%s accepted", bad)
		}
	}
	if got := revisions([]string{a}, []string{b}); got != a+"\n^"+b+"\n" {
		t.Errorf("revisions %q", got)
	}
}

func TestSubcommandName(t *testing.T) {
	for args, want := range map[string]string{
		"--git-dir=/x fetch --prune":                            "fetch",
		"-c http.extraHeader=Authorization:secret -C /d log -z": "log",
		"-c a=b": "?",
	} {
		if got := (gitCmd{args: strings.Fields(args)}).subcommand(); got != want {
			t.Errorf("%s: %q, want %q", args, got, want)
		}
	}
}
