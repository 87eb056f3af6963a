package config_test

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"

	"gopkg.in/yaml.v3"

	"courier/config"
)

func TestInitWritesPrivateFileThatLoads(t *testing.T) {
	p := filepath.Join(t.TempDir(), "root", "config.yaml") // parent does not exist yet
	written, err := config.Init(p, false)
	if err != nil {
		t.Fatal(err)
	}
	assertMode(t, p, 0o600)
	assertMode(t, filepath.Dir(p), 0o700|os.ModeDir)

	loaded, err := config.Load(p)
	if err != nil {
		t.Fatalf("Init's file does not load: %v", err)
	}
	if !reflect.DeepEqual(loaded, written) {
		t.Fatalf("loaded %+v\nwritten %+v", loaded, written)
	}
	if len(loaded.Warnings()) != 0 {
		t.Fatalf("warnings: %v", loaded.Warnings())
	}
	// Everything but the token is the defaults.
	tok := loaded.LocalToken.Reveal()
	loaded.LocalToken = ""
	if !reflect.DeepEqual(loaded, config.Default()) {
		t.Fatalf("not the defaults: %+v", loaded)
	}
	if len(tok) != 43 { // 32 bytes, base64url without padding
		t.Fatalf("token %q has length %d", tok, len(tok))
	}
}

func TestInitTokensAreFresh(t *testing.T) {
	dir := t.TempDir()
	a, err := config.Init(filepath.Join(dir, "a.yaml"), false)
	if err != nil {
		t.Fatal(err)
	}
	b, err := config.Init(filepath.Join(dir, "b.yaml"), false)
	if err != nil {
		t.Fatal(err)
	}
	if a.LocalToken == b.LocalToken {
		t.Fatal("two inits wrote the same token")
	}
}

func TestInitRefusesToOverwrite(t *testing.T) {
	p := writeConfig(t, "listen: 127.0.0.1:1\n")
	_, err := config.Init(p, false)
	if !errors.Is(err, config.ErrExists) || !strings.Contains(err.Error(), p) {
		t.Fatalf("want ErrExists naming the file, got %v", err)
	}
	if b, _ := os.ReadFile(p); string(b) != "listen: 127.0.0.1:1\n" {
		t.Fatalf("file changed: %q", b)
	}

	c, err := config.Init(p, true)
	if err != nil {
		t.Fatalf("force: %v", err)
	}
	loaded, err := config.Load(p)
	if err != nil || loaded.Listen != "127.0.0.1:8787" || loaded.LocalToken != c.LocalToken {
		t.Fatalf("force did not rewrite the file: %+v, %v", loaded, err)
	}
}

// TestCommentsCoverEveryKey checks that Init writes every key of Config,
// each with a comment above it, so the file documents itself. It fails when
// a field is added without a comment.
func TestCommentsCoverEveryKey(t *testing.T) {
	p := filepath.Join(t.TempDir(), "config.yaml")
	if _, err := config.Init(p, false); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		t.Fatal(err)
	}
	commented := map[string]bool{}
	var walk func(n *yaml.Node, prefix string)
	walk = func(n *yaml.Node, prefix string) {
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			path := k.Value
			if prefix != "" {
				path = prefix + "." + k.Value
			}
			commented[path] = strings.TrimSpace(strings.TrimPrefix(k.HeadComment, "#")) != ""
			if v.Kind == yaml.MappingNode {
				walk(v, path)
			}
		}
	}
	walk(doc.Content[0], "")

	want := yamlKeys(reflect.TypeFor[config.Config](), "")
	for _, k := range want {
		ok, present := commented[k]
		if !present {
			t.Errorf("key %s missing from the file", k)
		} else if !ok {
			t.Errorf("key %s has no comment", k)
		}
	}
	if len(commented) != len(want) {
		t.Errorf("file has %d keys, Config has %d", len(commented), len(want))
	}
}

// yamlKeys lists every key of struct t, sections included, as dotted paths.
func yamlKeys(t reflect.Type, prefix string) []string {
	var out []string
	for f := range t.Fields() {
		name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if !f.IsExported() || name == "" || name == "-" {
			continue
		}
		if prefix != "" {
			name = prefix + "." + name
		}
		out = append(out, name)
		if f.Type.Kind() == reflect.Struct {
			out = append(out, yamlKeys(f.Type, name)...)
		}
	}
	return out
}

func TestSaveEnrollRoundTrip(t *testing.T) {
	p := filepath.Join(t.TempDir(), "config.yaml")
	if _, err := config.Init(p, false); err != nil {
		t.Fatal(err)
	}
	c, err := config.Load(p)
	if err != nil {
		t.Fatal(err)
	}
	c.Backend.URL, c.Backend.AgentID, c.Backend.APIKey = "https://backend.example.com", "agt_1", "sk_live_123"
	if err := config.Save(p, c); err != nil {
		t.Fatal(err)
	}
	assertMode(t, p, 0o600)
	loaded, err := config.Load(p)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(loaded, c) {
		t.Fatalf("loaded %+v\nsaved %+v", loaded, c)
	}
	if loaded.Backend.APIKey.Reveal() != "sk_live_123" {
		t.Fatal("the API key must be written in clear to the file")
	}
	if data, _ := os.ReadFile(p); !strings.Contains(string(data), "# Secret API key") {
		t.Fatal("Save dropped the comments")
	}
}

func TestSaveReplacesAtomically(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(p, []byte("listen: 127.0.0.1:1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	before, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	if err := config.Save(p, config.Default()); err != nil {
		t.Fatal(err)
	}
	after, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	// A new inode means the file was renamed into place, not rewritten in
	// place, where a crash could leave it half written.
	if os.SameFile(before, after) {
		t.Error("Save rewrote the file in place")
	}
	assertMode(t, p, 0o600)
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("temporary files left behind: %v", entries)
	}
}

func TestSaveRefusesInvalidConfig(t *testing.T) {
	p := writeConfig(t, "listen: 127.0.0.1:1\n")
	c := config.Default()
	c.Queue.MaxPendingBytes = 0
	err := config.Save(p, c)
	if !errors.Is(err, config.ErrInvalid) || !strings.Contains(err.Error(), "queue.max_pending_bytes") {
		t.Fatalf("got %v", err)
	}
	if b, _ := os.ReadFile(p); string(b) != "listen: 127.0.0.1:1\n" {
		t.Fatalf("file changed: %q", b)
	}
}

// TestSaveNeverShowsATornFile loads the file while it is being saved over and
// over: every load must see one complete version or the other.
func TestSaveNeverShowsATornFile(t *testing.T) {
	p := filepath.Join(t.TempDir(), "config.yaml")
	a, b := config.Default(), config.Default()
	b.Exports.MaxParallel = 9
	if err := config.Save(p, a); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		defer close(done)
		for i := range 16 {
			if err := config.Save(p, []*config.Config{a, b}[i%2]); err != nil {
				t.Error(err)
				return
			}
		}
	})
	defer wg.Wait()
	for loads := 0; ; loads++ {
		select {
		case <-done:
			return
		default:
		}
		c, err := config.Load(p)
		if err != nil {
			t.Errorf("load %d during saves: %v", loads, err)
			return
		}
		if !reflect.DeepEqual(c, a) && !reflect.DeepEqual(c, b) {
			t.Errorf("load %d saw a mix: %+v", loads, c)
			return
		}
	}
}

func assertMode(t *testing.T, path string, want os.FileMode) {
	t.Helper()
	info, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := info.Mode() & (os.ModePerm | os.ModeDir); got != want {
		t.Errorf("%s has mode %v, want %v", path, got, want)
	}
}
