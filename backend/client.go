package backend

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"
)

// APIPrefix is where every endpoint of the backend API lives, under the
// backend's base URL.
const APIPrefix = "/api/v1/agent"

// DefaultTimeout bounds a request when Options.Timeout is zero.
const DefaultTimeout = 30 * time.Second

// unauthorizedLogEvery spaces the one error line about a refused API key.
const unauthorizedLogEvery = time.Minute

// Bounds on how much of an answer is read.
const (
	maxErrorBody   = 64 << 10
	maxSuccessBody = 64 << 20 // a poll's commands carry their params
)

// Options configures New and Enroll.
type Options struct {
	// URL is the backend's base URL (http or https), the --backend-url
	// given at enroll; the API's paths are appended under APIPrefix.
	URL string
	// APIKey is the agent's key from enroll. New requires it; Enroll
	// ignores it.
	APIKey string
	// CAFile is a PEM bundle trusted in addition to the system's roots,
	// for a backend behind a private CA. TLS verification is always on.
	CAFile string
	// UserAgent is sent with every request: "courier/<version>". Empty
	// means "courier/dev".
	UserAgent string
	// Timeout bounds each request, from sending to reading the whole
	// answer; zero means DefaultTimeout. A poll gets its wait on top.
	Timeout time.Duration
	// MaxConnections caps the connections open to the backend at once;
	// zero means DefaultMaxConnections. Requests past it wait for one.
	MaxConnections int
	Logger         zerolog.Logger
}

// DefaultMaxConnections is Options.MaxConnections when unset.
const DefaultMaxConnections = 8

// Client talks to one backend as one enrolled agent. It is safe for
// concurrent use.
//
// When the backend refuses the API key (401), the Client itself logs one
// error line saying so, at most once a minute, whichever call met it;
// callers need not log that again.
type Client struct {
	base    string // URL + APIPrefix, without a trailing slash
	apiKey  string
	ua      string
	timeout time.Duration
	http    *http.Client
	log     zerolog.Logger

	mu           sync.Mutex
	lastUnauthed time.Time
	now          func() time.Time
}

// New returns a client for the backend at opts.URL, authenticated with
// opts.APIKey.
func New(opts Options) (*Client, error) {
	if opts.APIKey == "" {
		return nil, errors.New("backend: an API key is required (run courier enroll)")
	}
	return newClient(opts)
}

func newClient(opts Options) (*Client, error) {
	base, err := baseURL(opts.URL)
	if err != nil {
		return nil, err
	}
	if !validHeaderValue(opts.APIKey) || strings.ContainsAny(opts.APIKey, " \t") {
		// Not the value: it is a credential.
		return nil, errors.New("backend: the API key contains characters that cannot go in an HTTP header")
	}
	hc, err := httpClient(opts.CAFile, opts.MaxConnections)
	if err != nil {
		return nil, err
	}
	c := &Client{
		base:    base,
		apiKey:  opts.APIKey,
		ua:      opts.UserAgent,
		timeout: opts.Timeout,
		http:    hc,
		log:     opts.Logger.With().Str("component", "backend").Logger(),
		now:     time.Now,
	}
	if c.ua == "" {
		c.ua = "courier/dev"
	}
	if !validHeaderValue(c.ua) {
		return nil, fmt.Errorf("backend: user agent %q cannot go in an HTTP header", c.ua)
	}
	if c.timeout <= 0 {
		c.timeout = DefaultTimeout
	}
	return c, nil
}

// CloseIdleConnections closes the connections kept alive for reuse; call it
// when the Client is no longer needed.
func (c *Client) CloseIdleConnections() { c.http.CloseIdleConnections() }

