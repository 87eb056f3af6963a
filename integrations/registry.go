package integrations

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"

	"gopkg.in/yaml.v3"

	"courier/config"
)

// ErrUnsupportedObject is returned by Onboard for an object type the
// integration does not list.
var ErrUnsupportedObject = errors.New("object type not supported by this integration")

// Registration describes one integration type.
type Registration struct {
	// Type is the name in commands and configs: "git", "github", ...
	Type string
	// NewConfig returns a config with its defaults set.
	NewConfig func() Config
	// New builds an instance from a validated config.
	New func(opts Options, cfg Config) (Integration, error)
	// Objects are the onboarding object types it lists.
	Objects []string
}

var (
	regMu    sync.RWMutex
	registry = map[string]Registration{}
)

// Register adds an integration type. Call it from init(); a duplicate type
// is a programming error and panics.
func Register(r Registration) {
	if r.Type == "" || r.NewConfig == nil || r.New == nil {
		panic("integrations: Register needs Type, NewConfig and New")
	}
	regMu.Lock()
	defer regMu.Unlock()
	if _, dup := registry[r.Type]; dup {
		panic(fmt.Sprintf("integrations: %q registered twice", r.Type))
	}
	registry[r.Type] = r
}

// Lookup returns the registration of typ.
func Lookup(typ string) (Registration, error) {
	regMu.RLock()
	defer regMu.RUnlock()
	r, ok := registry[typ]
	if !ok {
		return Registration{}, fmt.Errorf("unknown integration type %q (known: %s)", typ, strings.Join(typesLocked(), ", "))
	}
	return r, nil
}

// Types lists the registered types, sorted.
func Types() []string {
	regMu.RLock()
	defer regMu.RUnlock()
	return typesLocked()
}

func typesLocked() []string {
	out := make([]string, 0, len(registry))
	for t := range registry {
		out = append(out, t)
	}
	slices.Sort(out)
	return out
}

// DecodeConfig turns raw JSON or YAML into typ's config: defaults first,
// then the document decoded strictly, then Validate. Errors read the same
// for both formats and as config.yaml's do: "<typ> config: " and the key,
// its line and, for an unknown key, the key most likely meant.
func DecodeConfig(typ string, raw []byte) (Config, error) {
	r, err := Lookup(typ)
	if err != nil {
		return nil, err
	}
	cfg := r.NewConfig()
	if err := config.DecodeStrict(raw, cfg); err != nil {
		return nil, fmt.Errorf("%s config: %w", typ, err)
	}
	return cfg, nil
}

// DecodeConfigNode is DecodeConfig for a config that is part of a larger
// document (an export command's params): lines are the document's.
func DecodeConfigNode(typ string, n *yaml.Node) (Config, error) {
	r, err := Lookup(typ)
	if err != nil {
		return nil, err
	}
	cfg := r.NewConfig()
	if err := config.DecodeNode(n, cfg); err != nil {
		return nil, fmt.Errorf("%s config: %w", typ, err)
	}
	return cfg, nil
}
