// Package httpx is the HTTP layer every API integration shares: timeouts,
// retries with backoff on 5xx and network errors, Retry-After, rate limits
// honoured by sleeping until the reset (reported as progress, not as a
// failure), a concurrency limit per integration, TLS verification always on
// (an extra CA bundle can be added, never switched off) and credentials kept
// out of logs and errors.
//
// It is a RoundTripper, so SDKs (go-github, the Gitea SDK) use it through
// the *http.Client that Client returns.
package httpx

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/rs/zerolog"

	"courier/internal/safefile"
)

// Options configure a transport. Zero values take the defaults.
type Options struct {
	// Timeout bounds one attempt (default 60 s).
	Timeout time.Duration
	// MaxRetries bounds retries of 5xx and network errors (default 5).
	// Rate-limit waits do not count: they are not failures.
	MaxRetries int
	// Concurrency bounds requests in flight (default 4).
	Concurrency int
	// CAFile adds a PEM bundle to the system's roots.
	CAFile string
	// UserAgent is sent with every request.
	UserAgent string
	// Auth sets credentials on each outgoing request.
	Auth func(*http.Request)
	// RateLimit tells how long to wait for a response that is a rate
	// limit (or that exhausted the budget); nil uses DefaultRateLimit.
	RateLimit func(*http.Response) (wait time.Duration, limited bool)
	// MaxWait caps one rate-limit wait (default 1 h).
	MaxWait time.Duration
	// OnWait is told of every wait, and again every 30 s of a long one, so
	// the caller shows it as progress (a stall watchdog must not fire).
	OnWait func(d time.Duration, reason string)
	// BackoffInitial is the first retry pause (default 500 ms).
	BackoffInitial time.Duration
	Logger         zerolog.Logger
	// Base is the underlying transport (tests); nil builds one.
	Base http.RoundTripper
}

// Transport is the shared RoundTripper.
type Transport struct {
	o    Options
	base http.RoundTripper
	sem  chan struct{}
}

// New builds a transport.
func New(o Options) (*Transport, error) {
	if o.Timeout <= 0 {
		o.Timeout = 60 * time.Second
	}
	if o.MaxRetries <= 0 {
		o.MaxRetries = 5
	}
	if o.Concurrency <= 0 {
		o.Concurrency = 4
	}
	if o.MaxWait <= 0 {
		o.MaxWait = time.Hour
	}
	if o.BackoffInitial <= 0 {
		o.BackoffInitial = 500 * time.Millisecond
	}
	if o.RateLimit == nil {
		o.RateLimit = DefaultRateLimit
	}
	base := o.Base
	if base == nil {
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.TLSClientConfig = &tls.Config{MinVersion: tls.VersionTLS12}
		if o.CAFile != "" {
			// The path may come from a backend command's params.
			pem, err := safefile.Read("ca_file", o.CAFile, 0, 0)
			if err != nil {
				return nil, err
			}
			pool, err := x509.SystemCertPool()
			if err != nil {
				pool = x509.NewCertPool()
			}
			if !pool.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("ca_file %s: no PEM certificate in it", o.CAFile)
			}
			tr.TLSClientConfig.RootCAs = pool
		}
		tr.MaxIdleConnsPerHost = o.Concurrency
		base = tr
	}
	return &Transport{o: o, base: base, sem: make(chan struct{}, o.Concurrency)}, nil
}

// Client returns an *http.Client using the transport. Its own timeout is
// off: each attempt has one, and rate-limit waits may be long.
func (t *Transport) Client() *http.Client {
	return &http.Client{Transport: t, CheckRedirect: func(req *http.Request, via []*http.Request) error {
		if len(via) >= 5 {
			return errors.New("too many redirects")
		}
		// Credentials go only to the host they were meant for.
		if req.URL.Host != via[0].URL.Host {
			req.Header.Del("Authorization")
		}
		return nil
	}}
}

// maxRateWaits bounds the rate-limit waits of one request: a server that
// keeps answering "limited" (a Retry-After: 0 loop, a clock far off) gets
// its last answer back instead of holding the integration forever.
const maxRateWaits = 20

// CloseIdleConnections closes the idle connections of the underlying
// transport (http.Client.CloseIdleConnections calls it).
func (t *Transport) CloseIdleConnections() {
	if c, ok := t.base.(interface{ CloseIdleConnections() }); ok {
		c.CloseIdleConnections()
	}
}