func baseURL(raw string) (string, error) {
	if raw == "" {
		return "", errors.New("backend: the backend URL is not set")
	}
	u, err := url.Parse(raw)
	if err != nil {
		return "", fmt.Errorf("backend: the backend URL %q is not valid", raw)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return "", fmt.Errorf("backend: the backend URL must be http or https, not %q", raw)
	}
	if u.Hostname() == "" {
		return "", fmt.Errorf("backend: the backend URL %q has no host", raw)
	}
	if u.User != nil {
		// Credentials in a URL end up in error messages.
		return "", errors.New("backend: the backend URL must not contain a user or password")
	}
	if u.RawQuery != "" || u.Fragment != "" {
		return "", fmt.Errorf("backend: the backend URL %q must not have a query or fragment", raw)
	}
	return strings.TrimSuffix(u.String(), "/") + APIPrefix, nil
}

// httpClient verifies TLS always; caFile adds to the system's roots. It
// does not follow redirects: net/http would turn a POST into a GET without
// its body. A redirect is reported as an answer instead.
func httpClient(caFile string, maxConns int) (*http.Client, error) {
	var tr *http.Transport
	if dt, ok := http.DefaultTransport.(*http.Transport); ok {
		tr = dt.Clone() // proxy from the environment, dial and TLS timeouts
	} else {
		tr = &http.Transport{Proxy: http.ProxyFromEnvironment, ForceAttemptHTTP2: true,
			TLSHandshakeTimeout: 10 * time.Second, IdleConnTimeout: 90 * time.Second}
	}
	// Delivery actors (one per routing key), the poller and the heartbeat
	// talk to one host at once; keep their connections.
	if maxConns <= 0 {
		maxConns = DefaultMaxConnections
	}
	// However many routing keys deliver at once, the backend sees at most
	// maxConns connections from this agent.
	tr.MaxConnsPerHost = maxConns
	tr.MaxIdleConnsPerHost = maxConns
	tr.TLSClientConfig = &tls.Config{MinVersion: tls.VersionTLS12}
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("backend: CA file: %w", err)
		}
		pool, err := x509.SystemCertPool()
		if err != nil || pool == nil {
			pool = x509.NewCertPool()
		}
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("backend: CA file %s holds no PEM certificate", caFile)
		}
		tr.TLSClientConfig.RootCAs = pool
	}
	return &http.Client{
		Transport:     tr,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}, nil
}

// call is one request under APIPrefix.
type call struct {
	method string
	path   string // escaped, under APIPrefix: "/commands/cmd_1/ack"
	query  url.Values
	body   []byte
	// contentType is set when body is; gzipped adds Content-Encoding.
	contentType string
	gzipped     bool
	header      map[string]string
	// timeout replaces the client's (a poll's wait plus the timeout).
	timeout time.Duration
	// noAuth leaves out the bearer (enroll).
	noAuth bool
}

