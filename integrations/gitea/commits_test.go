package gitea

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	sdk "code.gitea.io/sdk/gitea"

	"courier/actors"
	"courier/integrations/git"
)

// Git data comes from the configured url even when the server's ROOT_URL
// (and so its clone_url) names another host; a private repo needs the
// token, which reaches git only through its environment; a repo whose
// git fetch fails is an entity error, without the token, and the other
// repos go on.
func TestCommitsFromTheConfiguredURL(t *testing.T) {
	f := newFx(t)
	org := uniq(t, "priv")
	f.org(org)
	secret := f.repo(org, "secret", true)
	yes := true
	_, resp, err := f.admin.EditRepo(org, "secret", sdk.EditRepoOption{Private: &yes})
	f.must("make secret private", resp, err)
	broken := f.repo(org, "broken", true)
	f.quiesce(secret, broken)

	// The server's ROOT_URL is http://127.0.0.1:<port>/: name it otherwise.
	u, err := url.Parse(f.url)
	if err != nil {
		t.Fatal(err)
	}
	other := "http://localhost:" + u.Port()
	if !strings.HasPrefix(f.getRepo(secret).CloneURL, f.url+"/") {
		t.Fatalf("clone_url %s is not under %s", f.getRepo(secret).CloneURL, f.url)
	}
	// Without the token, git cannot read the private repo.
	ls := exec.Command("git", "ls-remote", other+"/"+org+"/secret.git")
	ls.Env = append(os.Environ(), "GIT_TERMINAL_PROMPT=0", "GIT_ASKPASS=", "SSH_ASKPASS=")
	if out, err := ls.CombinedOutput(); err == nil {
		t.Fatalf("an anonymous git ls-remote read the private repo:\n%s", out)
	}
	// Break broken's git data: its objects go, its refs stay. The API
	// still answers; git fetch fails.
	objects := filepath.Join(srv.dir, "data", "repos", strings.ToLower(org), "broken.git", "objects")
	removed := 0
	err = filepath.WalkDir(objects, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || filepath.Base(filepath.Dir(p)) == "info" {
			return err
		}
		removed++
		return os.Remove(p)
	})
	if err != nil || removed == 0 {
		t.Fatalf("removing the objects of %s: %v (%d files)", objects, err, removed)
	}

	r := newRig(t)
	res, recs := r.export(t, spec(t, "int_other", map[string]any{
		"url": other, "token": f.token, "repos": []string{org + "/secret", org + "/broken"},
	}))
	if res.Status != actors.StatusSucceeded || len(res.EntityErrors) != 1 {
		t.Fatalf("export: %+v", res)
	}
	ee := res.EntityErrors[0]
	if !slices.Equal(ee.Path, []string{"int_other", "org:" + org, "repo:" + org + "/broken"}) ||
		!strings.Contains(ee.Error, "commits of "+org+"/broken") || !strings.Contains(ee.Error, "git fetch") {
		t.Errorf("entity error %+v", ee)
	}
	got := index(t, recs)
	main := f.branches(secret)["main"]
	rid := func(model string, id int64) string {
		return fmt.Sprintf("gitea:localhost:%s:%s:%d", u.Port(), model, id)
	}
	want := map[string]bool{
		rid("repo", secret.ID): true, rid("repo", broken.ID): true,
		gid(secret, main): true, gid(secret, "branch:main"): true,
	}
	sameIDs(t, "export", got, want)
	if c := decode[git.Commit](t, got[gid(secret, main)][0]); c.SHA != main || len(c.Parents) != 0 || c.Repo != org+"/secret" {
		t.Errorf("commit %+v", c)
	}
	if !strings.Contains(r.logs.String(), "differs from the configured url") {
		t.Errorf("the logs do not tell that clone_url is elsewhere:\n%s", r.logs.String())
	}
	noSecret(t, r, f.token, recs)
	if strings.Contains(ee.Error, f.token) {
		t.Errorf("the entity error holds the token: %s", ee.Error)
	}
}

// noSecret fails when the token, or the Basic credential made of it, is
// in the rig's logs, in a record, or in any file of the integrations'
// cache (the git mirrors: their config above all, which must hold no
// extra header).
func noSecret(t *testing.T, r *rig, token string, recs []envelope) {
	t.Helper()
	forms := []string{token, base64.StdEncoding.EncodeToString([]byte(gitUser + ":" + token))}
	check := func(where, text string) {
		t.Helper()
		for _, s := range forms {
			if strings.Contains(text, s) {
				t.Errorf("the token is in %s", where)
			}
		}
	}
	check("the logs", r.logs.String())
	for _, e := range recs {
		b, err := json.Marshal(e)
		if err != nil {
			t.Fatal(err)
		}
		check("record "+e.ID, string(b))
	}
	configs, files := 0, 0
	err := filepath.WalkDir(r.cache, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		files++
		check(p, string(b))
		if d.Name() == "config" && strings.HasSuffix(filepath.Dir(p), ".git") {
			configs++
			if low := strings.ToLower(string(b)); strings.Contains(low, "extraheader") || strings.Contains(low, "authorization") {
				t.Errorf("mirror config %s holds a header:\n%s", p, b)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if configs == 0 {
		t.Fatalf("no mirror config under %s (%d files)", r.cache, files)
	}
}
