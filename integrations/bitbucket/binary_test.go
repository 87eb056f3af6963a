package bitbucket

// The built binary against the fake: export (killed with -9 mid-export,
// then run again), validate-config and export-onboard-data from the CLI,
// and the same through service-run driven by the reference backend.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"courier/backend/devserver"
	"courier/backend/devserver/devservertest"
	"courier/internal/exporttest"
)

type run struct {
	code           int
	stdout, stderr string
}

func courier(t *testing.T, root string, args ...string) run {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, exporttest.Binary(t), append([]string{"--root", root, "--log-format", "json"}, args...)...)
	cmd.Env = exporttest.ChildEnv()
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err := cmd.Run()
	r := run{stdout: o.String(), stderr: e.String()}
	var ee *exec.ExitError
	switch {
	case ctx.Err() != nil:
		t.Fatalf("courier %v did not finish", args)
	case errors.As(err, &ee):
		r.code = ee.ExitCode()
	case err != nil:
		t.Fatal(err)
	}
	if strings.Contains(r.stdout+r.stderr, fakeToken) {
		t.Errorf("courier %v printed the token", args)
	}
	return r
}

func writeConfig(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "bb.json")
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestBinaryKill9ThenNoGap: the export is killed with -9 while it waits
// on the third page's activity; the next run sends the rest and every
// pull request is on disk, those of the checkpointed pages once.
func TestBinaryKill9ThenNoGap(t *testing.T) {
	bin := exporttest.Binary(t)
	f := newFake(t, Cloud)
	f.addOwner("acme")
	api := f.addRepo("acme", "api", 2)
	const n = 120 // three pages of 50
	for i := range n {
		f.addPull(api, fmt.Sprintf("change %d", i), t0.Add(time.Duration(i)*time.Minute))
	}
	reached := make(chan struct{})
	release := make(chan struct{})
	var once sync.Once
	f.set(func() {
		f.block = func(path string) {
			if strings.HasSuffix(path, "/pullrequests/101/activity") {
				once.Do(func() { close(reached) })
				<-release
			}
		}
	})
	defer func() {
		select {
		case <-release:
		default:
			close(release)
		}
	}()
	root := filepath.Join(t.TempDir(), "root")
	cfg := writeConfig(t, f.config(`"workspaces": ["acme"]`))
	cmd := exec.Command(bin, "--root", root, "--log-format", "json", "export", "--integration", Type, "--config", cfg)
	cmd.Env = exporttest.ChildEnv()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-reached:
	case <-time.After(2 * time.Minute):
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		t.Fatal("the export never reached the third page")
	}
	_ = cmd.Process.Kill() // SIGKILL
	_ = cmd.Wait()
	close(release)
	f.set(func() { f.block = nil })
	before := exporttest.DirIDs(t, filepath.Join(root, "exports"), Type)

	r := courier(t, root, "export", "--integration", Type, "--config", cfg)
	if r.code != 0 {
		t.Fatalf("second run: %+v", r)
	}
	ids := exporttest.DirIDs(t, filepath.Join(root, "exports"), Type)
	for i := int64(1); i <= n; i++ {
		id := f.prID(api, i)
		if ids[id] == 0 {
			t.Fatalf("%s missing after kill -9 and a second run (%d records before it)", id, len(before))
		}
		if i <= 100 && ids[id] != 1 {
			t.Errorf("%s of a checkpointed page written %d times", id, ids[id])
		}
	}
	commits := 0
	for id := range ids {
		if strings.HasPrefix(id, "git:acme/api:") && !strings.Contains(id, ":branch:") && !strings.Contains(id, ":tag:") {
			commits++
		}
	}
	if commits != 2 {
		t.Fatalf("commits on disk: %d (%s)", commits, sampleIDs(ids))
	}
}

// TestBinaryValidateAndOnboard: validate-config and export-onboard-data
// from the CLI, for both flavours; a rejected token is exit 1.
func TestBinaryValidateAndOnboard(t *testing.T) {
	flavours(t, func(t *testing.T, fl string) {
		f := newFake(t, fl)
		f.addOwner("ACME")
		f.addRepo("ACME", "api", 1)
		f.addRepo("ACME", "web", 1)
		root := filepath.Join(t.TempDir(), "root")
		cfg := writeConfig(t, f.config(fmt.Sprintf(`%q: ["ACME"], "repos": ["ACME/api"]`, f.ownersKey())))
		r := courier(t, root, "validate-config", "--integration", Type, "--config", cfg)
		if r.code != 0 || !strings.Contains(r.stdout, `"valid": true`) || !strings.Contains(r.stdout, "repo:ACME/api") {
			t.Fatalf("validate: %+v", r)
		}
		out := filepath.Join(t.TempDir(), "objs.ndjson")
		r = courier(t, root, "export-onboard-data", "--integration", Type, "--config", cfg, "--object-type", "projects", "--output", out)
		want := 2
		if fl == DataCenter {
			want = 1
		}
		if r.code != 0 || !strings.Contains(r.stdout, fmt.Sprintf("wrote %d projects", want)) {
			t.Fatalf("onboard projects: %+v", r)
		}
		listCfg := writeConfig(t, f.config(fmt.Sprintf(`%q: ["ACME"]`, f.ownersKey())))
		r = courier(t, root, "export-onboard-data", "--integration", Type, "--config", listCfg, "--object-type", "repos", "--output", out)
		if r.code != 0 || !strings.Contains(r.stdout, "wrote 2 repos") {
			t.Fatalf("onboard repos: %+v", r)
		}
		b, _ := os.ReadFile(out)
		if !strings.Contains(string(b), `"name":"ACME/web"`) {
			t.Fatalf("onboard file:\n%s", b)
		}
		f.set(func() { f.expired = true })
		r = courier(t, root, "validate-config", "--integration", Type, "--config", cfg)
		if r.code != 1 || !strings.Contains(r.stdout, "token: rejected") {
			t.Fatalf("validate with an expired token: %+v", r)
		}
	})
}

