package gitea

import (
	"errors"
	"io"
	"slices"
	"strings"
	"testing"

	"github.com/rs/zerolog"

	"courier/integrations"
	"courier/internal/exporttest"
)

// newGitea builds an instance directly (Validate and Onboard run outside
// the export queue); log may be nil.
func newGitea(t *testing.T, cfg *Config, log io.Writer) *Gitea {
	t.Helper()
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	if log == nil {
		log = zerolog.NewTestWriter(t)
	}
	g, err := New(integrations.Options{ID: "int_v", Logger: zerolog.New(log)}, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return g
}

func TestValidateNamesWhatIsMissing(t *testing.T) {
	f := newFx(t)
	org, eve := uniq(t, "vorg"), uniq(t, "eve")
	f.user(eve, "Eve")
	f.org(org)
	f.repo(org, "api", true)

	logs := &exporttest.LogBuffer{}
	good := newGitea(t, &Config{URL: f.url + "/", Token: integrations.Secret(f.token), Organizations: []string{org}, Users: []string{eve}, Repos: []string{org + "/api"}}, logs)
	v := good.Validate(t.Context())
	if !v.Valid || len(v.Errors) != 0 || v.Details["user"] != "admin1" || v.Details["server_version"] == "" {
		t.Fatalf("valid config: %+v", v)
	}
	if reach, _ := v.Details["reachable"].([]string); !slices.Equal(reach, []string{"org:" + org, "user:" + eve, "repo:" + org + "/api"}) {
		t.Errorf("reachable %v", v.Details["reachable"])
	}

	bad := newGitea(t, &Config{URL: f.url, Token: integrations.Secret(f.token), Organizations: []string{org, "no-such-org"},
		Users: []string{"no-such-user"}, Repos: []string{org + "/api", org + "/no-such-repo"}}, logs)
	v = bad.Validate(t.Context())
	if v.Valid || len(v.Errors) != 3 {
		t.Fatalf("config with missing objects: %+v", v)
	}
	for i, want := range []string{"organizations: no-such-org: not found", "users: no-such-user: not found", "repos: " + org + "/no-such-repo: not found"} {
		if !strings.HasPrefix(v.Errors[i], want) {
			t.Errorf("problem %d: %q, want %q...", i, v.Errors[i], want)
		}
	}
	if strings.Contains(logs.String(), f.token) {
		t.Fatal("the token is in the logs")
	}
}

func TestOnboardListsReposAndUsers(t *testing.T) {
	f := newFx(t)
	org, fay := uniq(t, "oorg"), uniq(t, "fay")
	f.user(fay, "Fay")
	f.org(org, fay)
	f.repo(org, "one", true)
	f.repo(org, "two", true)
	f.repo(fay, "own", false)
	g := newGitea(t, &Config{URL: f.url, Token: integrations.Secret(f.token), Organizations: []string{org}, Users: []string{fay}}, nil)

	var repos, users []string
	if err := g.Onboard(t.Context(), integrations.ObjectRepos, func(o integrations.Object) error {
		if !strings.HasPrefix(o.ID, "gitea:"+f.host+":repo:") || o.Data["html_url"] == "" {
			t.Errorf("repo object %+v", o)
		}
		repos = append(repos, o.Name)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(repos, []string{org + "/one", org + "/two", fay + "/own"}) {
		t.Errorf("repos %v", repos)
	}
	if err := g.Onboard(t.Context(), integrations.ObjectUsers, func(o integrations.Object) error {
		users = append(users, o.Name)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(users, []string{"admin1", fay}) {
		t.Errorf("users %v", users)
	}
	if err := g.Onboard(t.Context(), integrations.ObjectProjects, nil); !errors.Is(err, integrations.ErrUnsupportedObject) {
		t.Errorf("projects: %v", err)
	}
}
