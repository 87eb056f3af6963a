package integrations

import (
	"context"

	"github.com/rs/zerolog"

	"courier/sessions"
)

// Object types an integration can list for onboarding.
const (
	ObjectUsers    = "users"
	ObjectRepos    = "repos"
	ObjectProjects = "projects"
)

// Config is an integration's typed configuration. It defaults and validates
// itself; Validate names the offending key in each problem.
type Config interface {
	SetToDefault()
	Validate() error
}

// Options are what the runtime gives one instance of an integration.
type Options struct {
	// ID is the integration's id (the backend's "int_1", or its type for a
	// manual export). Records and tokens are kept under it.
	ID string
	// Logger is tagged with the integration's id.
	Logger zerolog.Logger
	// CacheDir is a folder private to this integration id that survives
	// between runs (git mirrors live here).
	CacheDir string
	// BaseDir is the folder a relative path in the config is resolved
	// against: the agent's root, the same for a manual export and for the
	// service (whose current folder is / under systemd). Empty means the
	// current folder.
	BaseDir string
	// Attempt counts restarts within one export: 0 for the first run, 1
	// after the first crash, and so on.
	Attempt int
}

// Integration is one configured source of records.
type Integration interface {
	// Validate checks that everything the config names can be reached and
	// says, per item, what cannot and why.
	Validate(ctx context.Context) Validation
	// Export sends records through the session tree rooted at root and
	// returns when done or when ctx ends. It resumes from the tokens its
	// sessions return, so running it again after a crash is cheap. An
	// error fails the whole integration; an entity that fails alone is
	// reported with root's EntityError and the export goes on.
	Export(ctx context.Context, root *sessions.Session) error
	// Onboard lists objects of objectType (ObjectUsers, ObjectRepos or
	// ObjectProjects) for the backend to offer the user, calling emit for
	// each. It returns ErrUnsupportedObject for a type it does not list.
	Onboard(ctx context.Context, objectType string, emit func(Object) error) error
}

// Object is one onboarding object.
type Object struct {
	ID   string         `json:"id"`
	Name string         `json:"name"`
	Data map[string]any `json:"data,omitempty"`
}

// Validation is the answer of Validate (PROTOCOL.md validate-config output).
type Validation struct {
	Valid   bool           `json:"valid"`
	Errors  []string       `json:"errors"`
	Details map[string]any `json:"details,omitempty"`
}

// Problem adds a problem and marks the validation invalid.
func (v *Validation) Problem(msg string) {
	v.Valid = false
	v.Errors = append(v.Errors, msg)
}
