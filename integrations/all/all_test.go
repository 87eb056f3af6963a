package all_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"courier/integrations"
	_ "courier/integrations/all"
)

// TestEveryIntegration holds every registered integration to the contract
// a user meets first: a documented config whose mistakes are named.
func TestEveryIntegration(t *testing.T) {
	types := integrations.Types()
	if len(types) < 2 {
		t.Fatalf("registered: %v", types)
	}
	for _, typ := range types {
		t.Run(typ, func(t *testing.T) {
			reg, err := integrations.Lookup(typ)
			if err != nil {
				t.Fatal(err)
			}
			if len(reg.Objects) == 0 {
				t.Error("lists no onboarding object types")
			}
			// An unknown key is refused, by name, in YAML and in JSON.
			for _, doc := range []string{"no_such_key: 1\n", `{"no_such_key": 1}`} {
				_, err := integrations.DecodeConfig(typ, []byte(doc))
				if err == nil || !strings.Contains(err.Error(), "no_such_key") {
					t.Errorf("config %q: want an error naming no_such_key, got %v", doc, err)
				}
				if err != nil && !strings.HasPrefix(err.Error(), typ+" config: ") {
					t.Errorf("error does not say which integration's config: %v", err)
				}
			}
			// The defaults either validate or say which key is missing.
			if _, err := integrations.DecodeConfig(typ, nil); err != nil && !strings.Contains(err.Error(), ":") {
				t.Errorf("default config error names no key: %v", err)
			}
			if _, err := os.Stat(filepath.Join("..", typ, "README.md")); err != nil {
				t.Errorf("integrations/%s has no README documenting its config and models", typ)
			}
		})
	}
}