// TestBinaryServiceRun: enrolled with the reference backend, service-run
// validates, onboards and exports on the backend's commands.
func TestBinaryServiceRun(t *testing.T) {
	exporttest.Binary(t)
	f := newFake(t, DataCenter)
	f.addOwner("ACME")
	api := f.addRepo("ACME", "api", 2)
	f.addPull(api, "one", t0)
	root := filepath.Join(t.TempDir(), "root")
	dev := devservertest.Start(t, devserver.Options{})
	if r := courier(t, root, "enroll", dev.EnrollCode(t), "--backend-url", dev.URL, "--no-service"); r.code != 0 {
		t.Fatalf("enroll: %+v", r)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	agents, err := dev.Admin.Agents(ctx)
	if err != nil || len(agents) != 1 {
		t.Fatalf("agents: %v %v", agents, err)
	}
	logf, err := os.Create(filepath.Join(t.TempDir(), "service-run.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	svc := exec.Command(exporttest.Binary(t), "--root", root, "--log-format", "json", "service-run", "--listen", "127.0.0.1:0")
	svc.Env = exporttest.ChildEnv()
	svc.Stdout, svc.Stderr = logf, logf
	if err := svc.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		_ = svc.Process.Kill()
		_ = svc.Wait()
		if t.Failed() {
			b, _ := os.ReadFile(logf.Name())
			t.Logf("service-run:\n%s", b)
		}
	}()
	var cfg map[string]any
	if err := json.Unmarshal([]byte(f.config(`"projects": ["ACME"]`)), &cfg); err != nil {
		t.Fatal(err)
	}
	integ := map[string]any{"id": "int_bb", "type": Type, "config": cfg}
	command := func(typ string, params any) devserver.Result {
		t.Helper()
		raw, _ := json.Marshal(params)
		c, err := dev.Admin.AddCommand(ctx, agents[0].ID, devserver.NewCommand{Type: typ, Params: raw})
		if err != nil {
			t.Fatal(err)
		}
		res, err := dev.Admin.WaitResult(ctx, c.ID)
		if err != nil {
			t.Fatalf("%s: %v", typ, err)
		}
		return res
	}
	if res := command("validate-config", map[string]any{"integration": integ}); res.Error != "" || !strings.Contains(string(res.Output)+string(res.Body), `"valid":true`) {
		t.Fatalf("validate-config: %+v output %s body %s", res, res.Output, res.Body)
	}
	if res := command("export-onboard-data", map[string]any{"integration": integ, "object_type": "repos"}); res.Error != "" || !strings.Contains(string(res.Output)+string(res.Body), `"count":1`) {
		t.Fatalf("export-onboard-data: %+v output %s body %s", res, res.Output, res.Body)
	}
	if res := command("export", map[string]any{"integrations": []any{integ}}); res.Error != "" {
		t.Fatalf("export: %+v output %s", res, res.Output)
	}
	want := f.prID(api, 1)
	deadline := time.Now().Add(2 * time.Minute)
	for {
		recs, err := dev.Admin.Records(ctx, devserver.UploadFilter{RoutingKey: "export/int_bb"})
		if err != nil {
			t.Fatal(err)
		}
		var all strings.Builder
		for _, r := range recs {
			all.Write(r)
		}
		if strings.Contains(all.String(), want) && strings.Count(all.String(), `"model":"commit"`) == 2 {
			if strings.Contains(all.String(), fakeToken) {
				t.Fatal("an uploaded record holds the token")
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("uploads (%d) lack %s or the 2 commits:\n%.3000s", len(recs), want, all.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func sampleIDs(ids map[string]int) string {
	var out []string
	for id := range ids {
		if !strings.Contains(id, ":pull_request") {
			out = append(out, id)
		}
	}
	return strings.Join(out, " ")
}
