package config_test

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"courier/config"
)

// FuzzLoad feeds arbitrary bytes to Load. Properties: it never panics or
// hangs; every failure is classified as ErrInvalid (the CLI's exit code 78
// depends on it); and whatever loads is valid and survives Save and Load
// unchanged, so `courier enroll` can never turn a working file into a broken
// one. Seeds are below and in testdata/fuzz/FuzzLoad; plain `go test` runs
// them.
func FuzzLoad(f *testing.F) {
	for _, seed := range []string{
		"",
		"listen: 127.0.0.1:8787\n",
		"listen: 0.0.0.0:8787\nlocal_token: 0123456789abcdef0123456789\n",
		"listen: 0.0.0.0:8787\n", // no token
		"lisen: 127.0.0.1:8787\n",
		"queue:\n  linger: 1h30m\n  retry_after: 2s\n  max_key_items: 10\n",
		"queue:\n  linger: 5\n",
		"queue: [1, 2]\n",
		"backend:\n  url: https://b.example.com\n  agent_id: agt_1\n  api_key: \"k:1#2\"\n",
		"backend:\n  url: b.example.com\n",
		"events:\n  upstream: backend\n  url: \"http://[::1]:1/x?y=z#f\"\n",
		"a: &a {b: *a}\n",
		"queue: &q\n  linger: 1s\nexports:\n  <<: *q\n",
		"listen: x\n---\nlisten: y\n",
		"{listen: '127.0.0.1:1', exports: {max_parallel: 0x10}}",
		"listen: !!binary aGVsbG8=\n",
		"\t",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		dir := t.TempDir()
		p := filepath.Join(dir, "config.yaml")
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		c, err := config.Load(p)
		if err != nil {
			if !errors.Is(err, config.ErrInvalid) {
				t.Fatalf("error is not ErrInvalid: %v", err)
			}
			return
		}
		if err := c.Validate(); err != nil {
			t.Fatalf("loaded but does not validate: %v", err)
		}
		saved := filepath.Join(dir, "saved.yaml")
		if err := config.Save(saved, c); err != nil {
			t.Fatalf("save: %v", err)
		}
		back, err := config.Load(saved)
		if err != nil {
			b, _ := os.ReadFile(saved)
			t.Fatalf("saved file does not load: %v\n%s", err, b)
		}
		if !reflect.DeepEqual(back, c) {
			t.Fatalf("round trip changed the config:\n got %+v\nwant %+v", back, c)
		}
	})
}
