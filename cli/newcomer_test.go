package cli_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"courier/cli"
)

// An integration config's mistakes read the same in YAML and in JSON, as
// config.yaml's do: the file, the key, its line, the key meant.
func TestIntegrationConfigErrorsOneFormat(t *testing.T) {
	root := e2e(t)
	dir := t.TempDir()
	yml := writeFile(t, dir, "syn.yaml", "orgs: 1\nrepo_per_org: 2\n")
	jsn := writeFile(t, dir, "syn.json", "{\n  \"orgs\": 1,\n  \"repo_per_org\": 2\n}\n")
	for _, f := range []string{yml, jsn} {
		want := "--config " + f + `: synthetic config: unknown key "repo_per_org" (line 2); did you mean "repos_per_org"?`
		if strings.HasSuffix(f, ".json") {
			want = strings.Replace(want, "line 2", "line 3", 1)
		}
		r := runCourier(t, root, "export", "--integration", "synthetic", "--config", f)
		if r.code != cli.ExitUsage || strings.TrimSpace(r.stderr) != "courier: "+want {
			t.Errorf("export with %s: want exit 2 and %q; %s", f, want, r)
		}
		// validate-config answers a config that does not decode as the
		// backend's command does: valid false with the problem, exit 1.
		r = runCourier(t, root, "validate-config", "--integration", "synthetic", "--config", f)
		var v struct {
			Valid  bool     `json:"valid"`
			Errors []string `json:"errors"`
		}
		if err := json.Unmarshal([]byte(r.stdout), &v); err != nil || r.code != cli.ExitFailure || v.Valid || len(v.Errors) != 1 || v.Errors[0] != want {
			t.Errorf("validate-config with %s: want exit 1 and valid false with %q; %s", f, want, r)
		}
	}
	// A YAML syntax error names the line of the problem, not of its block.
	bad := writeFile(t, dir, "bad.yaml", "orgs: 1\nrepos_per_org: 2\nitems_per_repo: 3\n record_bytes: 10\n")
	if r := runCourier(t, root, "export", "--integration", "synthetic", "--config", bad); r.code != cli.ExitUsage || !strings.Contains(r.stderr, "line 4: ") {
		t.Errorf("syntax error at line 4: %s", r)
	}
	// Bad usage is not an answer: exit 2, no JSON.
	if r := runCourier(t, root, "validate-config", "--integration", "nope"); r.code != cli.ExitUsage || r.stdout != "" || !strings.Contains(r.stderr, `unknown integration type "nope"`) {
		t.Errorf("validate-config with an unknown type: %s", r)
	}
	// No --config: said, not silent.
	r := runCourier(t, root, "validate-config", "--integration", "synthetic")
	if r.code != 0 || !strings.Contains(r.stderr, "no --config given: synthetic runs with its defaults {") {
		t.Errorf("synthetic without --config: %s", r)
	}
	r = runCourier(t, root, "validate-config", "--integration", "git")
	if r.code != cli.ExitFailure || !strings.Contains(r.stdout, "no --config given, and git config: repos: give at least one repository") {
		t.Errorf("git without --config: %s", r)
	}
	// The params of an export command: lines of the params file.
	params := writeFile(t, dir, "params.yaml", "integrations:\n  - id: s1\n    type: synthetic\n    config:\n      orgs: 1\n      repo_per_org: 2\n")
	if r := runCourier(t, root, "export", "--params", params); r.code != cli.ExitUsage ||
		!strings.Contains(r.stderr, `integrations[0]: synthetic config: unknown key "repo_per_org" (line 6); did you mean "repos_per_org"?`) {
		t.Errorf("--params: %s", r)
	}
}

// A manual export on a root that service-run holds says what to do; the
// service-run log of the run before survives a restart; a failed command's
// log holds its error; an export that wrote nothing says so.
func TestExportRootLogsAndHints(t *testing.T) {
	root := e2e(t)
	initRoot(t, root)
	up := newFakeUpstream(t)
	s := startServiceRun(t, root, up)
	r := runCourier(t, root, "export", "--integration", "synthetic")
	if r.code == 0 || !strings.Contains(r.stderr, "a manual export needs a root of its own: add --root OTHER_DIR") {
		t.Errorf("export while service-run holds the root: %s", r)
	}
	if code := s.terminate(); code != 0 {
		t.Fatalf("service-run exit %d", code)
	}
	first, err := os.ReadFile(filepath.Join(root, "logs", "service-run"))
	if err != nil || !strings.Contains(string(first), "service-run ready") {
		t.Fatalf("logs/service-run: %v\n%s", err, first)
	}
	s = startServiceRun(t, root, up)
	if code := s.terminate(); code != 0 {
		t.Fatalf("service-run exit %d", code)
	}
	if prev, err := os.ReadFile(filepath.Join(root, "logs", "service-run.1")); err != nil || string(prev) != string(first) {
		t.Errorf("logs/service-run.1 is not the previous run's log: %v", err)
	}

	bad := writeFile(t, t.TempDir(), "bad.yaml", "orgz: 1\n")
	r = runCourier(t, root, "export", "--integration", "synthetic", "--config", bad)
	log, _ := os.ReadFile(filepath.Join(root, "logs", "export"))
	if r.code != cli.ExitUsage || !strings.Contains(string(log), `unknown key \"orgz\"`) {
		t.Errorf("a failed export's log holds its error: %s\nlog:\n%s", r, log)
	}

	cfg := writeFile(t, t.TempDir(), "syn.yaml", "items_per_repo: 3\n")
	if r := runCourier(t, root, "export", "--integration", "synthetic", "--config", cfg); r.code != 0 || !strings.Contains(r.stdout, "6 records written under ") {
		t.Errorf("first export: %s", r)
	}
	if r := runCourier(t, root, "export", "--integration", "synthetic", "--config", cfg); r.code != 0 || !strings.Contains(r.stdout, "no records written") {
		t.Errorf("second export, nothing new: %s", r)
	}
	if r := runCourier(t, root, "enroll", "CODE", "--backend-url", "127.0.0.1:8080", "--no-service"); r.code != cli.ExitUsage || !strings.Contains(r.stderr, "write it as https://127.0.0.1:8080 (or http://127.0.0.1:8080") {
		t.Errorf("--backend-url without a scheme: %s", r)
	}
}
