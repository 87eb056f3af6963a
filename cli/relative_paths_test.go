package cli_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// gitRepoWithCommit makes a working tree with one commit at dir.
func gitRepoWithCommit(t *testing.T, dir string) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"init", "-q", "-b", "main"},
		{"-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-q", "--allow-empty", "-m", "first"},
	} {
		ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
		out, err := exec.CommandContext(ctx, "git", append([]string{"-C", dir}, args...)...).CombinedOutput()
		cancel()
		if err != nil {
			t.Fatalf("git %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
}

// A relative repo path in a git config is relative to the agent's root
// folder, not to the current folder of whoever runs courier: the same
// config means the same repo by hand (validate-config, export, from any
// folder) and in the service (whose current folder is / under systemd).
// The tests run courier from cli/, where ../checkouts/web does not exist.
func TestRelativeRepoPathsAreRelativeToTheRoot(t *testing.T) {
	root := e2e(t)
	repo := filepath.Join(filepath.Dir(root), "checkouts", "web")
	gitRepoWithCommit(t, repo)
	if _, err := os.Stat(filepath.Join("..", "checkouts", "web")); err == nil {
		t.Fatal("../checkouts/web exists next to the test's current folder: the test would prove nothing")
	}
	cfg := writeFile(t, t.TempDir(), "git.yaml", "repos:\n  - ../checkouts/web\n")

	if r := runCourier(t, root, "validate-config", "-i", "git", "-c", cfg); r.code != 0 || !strings.Contains(r.stdout, `"valid": true`) && !strings.Contains(r.stdout, `"valid":true`) {
		t.Fatalf("validate-config of a path relative to the root: %s", r)
	}
	r := runCourier(t, root, "export", "-i", "git", "-c", cfg)
	if r.code != 0 {
		t.Fatalf("manual export of a path relative to the root: %s", r)
	}
	ids := exported(t, root, "git")
	for k := range ids {
		if strings.HasPrefix(k, "git:"+repo+":") {
			return
		}
	}
	t.Fatalf("no record of %s among %v", repo, ids)
}

// The service path: an export command from the backend with the same
// relative path exports the repo under the root's parent.
func TestRelativeRepoPathsInTheService(t *testing.T) {
	a := enrolledAgent(t)
	repo := filepath.Join(filepath.Dir(a.root), "checkouts", "web")
	gitRepoWithCommit(t, repo)
	svc := a.start()
	defer svc.terminate()
	id := a.command("export", map[string]any{"integrations": []any{
		map[string]any{"id": "int_g", "type": "git", "config": map[string]any{"repos": []string{"../checkouts/web"}}},
	}})
	if r := a.result(id); r.Status != "succeeded" {
		t.Fatalf("export command with a relative repo path: %s %s %s", r.Status, r.Error, r.Output)
	}
	ids := a.waitRecords("export/int_g", 1)
	for k := range ids {
		if strings.HasPrefix(k, "git:"+repo+":") {
			return
		}
	}
	t.Fatalf("no record of %s uploaded: %v", repo, ids)
}
