package gitea

import (
	"encoding/json"
	"path/filepath"
	"slices"
	"testing"

	"courier/actors"
	"courier/integrations"
	"courier/internal/exporttest"
)

// envelope is one delivered record.
type envelope = exporttest.Envelope

// rig is a real agent core (exporttest.Rig), as in actors/export_test.go:
// actor system, guardian, Pebble queue on disk delivering to a recorder,
// and the export supervisor running the integration under its actor.
type rig struct {
	*exporttest.Rig
	logs *exporttest.LogBuffer
	// cache is the integrations' cache folder (git mirrors in cache/git).
	cache string
}

func newRig(t *testing.T) *rig {
	t.Helper()
	dir := t.TempDir()
	cache := filepath.Join(dir, "cache")
	r := exporttest.New(t, exporttest.Options{Dir: dir, Echo: true,
		Export: actors.ExportOptions{CacheDir: func(string) string { return cache }}})
	return &rig{Rig: r, logs: r.LogBuf, cache: cache}
}

// spec decodes cfg (JSON) as the registry does for a backend command.
func spec(t *testing.T, id string, cfg any) actors.IntegrationSpec {
	t.Helper()
	raw, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	c, err := integrations.DecodeConfig(Type, raw)
	if err != nil {
		t.Fatal(err)
	}
	return actors.IntegrationSpec{ID: id, Type: Type, Config: c}
}

// export runs one export of one integration to its end, waits until the
// queue delivered everything, and returns the result and the records.
func (r *rig) export(t *testing.T, s actors.IntegrationSpec) (actors.IntegrationResult, []envelope) {
	t.Helper()
	res := r.Run(t, actors.ExportSpec{Integrations: []actors.IntegrationSpec{s}})
	r.Drain(t)
	return res.Integrations[0], r.Records()
}

// index maps record id to its envelopes (a user can be sent under two
// owners), failing on one sent twice under the same session.
func index(t *testing.T, recs []envelope) map[string][]envelope {
	t.Helper()
	out := map[string][]envelope{}
	for _, e := range recs {
		for _, prev := range out[e.ID] {
			if slices.Equal(prev.Session, e.Session) {
				t.Errorf("record %s sent twice under %v", e.ID, e.Session)
			}
		}
		out[e.ID] = append(out[e.ID], e)
	}
	return out
}

func decode[T any](t *testing.T, e envelope) T {
	t.Helper()
	var v T
	if err := json.Unmarshal(e.Data, &v); err != nil {
		t.Fatalf("%s: %v", e.ID, err)
	}
	return v
}
