package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"syscall"
	"time"

	ucli "github.com/urfave/cli/v2"

	"courier/config"
)

// localClient talks to the local API of the service-run under a root.
type localClient struct {
	base   string
	token  string
	layout config.Layout
	http   *http.Client
	// started is when the service-run answering started (run/service.json).
	started time.Time
}

// localAPI prepares a command that talks to the running service-run: its
// env (no log file: the service owns the root's logs) and a client.
func localAPI(c *ucli.Context, command string) (*env, *localClient, error) {
	e, err := setup(c, command, false)
	if err != nil {
		return nil, nil, err
	}
	lc, err := newLocalClient(e)
	if err != nil {
		return nil, nil, err
	}
	return e, lc, nil
}

func newLocalClient(e *env) (*localClient, error) {
	ri, err := readRunInfo(e.layout)
	if err != nil {
		return nil, err
	}
	c := &localClient{base: "http://" + dialAddr(ri.Listen), layout: e.layout, http: &http.Client{Timeout: 30 * time.Second}, started: ri.StartedAt}
	// The token is needed only off loopback, but sending it always is
	// harmless and keeps one code path.
	if cfg, err := config.Load(e.layout.Config()); err == nil {
		c.token = cfg.LocalToken.Reveal()
	}
	return c, nil
}

// dialAddr turns the address service-run listens on into one to dial: a
// wildcard (0.0.0.0, ::) is reached through loopback.
func dialAddr(listen string) string {
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return listen
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() {
		host = "127.0.0.1" // Go's wildcard listener is dual-stack
	}
	return net.JoinHostPort(host, port)
}

// apiError is a non-2xx answer of the local API.
type apiError struct {
	status int
	msg    string
}

func (e *apiError) Error() string { return e.msg }

func (c *localClient) do(ctx context.Context, method, path string, body any, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "courier/"+Version)
	if c.token != "" {
		req.Header.Set("Authorization", "Token "+c.token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		if errors.Is(err, syscall.ECONNREFUSED) {
			return notRunning(c.layout, "nothing answers at "+c.base)
		}
		return fmt.Errorf("local API at %s: %w", c.base, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode/100 != 2 {
		var e struct {
			Error   string   `json:"error"`
			Message string   `json:"message"`
			Errors  []string `json:"errors"`
		}
		_ = json.Unmarshal(raw, &e)
		msg := e.Error
		if len(e.Errors) > 0 {
			msg = "the event was refused:"
			for _, x := range e.Errors {
				msg += "\n  - " + x
			}
			msg += "\n "
		}
		if msg == "" {
			msg = e.Message
		}
		if msg == "" {
			msg = http.StatusText(resp.StatusCode)
		}
		return &apiError{status: resp.StatusCode, msg: fmt.Sprintf("%s (HTTP %d)", msg, resp.StatusCode)}
	}
	if out != nil {
		if err := json.Unmarshal(raw, out); err != nil {
			return fmt.Errorf("local API answered %s with something that is not its JSON: %w", path, err)
		}
	}
	return nil
}

// apiExit picks the exit code for an answer of the local API.
func apiExit(err error) error {
	var ae *apiError
	if errors.As(err, &ae) {
		switch {
		case ae.status == http.StatusTooManyRequests || ae.status == http.StatusServiceUnavailable:
			return withCode(ExitTempFail, err)
		case ae.status/100 == 4:
			return withCode(ExitUsage, err)
		}
	}
	return err
}
