package jira

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"courier/actors"
	"courier/integrations"
	"courier/internal/exporttest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, exporttest.GoleakOptions()...)
}

// shrink makes pages small and retries quick for one test.
func shrink(t *testing.T, page int) {
	t.Helper()
	oldPage, oldSub, oldBackoff := pageSize, subPageSize, backoffInitial
	pageSize, subPageSize, backoffInitial = page, page, 10*time.Millisecond
	t.Cleanup(func() { pageSize, subPageSize, backoffInitial = oldPage, oldSub, oldBackoff })
}

// envelope is one delivered record.
type envelope = exporttest.Envelope

// rig is the real path an export takes (exporttest.Rig): the export
// supervisor and its integration actors, a Pebble queue on disk whose sink
// collects records.
type rig struct {
	*exporttest.Rig
	t    *testing.T
	logs *exporttest.LogBuffer
	seen int
	n    int
}

const testID = "int_jira"

func newRig(t *testing.T) *rig {
	t.Helper()
	r := &rig{t: t}
	r.Rig = exporttest.New(t, exporttest.Options{Timestamp: true, AfterStop: func() {
		r.assertNoSecrets()
		if t.Failed() {
			t.Logf("logs:\n%s", r.Logs())
		}
	}})
	r.logs = r.LogBuf
	return r
}

// secrets are every form a credential of the fake could take in a log.
func secrets() []string {
	return []string{fakeToken, fakePAT, base64.StdEncoding.EncodeToString([]byte(fakeEmail + ":" + fakeToken))}
}

func (r *rig) assertNoSecrets() {
	r.t.Helper()
	for _, line := range strings.Split(r.Logs(), "\n") {
		for _, s := range secrets() {
			if strings.Contains(line, s) {
				r.t.Errorf("a log line holds a credential (%.6s…): %s", s, line)
			}
		}
	}
}

// export runs one export of the jira integration to its end through the
// real queue and returns its result and the records it delivered.
func (r *rig) export(cfg string, reprocess bool) (actors.IntegrationResult, []envelope) {
	r.t.Helper()
	c, err := integrations.DecodeConfig(Type, []byte(cfg))
	if err != nil {
		r.t.Fatal(err)
	}
	r.n++
	res := r.Run(r.t, actors.ExportSpec{ID: fmt.Sprintf("export-%d", r.n), Reprocess: reprocess,
		Integrations: []actors.IntegrationSpec{{ID: testID, Type: Type, Config: c}}})
	ir := res.Integrations[0]
	for _, s := range secrets() {
		if strings.Contains(ir.Error, s) || strings.Contains(fmt.Sprint(ir.EntityErrors), s) {
			r.t.Errorf("a result holds a credential: %+v", ir)
		}
	}
	var sent int
	for _, n := range ir.Records {
		sent += int(n)
	}
	r.WaitDelivered(r.t, r.seen+sent)
	r.seen += sent
	return ir, r.Records()
}

// byModel groups records by model, then by id, counting repeats.
func byModel(envs []envelope) map[string]map[string]int {
	out := map[string]map[string]int{}
	for _, e := range envs {
		if out[e.Model] == nil {
			out[e.Model] = map[string]int{}
		}
		out[e.Model][e.ID]++
	}
	return out
}

// data decodes the last record with id into v.
func data(t *testing.T, envs []envelope, id string, v any) {
	t.Helper()
	for i := len(envs) - 1; i >= 0; i-- {
		if envs[i].ID == id {
			if err := json.Unmarshal(envs[i].Data, v); err != nil {
				t.Fatal(err)
			}
			return
		}
	}
	t.Fatalf("no record %s", id)
}
