package cli_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"courier/cli"
	"courier/internal/exporttest"
)

func writeFile(t *testing.T, dir, name, body string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// exported reads every NDJSON line the local sink wrote for one integration
// and counts each record id.
func exported(t *testing.T, root, id string) map[string]int {
	t.Helper()
	return exporttest.DirIDs(t, filepath.Join(root, "exports"), id)
}

func TestExportKill9ThenResumeHasNoGap(t *testing.T) {
	root := e2e(t)
	cfg := writeFile(t, t.TempDir(), "syn.yaml", "orgs: 2\nrepos_per_org: 2\nitems_per_repo: 400\ndelay_ms: 1\n")
	cmd := exec.Command(courierBin, "--root", root, "--log-format", "json", "export", "--integration", "synthetic", "--config", cfg)
	cmd.Env = childEnv()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// Kill it once some records are on disk, part-way through.
	deadline := time.Now().Add(time.Minute)
	for len(exported(t, root, "synthetic")) < 600 { // past the first repo: its token is committed
		if time.Now().After(deadline) {
			_ = cmd.Process.Kill()
			t.Fatal("export wrote nothing within a minute")
		}
		time.Sleep(20 * time.Millisecond)
	}
	_ = cmd.Process.Kill() // SIGKILL
	_ = cmd.Wait()
	before := len(exported(t, root, "synthetic"))
	if before >= 1600 {
		t.Skip("the export finished before it could be killed")
	}
	r := runCourier(t, root, "export", "--integration", "synthetic", "--config", cfg)
	if r.code != 0 {
		t.Fatalf("second run: %s", r)
	}
	ids := exported(t, root, "synthetic")
	for o := 0; o < 2; o++ {
		for rp := 0; rp < 2; rp++ {
			for n := 0; n < 400; n++ {
				if id := fmt.Sprintf("synthetic:org%d:repo%d:%d", o, rp, n); ids[id] == 0 {
					t.Fatalf("record %s missing after kill -9 and resume (had %d before the second run)", id, before)
				}
			}
		}
	}
	if !strings.Contains(r.stdout, "true") {
		t.Fatalf("second run should be incremental:\n%s", r.stdout)
	}
}

func TestExportPanicIsRestartedAndLogged(t *testing.T) {
	root := e2e(t)
	dir := t.TempDir()
	params := writeFile(t, dir, "params.json", `{"integrations":[
		{"id":"crashy","type":"synthetic","config":{"items_per_repo":200,"panic_after":150}},
		{"id":"calm","type":"synthetic","config":{"items_per_repo":30}}]}`)
	r := runCourier(t, root, "export", "--params", params)
	if r.code != 0 {
		t.Fatalf("%s", r)
	}
	if !strings.Contains(r.stdout, "crashy") || !strings.Contains(r.stdout, "goroutine") {
		t.Fatalf("the summary should show the panic's stack:\n%s", r.stdout)
	}
	for _, f := range []string{"logs/export", "logs/integrations/crashy"} {
		b, err := os.ReadFile(filepath.Join(root, f))
		if err != nil || !strings.Contains(string(b), "panic_after 150 reached") || !strings.Contains(string(b), "stack") {
			t.Fatalf("%s lacks the panic and its stack: %v\n%s", f, err, b)
		}
	}
	if n := len(exported(t, root, "crashy")); n != 400 {
		t.Fatalf("crashy exported %d distinct records, want 400", n)
	}
	if n := len(exported(t, root, "calm")); n != 60 {
		t.Fatalf("calm exported %d, want 60", n)
	}
}

func TestExportFailureExitsNonZero(t *testing.T) {
	root := e2e(t)
	cfg := writeFile(t, t.TempDir(), "syn.json", `{"items_per_repo":50,"error_after":10}`)
	r := runCourier(t, root, "export", "--integration", "synthetic", "--config", cfg)
	if r.code == 0 || !strings.Contains(r.stdout, "error_after 10 reached") {
		t.Fatalf("%s", r)
	}
}

func TestExportBadInput(t *testing.T) {
	root := e2e(t)
	dir := t.TempDir()
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"export", "--integration", "nope"}, `unknown integration type "nope"`},
		{[]string{"export", "--integration", "synthetic", "--config", writeFile(t, dir, "a.yaml", "orgz: 1\n")}, "orgz"},
		{[]string{"export", "--integration", "synthetic", "--config", writeFile(t, dir, "b.json", `{"orgs": -1}`)}, "orgs: must be at least 1"},
		{[]string{"export", "--integration", "synthetic", "--config", filepath.Join(dir, "missing.yaml")}, "missing.yaml"},
		{[]string{"export"}, "--integration is required"},
	}
	for _, c := range cases {
		r := runCourier(t, root, c.args...)
		if r.code != cli.ExitUsage || !strings.Contains(r.stderr, c.want) {
			t.Errorf("courier %v: want exit %d mentioning %q, got %s", c.args, cli.ExitUsage, c.want, r)
		}
	}
}

func TestValidateAndOnboard(t *testing.T) {
	root := e2e(t)
	dir := t.TempDir()
	cfg := writeFile(t, dir, "syn.yaml", "orgs: 2\nrepos_per_org: 3\n")
	r := runCourier(t, root, "validate-config", "--integration", "synthetic", "--config", cfg)
	if r.code != 0 || !strings.Contains(r.stdout, `"valid": true`) {
		t.Fatalf("%s", r)
	}
	out := filepath.Join(dir, "repos.ndjson")
	r = runCourier(t, root, "export-onboard-data", "--integration", "synthetic", "--config", cfg, "--object-type", "repos", "--output", out)
	if r.code != 0 || !strings.Contains(r.stdout, "wrote 6 repos") {
		t.Fatalf("%s", r)
	}
	b, _ := os.ReadFile(out)
	if lines := strings.Count(string(b), "\n"); lines != 6 || !strings.Contains(string(b), `"name":"org1/repo2"`) {
		t.Fatalf("onboard file:\n%s", b)
	}
	r = runCourier(t, root, "export-onboard-data", "--integration", "synthetic", "--config", cfg, "--object-type", "projects", "--output", out)
	if r.code == 0 || !strings.Contains(r.stderr, "not supported") {
		t.Fatalf("projects of synthetic: %s", r)
	}
}
