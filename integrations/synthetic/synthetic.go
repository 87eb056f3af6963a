// Package synthetic is a deterministic integration for tests and
// benchmarks: it makes up records, and can be told to panic, hang or fail
// part-way, so the runtime's supervision is tested like a real integration's.
package synthetic

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"math/rand/v2"
	"strconv"
	"time"

	"courier/integrations"
	"courier/sessions"
)

// Type is the integration's name.
const Type = "synthetic"

// checkpointEvery is how many records a repo session sends between token
// checkpoints, so a restart resumes mid-repo.
const checkpointEvery = 500

func init() {
	integrations.Register(integrations.Registration{
		Type:      Type,
		NewConfig: func() integrations.Config { c := &Config{}; c.SetToDefault(); return c },
		New: func(opts integrations.Options, cfg integrations.Config) (integrations.Integration, error) {
			return &Synthetic{opts: opts, cfg: *cfg.(*Config)}, nil
		},
		Objects: []string{integrations.ObjectRepos, integrations.ObjectUsers},
	})
}

// Config of the synthetic integration.
type Config struct {
	Orgs         int    `json:"orgs" yaml:"orgs"`
	ReposPerOrg  int    `json:"repos_per_org" yaml:"repos_per_org"`
	ItemsPerRepo int    `json:"items_per_repo" yaml:"items_per_repo"`
	RecordBytes  int    `json:"record_bytes" yaml:"record_bytes"`
	DelayMS      int    `json:"delay_ms" yaml:"delay_ms"` // pause per record
	Seed         uint64 `json:"seed" yaml:"seed"`
	// Faults, after that many records of this run (0 = never). Panic and
	// hang fire on the first attempt only, so a restarted integration
	// resumes from its tokens and finishes, as a real one would after a
	// transient crash.
	PanicAfter int `json:"panic_after" yaml:"panic_after"`
	HangAfter  int `json:"hang_after" yaml:"hang_after"`
	ErrorAfter int `json:"error_after" yaml:"error_after"`
}

// SetToDefault gives a small export.
func (c *Config) SetToDefault() {
	*c = Config{Orgs: 1, ReposPerOrg: 2, ItemsPerRepo: 100, RecordBytes: 256, Seed: 1}
}

// Validate names the first bad key.
func (c *Config) Validate() error {
	var errs []error
	for _, f := range []struct {
		key string
		v   int
		min int
	}{
		{"orgs", c.Orgs, 1}, {"repos_per_org", c.ReposPerOrg, 1}, {"items_per_repo", c.ItemsPerRepo, 0},
		{"record_bytes", c.RecordBytes, 0}, {"delay_ms", c.DelayMS, 0},
		{"panic_after", c.PanicAfter, 0}, {"hang_after", c.HangAfter, 0}, {"error_after", c.ErrorAfter, 0},
	} {
		if f.v < f.min {
			errs = append(errs, fmt.Errorf("%s: must be at least %d, not %d", f.key, f.min, f.v))
		}
	}
	if c.RecordBytes > 1<<20 {
		errs = append(errs, fmt.Errorf("record_bytes: at most 1048576, not %d", c.RecordBytes))
	}
	return errors.Join(errs...)
}

// Synthetic is one configured instance.
type Synthetic struct {
	opts integrations.Options
	cfg  Config
}

// Validate has nothing to reach.
func (s *Synthetic) Validate(context.Context) integrations.Validation {
	return integrations.Validation{Valid: true, Errors: []string{}, Details: map[string]any{
		"records": s.cfg.Orgs * s.cfg.ReposPerOrg * s.cfg.ItemsPerRepo,
	}}
}

// Onboard lists the made-up repos or users.
func (s *Synthetic) Onboard(ctx context.Context, objectType string, emit func(integrations.Object) error) error {
	switch objectType {
	case integrations.ObjectRepos:
		for o := 0; o < s.cfg.Orgs; o++ {
			for r := 0; r < s.cfg.ReposPerOrg; r++ {
				name := fmt.Sprintf("org%d/repo%d", o, r)
				if err := emit(integrations.Object{ID: "synthetic:" + name, Name: name}); err != nil {
					return err
				}
			}
		}
	case integrations.ObjectUsers:
		for o := 0; o < s.cfg.Orgs; o++ {
			name := fmt.Sprintf("user%d", o)
			if err := emit(integrations.Object{ID: "synthetic:" + name, Name: name}); err != nil {
				return err
			}
		}
	default:
		return fmt.Errorf("%w: %q (synthetic lists repos and users)", integrations.ErrUnsupportedObject, objectType)
	}
	return ctx.Err()
}

