package git

import (
	"context"
	"net/http"
	"net/http/cgi"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// A repo URL with credentials: they go to git as a header through its
// environment, never in its arguments (where ps shows them), never into
// the mirror, the records or the logs.
func TestCredentialsInURLStayOffTheCommandLine(t *testing.T) {
	const user, pass = "alice", "s3cret-Pa55"
	repo := generatedRepo(t, 30)
	exe, err := exec.Command("git", "--exec-path").Output()
	if err != nil {
		t.Fatal(err)
	}
	backend := &cgi.Handler{
		Path: filepath.Join(strings.TrimSpace(string(exe)), "git-http-backend"),
		Root: "/",
		Env:  []string{"GIT_PROJECT_ROOT=" + filepath.Dir(repo), "GIT_HTTP_EXPORT_ALL=1", "GIT_CONFIG_NOSYSTEM=1"},
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u, p, ok := r.BasicAuth()
		if !ok || u != user || p != pass {
			w.Header().Set("WWW-Authenticate", `Basic realm="git"`)
			http.Error(w, "authentication required", http.StatusUnauthorized)
			return
		}
		backend.ServeHTTP(w, r)
	}))
	defer srv.Close()
	url := strings.Replace(srv.URL, "http://", "http://"+user+":"+pass+"@", 1) + "/" + filepath.Base(repo)

	spec, err := parseRepo(0, url, "")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(spec.source, pass) || len(spec.config) != 1 || !strings.Contains(spec.config[0][1], "Basic ") {
		t.Fatalf("credentials would reach git's command line: source %q, config %q", spec.source, spec.config)
	}

	r := newRig(t)
	g := r.newGit(t, url)
	recs, st, err := r.export(t, context.Background(), g, false)
	if err != nil || len(st.EntityErrors) > 0 {
		t.Fatalf("export: %v %+v", err, st.EntityErrors)
	}
	if n := len(byModel(recs)["commit"]); n != 30 {
		t.Fatalf("%d commits exported, want 30", n)
	}
	for _, rec := range recs {
		if strings.Contains(string(rec.Data), pass) || strings.Contains(rec.ID, pass) {
			t.Fatalf("a record carries the password: %s", rec.ID)
		}
	}
	if strings.Contains(r.Logs(), pass) {
		t.Fatal("a log line carries the password")
	}
	_ = filepath.WalkDir(r.cache, func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() && (d.Name() == "config" || d.Name() == "FETCH_HEAD") {
			if b, _ := os.ReadFile(p); strings.Contains(string(b), pass) {
				t.Errorf("%s holds the password", p)
			}
		}
		return nil
	})
}