// RoundTrip sends req, retrying what is worth retrying.
func (t *Transport) RoundTrip(req *http.Request) (*http.Response, error) {
	// A RoundTripper closes the request's body, whatever happens. With
	// GetBody, each attempt sends a fresh copy and the original is never
	// read; without, the body is sent once, as it is, and the underlying
	// transport closes it.
	hasBody := req.Body != nil && req.Body != http.NoBody
	replayable := !hasBody || req.GetBody != nil
	if hasBody && replayable {
		defer req.Body.Close()
	}
	ctx := req.Context()
	select {
	case t.sem <- struct{}{}:
	case <-ctx.Done():
		if !replayable {
			_ = req.Body.Close()
		}
		return nil, ctx.Err()
	}
	defer func() { <-t.sem }()

	bo := backoff.NewExponentialBackOff()
	bo.InitialInterval = t.o.BackoffInitial
	bo.MaxInterval = time.Minute
	bo.MaxElapsedTime = 0
	bo.Reset()
	retries, rateWaits := 0, 0
	for first := true; ; first = false {
		resp, err := t.attempt(req, first)
		var wait time.Duration
		var reason string
		switch {
		case err != nil:
			if ctx.Err() != nil || !retryableMethod(req) || !replayable {
				return nil, t.clean(err)
			}
			retries++
			wait, reason = bo.NextBackOff(), "network error: "+t.clean(err).Error()
		default:
			if !replayable {
				return resp, nil
			}
			if w, limited := t.o.RateLimit(resp); limited {
				rateWaits++
				if rateWaits > maxRateWaits {
					return resp, nil
				}
				// Never a busy loop, whatever the server says.
				wait, reason = max(min(w, t.o.MaxWait), t.o.BackoffInitial), "rate limited"
			} else if retryableStatus(resp.StatusCode) && retryableMethod(req) {
				retries++
				wait, reason = bo.NextBackOff(), resp.Status
				if ra, ok := RetryAfter(resp.Header, time.Now()); ok {
					wait = max(wait, min(ra, t.o.MaxWait))
				}
			} else {
				return resp, nil
			}
			if retries > t.o.MaxRetries {
				return resp, nil // the caller sees the last answer
			}
			drain(resp)
		}
		if retries > t.o.MaxRetries {
			return nil, fmt.Errorf("%s %s: giving up after %d retries: %s", req.Method, Redact(req.URL), t.o.MaxRetries, reason)
		}
		t.o.Logger.Debug().Str("url", Redact(req.URL)).Str("reason", reason).Dur("wait_ms", wait).Msg("waiting before retrying")
		if err := t.sleep(ctx, wait, reason); err != nil {
			return nil, err
		}
	}
}

// waitTick is how often a long wait reports itself, so that a stall
// watchdog sees a rate-limited integration as alive.
const waitTick = 30 * time.Second

func (t *Transport) sleep(ctx context.Context, d time.Duration, reason string) error {
	for d > 0 {
		if t.o.OnWait != nil {
			t.o.OnWait(d, reason)
		}
		step := min(d, waitTick)
		timer := time.NewTimer(step)
		select {
		case <-ctx.Done():
			timer.Stop()
			return ctx.Err()
		case <-timer.C:
		}
		d -= step
	}
	return nil
}

func (t *Transport) attempt(req *http.Request, first bool) (*http.Response, error) {
	ctx, cancel := context.WithTimeout(req.Context(), t.o.Timeout)
	r := req.Clone(ctx)
	if req.Body != nil && req.Body != http.NoBody {
		switch {
		case req.GetBody != nil:
			b, err := req.GetBody()
			if err != nil {
				cancel()
				return nil, err
			}
			r.Body = b
		case first:
			r.Body = req.Body // sent once; the transport closes it
		default:
			cancel()
			return nil, errors.New("request body cannot be replayed for a retry (set GetBody)")
		}
	}
	if t.o.UserAgent != "" {
		r.Header.Set("User-Agent", t.o.UserAgent)
	}
	// Credentials go only to the host they were meant for: on a redirect
	// (http.Client sets Response) to another host, none are added.
	if t.o.Auth != nil && req.URL.Host == originHost(req) {
		t.o.Auth(r)
	}
	resp, err := t.base.RoundTrip(r)
	if err != nil {
		cancel()
		return nil, err
	}
	resp.Body = &cancelBody{ReadCloser: resp.Body, cancel: cancel}
	return resp, nil
}