// Item is the data of a synthetic record.
type Item struct {
	Org     string `json:"org"`
	Repo    string `json:"repo"`
	N       int    `json:"n"`
	Payload string `json:"payload"`
}

// Export emits every item not emitted before, repo by repo.
func (s *Synthetic) Export(ctx context.Context, root *sessions.Session) error {
	total := int64(s.cfg.Orgs * s.cfg.ReposPerOrg)
	sent := 0
	var done int64
	root.Progress(0, total)
	for o := 0; o < s.cfg.Orgs; o++ {
		org := root.Track(fmt.Sprintf("org:org%d", o))
		for r := 0; r < s.cfg.ReposPerOrg; r++ {
			repo := org.Track(fmt.Sprintf("repo:repo%d", r))
			if err := s.exportRepo(ctx, repo, o, r, &sent); err != nil {
				return err
			}
			if err := repo.Done(ctx, ""); err != nil {
				return err
			}
			done++
			root.Progress(done, total)
		}
		if err := org.Done(ctx, ""); err != nil {
			return err
		}
	}
	return root.Done(ctx, "")
}

func (s *Synthetic) exportRepo(ctx context.Context, repo *sessions.Session, o, r int, sent *int) error {
	items, tok, err := repo.Open("item")
	if err != nil {
		return err
	}
	start := 0
	if tok != "" {
		n, err := strconv.Atoi(tok)
		if err != nil {
			return fmt.Errorf("synthetic: bad token %q: %w", tok, err)
		}
		start = n + 1
	}
	orgName, repoName := fmt.Sprintf("org%d", o), fmt.Sprintf("repo%d", r)
	batch := make([]sessions.Record, 0, checkpointEvery)
	for n := start; n < s.cfg.ItemsPerRepo; n++ {
		if err := s.faults(ctx, *sent); err != nil {
			return err
		}
		if s.cfg.DelayMS > 0 {
			t := time.NewTimer(time.Duration(s.cfg.DelayMS) * time.Millisecond)
			select {
			case <-ctx.Done():
				t.Stop()
				return ctx.Err()
			case <-t.C:
			}
		}
		batch = append(batch, sessions.Record{
			ID:   fmt.Sprintf("synthetic:%s:%s:%d", orgName, repoName, n),
			Data: Item{Org: orgName, Repo: repoName, N: n, Payload: s.payload(orgName, repoName, n)},
		})
		*sent++
		if len(batch) == cap(batch) || n == s.cfg.ItemsPerRepo-1 || s.cfg.DelayMS > 0 {
			if err := items.Send(ctx, batch...); err != nil {
				return err
			}
			batch = batch[:0]
			items.Progress(int64(n+1), int64(s.cfg.ItemsPerRepo))
			if (n+1)%checkpointEvery == 0 {
				if err := items.Checkpoint(ctx, strconv.Itoa(n)); err != nil {
					return err
				}
			}
		}
	}
	items.Progress(int64(s.cfg.ItemsPerRepo), int64(s.cfg.ItemsPerRepo))
	last := ""
	if s.cfg.ItemsPerRepo > 0 {
		last = strconv.Itoa(s.cfg.ItemsPerRepo - 1)
	}
	return items.Done(ctx, last)
}

// faults fires the configured faults once the run has sent enough records.
func (s *Synthetic) faults(ctx context.Context, sent int) error {
	if s.cfg.PanicAfter > 0 && sent >= s.cfg.PanicAfter && s.opts.Attempt == 0 {
		panic(fmt.Sprintf("synthetic: panic_after %d reached", s.cfg.PanicAfter))
	}
	if s.cfg.ErrorAfter > 0 && sent >= s.cfg.ErrorAfter {
		return fmt.Errorf("synthetic: error_after %d reached", s.cfg.ErrorAfter)
	}
	if s.cfg.HangAfter > 0 && sent >= s.cfg.HangAfter && s.opts.Attempt == 0 {
		<-ctx.Done() // like a stuck network call: only cancellation ends it
		return ctx.Err()
	}
	return nil
}

// payload is record_bytes of text that depends only on seed and position,
// so two exports of the same config emit the same records.
func (s *Synthetic) payload(org, repo string, n int) string {
	if s.cfg.RecordBytes == 0 {
		return ""
	}
	h := fnv.New64a()
	fmt.Fprintf(h, "%s/%s/%d", org, repo, n)
	rng := rand.New(rand.NewPCG(s.cfg.Seed, h.Sum64()))
	const letters = "abcdefghijklmnopqrstuvwxyz0123456789"
	b := make([]byte, s.cfg.RecordBytes)
	for i := range b {
		b[i] = letters[rng.IntN(len(letters))]
	}
	return string(b)
}
