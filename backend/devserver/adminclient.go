package devserver

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// ErrNotFound is returned (wrapped) by AdminClient when the devserver
// answered 404, such as Result for a command without a result yet, and by
// Server.AddCommand for an unknown agent.
var ErrNotFound = errors.New("not found")

// AdminClient is a Go client of a devserver's /admin/ endpoints, for tests
// of other packages and for scripts.
type AdminClient struct {
	base string
	hc   *http.Client
	// Poll is how often the Wait methods look; zero means 20 ms.
	Poll time.Duration
}

// NewAdminClient returns a client of the devserver at baseURL (the same URL
// the agent is given, such as "http://127.0.0.1:8080").
func NewAdminClient(baseURL string) *AdminClient {
	// A transport of its own, so that CloseIdleConnections closes only
	// this client's connections; no proxy: the devserver is local.
	return &AdminClient{base: strings.TrimSuffix(baseURL, "/"), hc: &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{}}}
}

// CloseIdleConnections closes the client's kept-alive connections.
func (a *AdminClient) CloseIdleConnections() { a.hc.CloseIdleConnections() }

func (a *AdminClient) do(ctx context.Context, method, path string, query url.Values, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	target := a.base + path
	if len(query) > 0 {
		target += "?" + query.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, method, target, body)
	if err != nil {
		return err
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := a.hc.Do(req)
	if err != nil {
		return fmt.Errorf("devserver admin %s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return fmt.Errorf("devserver admin %s %s: %w", method, path, err)
	}
	if resp.StatusCode >= 300 {
		var e struct {
			Error string `json:"error"`
		}
		_ = json.Unmarshal(b, &e)
		err := fmt.Errorf("devserver admin %s %s: %s: %s", method, path, resp.Status, e.Error)
		if resp.StatusCode == http.StatusNotFound {
			err = fmt.Errorf("%w: %w", ErrNotFound, err)
		}
		return err
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			return fmt.Errorf("devserver admin %s %s: %w", method, path, err)
		}
	}
	return nil
}

// AddEnrollCode adds a single-use enroll code ("" for a random one);
// expiresAt nil never expires, a past time makes an expired code.
func (a *AdminClient) AddEnrollCode(ctx context.Context, code string, expiresAt *time.Time) (EnrollCode, error) {
	var out EnrollCode
	err := a.do(ctx, http.MethodPost, "/admin/enroll-codes", nil, map[string]any{"code": code, "expires_at": expiresAt}, &out)
	return out, err
}

// EnrollCodes lists the enroll codes.
func (a *AdminClient) EnrollCodes(ctx context.Context) ([]EnrollCode, error) {
	var out []EnrollCode
	return out, a.do(ctx, http.MethodGet, "/admin/enroll-codes", nil, nil, &out)
}

// Agents lists the enrolled agents.
func (a *AdminClient) Agents(ctx context.Context) ([]Agent, error) {
	var out []Agent
	return out, a.do(ctx, http.MethodGet, "/admin/agents", nil, nil, &out)
}

// Revoke revokes an agent's API key: its requests are answered 401.
func (a *AdminClient) Revoke(ctx context.Context, agentID string) error {
	return a.do(ctx, http.MethodPost, "/admin/agents/"+url.PathEscape(agentID)+"/revoke", nil, nil, nil)
}

// Unrevoke makes a revoked API key valid again.
func (a *AdminClient) Unrevoke(ctx context.Context, agentID string) error {
	return a.do(ctx, http.MethodPost, "/admin/agents/"+url.PathEscape(agentID)+"/unrevoke", nil, nil, nil)
}

// AddCommand queues a command for an agent; the agent's pending poll
// answers at once.
func (a *AdminClient) AddCommand(ctx context.Context, agentID string, c NewCommand) (Command, error) {
	var out Command
	err := a.do(ctx, http.MethodPost, "/admin/agents/"+url.PathEscape(agentID)+"/commands", nil, c, &out)
	return out, err
}

// Commands lists the commands of an agent ("" for all), with their
// deliveries and acks.
func (a *AdminClient) Commands(ctx context.Context, agentID string) ([]Command, error) {
	var out []Command
	return out, a.do(ctx, http.MethodGet, "/admin/commands", filter("agent", agentID), nil, &out)
}

// Acks lists the acknowledgements of an agent ("" for all).
func (a *AdminClient) Acks(ctx context.Context, agentID string) ([]Ack, error) {
	var out []Ack
	return out, a.do(ctx, http.MethodGet, "/admin/acks", filter("agent", agentID), nil, &out)
}

// Results lists the results of an agent ("" for all).
func (a *AdminClient) Results(ctx context.Context, agentID string) ([]Result, error) {
	var out []Result
	return out, a.do(ctx, http.MethodGet, "/admin/results", filter("agent", agentID), nil, &out)
}

// Result returns a command's result; ErrNotFound (wrapped) when there is
// none yet.
func (a *AdminClient) Result(ctx context.Context, commandID string) (Result, error) {
	var out Result
	err := a.do(ctx, http.MethodGet, "/admin/results/"+url.PathEscape(commandID), nil, nil, &out)
	return out, err
}

// WaitResult waits until the command has a result, or ctx ends.
func (a *AdminClient) WaitResult(ctx context.Context, commandID string) (Result, error) {
	for {
		r, err := a.Result(ctx, commandID)
		if !errors.Is(err, ErrNotFound) {
			return r, err
		}
		if err := a.sleep(ctx); err != nil {
			return Result{}, fmt.Errorf("no result for %s: %w", commandID, err)
		}
	}
}

// UploadFilter selects uploads; empty fields match everything.
type UploadFilter struct {
	RoutingKey string
	AgentID    string
	CommandID  string
	// NoRecords leaves the records out (metadata only).
	NoRecords bool
}

func (f UploadFilter) query() url.Values {
	q := url.Values{}
	for k, v := range map[string]string{"routing_key": f.RoutingKey, "agent": f.AgentID, "command": f.CommandID} {
		if v != "" {
			q.Set(k, v)
		}
	}
	if f.NoRecords {
		q.Set("records", "0")
	}
	return q
}

// Uploads lists the accepted uploads that match f, in arrival order.
func (a *AdminClient) Uploads(ctx context.Context, f UploadFilter) ([]Upload, error) {
	var out []Upload
	return out, a.do(ctx, http.MethodGet, "/admin/uploads", f.query(), nil, &out)
}

// Records returns every record of the uploads that match f, in arrival
// order.
func (a *AdminClient) Records(ctx context.Context, f UploadFilter) ([]json.RawMessage, error) {
	var out struct {
		Records []json.RawMessage `json:"records"`
	}
	f.NoRecords = false
	err := a.do(ctx, http.MethodGet, "/admin/records", f.query(), nil, &out)
	return out.Records, err
}

// WaitRecords waits until at least n records match f, and returns them.
func (a *AdminClient) WaitRecords(ctx context.Context, f UploadFilter, n int) ([]json.RawMessage, error) {
	for {
		recs, err := a.Records(ctx, f)
		if err != nil || len(recs) >= n {
			return recs, err
		}
		if err := a.sleep(ctx); err != nil {
			return recs, fmt.Errorf("%d of %d records: %w", len(recs), n, err)
		}
	}
}

// Logs lists the log batches of a command ("" for all).
func (a *AdminClient) Logs(ctx context.Context, commandID string) ([]LogBatch, error) {
	var out []LogBatch
	return out, a.do(ctx, http.MethodGet, "/admin/logs", filter("command", commandID), nil, &out)
}

// Progress lists the progress reports of a command ("" for all), oldest
// first.
func (a *AdminClient) Progress(ctx context.Context, commandID string) ([]ProgressReport, error) {
	var out []ProgressReport
	return out, a.do(ctx, http.MethodGet, "/admin/progress", filter("command", commandID), nil, &out)
}

// Heartbeats lists the heartbeats of an agent ("" for all), oldest first.
func (a *AdminClient) Heartbeats(ctx context.Context, agentID string) ([]HeartbeatReport, error) {
	var out []HeartbeatReport
	return out, a.do(ctx, http.MethodGet, "/admin/heartbeats", filter("agent", agentID), nil, &out)
}

// SetFaults sets the faults of the endpoints named in f (see Faults) and
// returns every fault now in place.
func (a *AdminClient) SetFaults(ctx context.Context, f Faults) (Faults, error) {
	var out Faults
	return out, a.do(ctx, http.MethodPost, "/admin/faults", nil, f, &out)
}

// Faults returns the faults in place, with the counts left.
func (a *AdminClient) Faults(ctx context.Context) (Faults, error) {
	var out Faults
	return out, a.do(ctx, http.MethodGet, "/admin/faults", nil, nil, &out)
}

// ClearFaults removes every fault.
func (a *AdminClient) ClearFaults(ctx context.Context) error {
	return a.do(ctx, http.MethodDelete, "/admin/faults", nil, nil, nil)
}

// Stats returns the request counts by endpoint and status.
func (a *AdminClient) Stats(ctx context.Context) (Stats, error) {
	var out Stats
	return out, a.do(ctx, http.MethodGet, "/admin/stats", nil, nil, &out)
}

func (a *AdminClient) sleep(ctx context.Context) error {
	d := a.Poll
	if d <= 0 {
		d = 20 * time.Millisecond
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

func filter(key, v string) url.Values {
	if v == "" {
		return nil
	}
	return url.Values{key: {v}}
}