// originHost is the host of the request that started a redirect chain.
func originHost(req *http.Request) string {
	for i := 0; i < 20 && req.Response != nil && req.Response.Request != nil; i++ {
		req = req.Response.Request
	}
	return req.URL.Host
}

// cancelBody ends the attempt's context when the body is closed, not when
// RoundTrip returns: the caller is still reading.
type cancelBody struct {
	io.ReadCloser
	cancel context.CancelFunc
}

func (b *cancelBody) Close() error {
	err := b.ReadCloser.Close()
	b.cancel()
	return err
}

func drain(resp *http.Response) {
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	_ = resp.Body.Close()
}

// clean keeps URLs in errors without their credentials.
func (t *Transport) clean(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		u, perr := url.Parse(ue.URL)
		if perr == nil {
			return fmt.Errorf("%s %s: %w", ue.Op, Redact(u), ue.Err)
		}
		return fmt.Errorf("%s: %w", ue.Op, ue.Err)
	}
	return err
}

func retryableMethod(req *http.Request) bool {
	switch req.Method {
	case http.MethodGet, http.MethodHead, http.MethodOptions:
		return true
	}
	// A POST that only reads (a search) opts in with this header.
	return req.Header.Get("X-Courier-Idempotent") != ""
}

func retryableStatus(code int) bool {
	switch code {
	case http.StatusInternalServerError, http.StatusBadGateway, http.StatusServiceUnavailable,
		http.StatusGatewayTimeout, http.StatusTooManyRequests:
		return true
	}
	return false
}

// DefaultRateLimit reads the headers GitHub, Gitea and Jira use: a 429 or
// a 403 with Retry-After (secondary limits), or an exhausted budget
// (X-RateLimit-Remaining: 0) on a 403/429, waits until X-RateLimit-Reset.
func DefaultRateLimit(resp *http.Response) (time.Duration, bool) {
	now := time.Now()
	code := resp.StatusCode
	if code != http.StatusForbidden && code != http.StatusTooManyRequests {
		return 0, false
	}
	if ra, ok := RetryAfter(resp.Header, now); ok {
		return ra, true
	}
	if resp.Header.Get("X-RateLimit-Remaining") == "0" {
		if reset, err := strconv.ParseInt(resp.Header.Get("X-RateLimit-Reset"), 10, 64); err == nil {
			return max(time.Until(time.Unix(reset, 0))+time.Second, time.Second), true
		}
		return time.Minute, true
	}
	if code == http.StatusTooManyRequests {
		return time.Minute, true
	}
	return 0, false
}

// RetryAfter parses Retry-After as seconds or an HTTP date.
func RetryAfter(h http.Header, now time.Time) (time.Duration, bool) {
	v := strings.TrimSpace(h.Get("Retry-After"))
	if v == "" {
		return 0, false
	}
	if s, err := strconv.Atoi(v); err == nil && s >= 0 {
		return time.Duration(s) * time.Second, true
	}
	if t, err := http.ParseTime(v); err == nil {
		return max(t.Sub(now), 0), true
	}
	return 0, false
}

// Redact returns u without user info and with credential-looking query
// parameters masked, for logs and errors.
func Redact(u *url.URL) string {
	if u == nil {
		return ""
	}
	c := *u
	c.User = nil
	q := c.Query()
	for k := range q {
		lk := strings.ToLower(k)
		for _, w := range []string{"token", "key", "secret", "pass", "auth", "signature", "credential"} {
			if strings.Contains(lk, w) {
				q.Set(k, "[redacted]")
				break
			}
		}
	}
	c.RawQuery = q.Encode()
	return c.String()
}

// Error is a non-2xx answer, with enough of the body to act on.
type Error struct {
	Method string
	URL    string
	Status int
	Body   string
}

func (e *Error) Error() string {
	msg := fmt.Sprintf("%s %s: HTTP %d", e.Method, e.URL, e.Status)
	if e.Body != "" {
		msg += ": " + e.Body
	}
	return msg
}

// Check returns nil for a 2xx answer and an *Error otherwise, reading (and
// closing) at most 4 KiB of the body.
func Check(resp *http.Response) error {
	if resp.StatusCode/100 == 2 {
		return nil
	}
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
	_ = resp.Body.Close()
	e := &Error{Status: resp.StatusCode, Body: strings.TrimSpace(string(bytes.ToValidUTF8(b, nil)))}
	if resp.Request != nil {
		e.Method, e.URL = resp.Request.Method, Redact(resp.Request.URL)
	}
	return e
}
