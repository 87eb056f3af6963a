// Package devservertest starts a devserver on a real 127.0.0.1 listener for
// a test, as buildkite's fake API server does: requests round-trip through
// a network connection, headers, gzip and all.
package devservertest

import (
	"context"
	"net/http/httptest"
	"testing"
	"time"

	"courier/backend/devserver"
)

// Fixture is a running devserver.
type Fixture struct {
	// URL is the backend URL to give the agent (and NewAdminClient).
	URL    string
	Admin  *devserver.AdminClient
	Server *devserver.Server
	// Dir holds the state; Restart starts a new devserver on it.
	Dir  string
	opts devserver.Options
	ts   *httptest.Server
}

// Start runs a devserver until the test ends. opts.Dir empty means a fresh
// t.TempDir(); a zero opts.Logger (zerolog's zero value) logs nothing.
func Start(t testing.TB, opts devserver.Options) *Fixture {
	t.Helper()
	if opts.Dir == "" {
		opts.Dir = t.TempDir()
	}
	s, err := devserver.New(opts)
	if err != nil {
		t.Fatalf("devserver: %v", err)
	}
	ts := httptest.NewServer(s.Handler())
	f := &Fixture{URL: ts.URL, Admin: devserver.NewAdminClient(ts.URL), Server: s, Dir: opts.Dir, opts: opts, ts: ts}
	t.Cleanup(f.Stop)
	return f
}

// Stop stops the devserver: pending long polls answer, connections close.
// It is safe to call more than once.
func (f *Fixture) Stop() {
	f.Server.Close()
	f.ts.Close()
	f.Admin.CloseIdleConnections()
}

// Restart stops the devserver and starts a new one on the same folder (on
// a new port), as a backend restart would.
func (f *Fixture) Restart(t testing.TB) *Fixture {
	t.Helper()
	f.Stop()
	return Start(t, f.opts)
}

// EnrollCode adds a fresh single-use enroll code and returns it.
func (f *Fixture) EnrollCode(t testing.TB) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := f.Admin.AddEnrollCode(ctx, "", nil)
	if err != nil {
		t.Fatalf("devserver: add enroll code: %v", err)
	}
	return c.Code
}