// do sends cl and decodes a 2xx answer's JSON body into out (unless nil).
// Every error is an *Error.
func (c *Client) do(ctx context.Context, cl call, out any) error {
	op := cl.method + " " + APIPrefix + cl.path
	timeout := cl.timeout
	if timeout <= 0 {
		timeout = c.timeout
	}
	rctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()

	target := c.base + cl.path
	if len(cl.query) > 0 {
		target += "?" + cl.query.Encode()
	}
	var body io.Reader
	if cl.body != nil {
		body = bytes.NewReader(cl.body)
	}
	req, err := http.NewRequestWithContext(rctx, cl.method, target, body)
	if err != nil {
		return &Error{Kind: Permanent, Op: op, Message: "cannot build the request: " + c.redact(err.Error()), Err: err}
	}
	if !cl.noAuth {
		req.Header.Set("Authorization", "Bearer "+c.apiKey)
	}
	req.Header.Set("User-Agent", c.ua)
	req.Header.Set("Accept", "application/json")
	if cl.body != nil {
		req.Header.Set("Content-Type", cl.contentType)
		if cl.gzipped {
			req.Header.Set("Content-Encoding", "gzip")
		}
	}
	for k, v := range cl.header {
		if !validHeaderValue(v) {
			return &Error{Kind: Permanent, Op: op, Message: fmt.Sprintf("%s %q cannot go in an HTTP header", k, v)}
		}
		req.Header.Set(k, v)
	}

	start := time.Now()
	resp, err := c.http.Do(req)
	if err != nil {
		e := errorOf(ctx, op, timeout, err)
		e.Message = c.redact(e.Message)
		c.log.Debug().Str("op", op).Dur("took_ms", time.Since(start)).Str("error", e.Message).Msg("backend request failed")
		return e
	}
	defer func() {
		// Drain a little so that the connection can be reused.
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxErrorBody))
		_ = resp.Body.Close()
	}()
	c.log.Debug().Str("op", op).Int("status", resp.StatusCode).Dur("took_ms", time.Since(start)).Msg("backend request")

	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		if out == nil {
			return nil
		}
		dec := json.NewDecoder(io.LimitReader(resp.Body, maxSuccessBody))
		if err := dec.Decode(out); err != nil {
			if ctx.Err() == nil && rctx.Err() != nil {
				return errorOf(ctx, op, timeout, rctx.Err())
			}
			// A garbled answer: a proxy in the way, or a backend bug; the
			// request may well succeed next time.
			return &Error{Kind: Retryable, Status: resp.StatusCode, Op: op,
				Message: "the answer is not the expected JSON: " + c.redact(err.Error()), Err: err}
		}
		return nil
	}

	answer, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
	e := &Error{Kind: kindOfStatus(resp.StatusCode), Status: resp.StatusCode, Op: op,
		Message: c.redact(answerMessage(answer, resp.StatusCode))}
	if loc := resp.Header.Get("Location"); loc != "" && resp.StatusCode >= 300 && resp.StatusCode < 400 {
		e.Message = "redirected to " + c.redact(loc) + "; set the backend URL to where it points"
	}
	if e.Kind == Retryable {
		e.RetryAfter = parseRetryAfter(resp.Header.Get("Retry-After"), time.Now())
	}
	if e.Kind == Unauthorized && !cl.noAuth {
		c.unauthorized()
	}
	return e
}

// unauthorized logs that the key was refused, at most once a minute.
func (c *Client) unauthorized() {
	c.mu.Lock()
	now := c.now()
	due := c.lastUnauthed.IsZero() || now.Sub(c.lastUnauthed) >= unauthorizedLogEvery
	if due {
		c.lastUnauthed = now
	}
	c.mu.Unlock()
	if due {
		c.log.Error().Msg("the backend refused the API key (401); delivery paused, nothing is dropped; re-enroll with courier enroll")
	}
}

// redact removes the API key from text that came from elsewhere (an
// answer's body, a transport error), before it goes into an error.
func (c *Client) redact(s string) string {
	if c.apiKey == "" {
		return s
	}
	return strings.ReplaceAll(s, c.apiKey, "[redacted]")
}

// validHeaderValue refuses control characters, which net/http would refuse
// only when sending (an error that would look like a network failure).
func validHeaderValue(v string) bool {
	for i := 0; i < len(v); i++ {
		if b := v[i]; (b < ' ' && b != '\t') || b == 0x7f {
			return false
		}
	}
	return true
}

// postJSON sends v as the JSON body of a POST to path.
func (c *Client) postJSON(ctx context.Context, path string, v any, out any) error {
	return c.sendJSON(ctx, call{method: http.MethodPost, path: path}, v, out)
}

// sendJSON sends v as cl's JSON body.
func (c *Client) sendJSON(ctx context.Context, cl call, v any, out any) error {
	body, err := json.Marshal(v)
	if err != nil {
		return &Error{Kind: Permanent, Op: cl.method + " " + APIPrefix + cl.path, Message: "cannot encode the body: " + err.Error(), Err: err}
	}
	cl.body, cl.contentType = body, "application/json"
	return c.do(ctx, cl, out)
}
