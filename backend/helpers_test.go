package backend_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"courier/backend"
	"courier/backend/devserver"
	"courier/backend/devserver/devservertest"
	"courier/internal/exporttest"
)

const testUA = "courier/1.2.3"

// rig is a devserver and a client of an agent enrolled with it; its logs
// are captured at debug level and checked for the API key at the end.
type rig struct {
	f       *devservertest.Fixture
	c       *backend.Client
	opts    backend.Options
	agentID string
	key     string
	logs    *exporttest.LogBuffer
}

func newRig(t *testing.T, dopts devserver.Options) *rig {
	t.Helper()
	f := devservertest.Start(t, dopts)
	logs := &exporttest.LogBuffer{}
	opts := backend.Options{URL: f.URL, UserAgent: testUA, Timeout: 5 * time.Second,
		Logger: zerolog.New(logs).Level(zerolog.DebugLevel)}
	resp, err := backend.Enroll(ctxT(t), opts, enrollReq(f.EnrollCode(t)))
	if err != nil {
		t.Fatal(err)
	}
	opts.APIKey = resp.APIKey
	c, err := backend.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	r := &rig{f: f, c: c, opts: opts, agentID: resp.AgentID, key: resp.APIKey, logs: logs}
	t.Cleanup(func() {
		c.CloseIdleConnections()
		if strings.Contains(logs.String(), r.key) {
			t.Error("the logs hold the API key")
		}
	})
	return r
}

// noKey fails when err's text holds the API key.
func (r *rig) noKey(t *testing.T, err error) {
	t.Helper()
	if err != nil && strings.Contains(err.Error(), r.key) {
		t.Errorf("error holds the API key: %v", err)
	}
}

func (r *rig) command(t *testing.T, typ string) devserver.Command {
	t.Helper()
	c, err := r.f.Admin.AddCommand(ctxT(t), r.agentID, devserver.NewCommand{Type: typ})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func (r *rig) fault(t *testing.T, endpoint string, f devserver.Fault) {
	t.Helper()
	if f.Count == 0 {
		f.Count = 1
	}
	if _, err := r.f.Admin.SetFaults(ctxT(t), devserver.Faults{endpoint: f}); err != nil {
		t.Fatal(err)
	}
}

func enrollReq(code string) backend.EnrollRequest {
	return backend.EnrollRequest{EnrollCode: code, Hostname: "build-7", OS: "linux", Arch: "amd64", Version: "1.2.3",
		System: backend.SystemInfo{CPUs: 2, MemoryBytes: 25769803776, GitVersion: "2.39.5"}}
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}
