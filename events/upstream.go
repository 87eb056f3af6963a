package events

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/rs/zerolog"

	"courier/internal/redact"
	"courier/queue"
)

// PagerDuty's endpoints.
const (
	DefaultURL   = "https://events.pagerduty.com/v2/enqueue"
	DefaultV1URL = "https://events.pagerduty.com/generic/2010-04-15/create_event.json"
)

// PagerDutyBatchItems is the MaxItems the route of an events key should use.
// PagerDuty takes one event per request, so a larger batch only makes a
// failure at item k resend items before k.
const PagerDutyBatchItems = 1

// maxRetryAfter caps an upstream's Retry-After, so that a misbehaving proxy
// cannot park a routing key for days.
const maxRetryAfter = time.Hour

// DefaultMaxConnections is PagerDutyOptions.MaxConnections when unset.
const DefaultMaxConnections = 16

// maxAnswerBytes bounds how much of an answer is read for its error message.
const maxAnswerBytes = 64 << 10

// PagerDutyOptions configures NewPagerDutySink.
type PagerDutyOptions struct {
	// URL receives v2 events; empty means DefaultURL.
	URL string
	// V1URL receives v1 events. Empty means DefaultV1URL when URL is
	// PagerDuty's, otherwise URL's host with the v1 path (URL's "/v2/enqueue"
	// replaced), so that redirecting URL to a proxy or a test server also
	// redirects v1 events rather than leaking them to PagerDuty.
	V1URL string
	// ChangeURL receives change events. Empty means DefaultChangeURL when
	// URL is PagerDuty's, otherwise derived from URL as V1URL is.
	ChangeURL string
	// Client sends the requests; nil means a client with a 30 s timeout
	// that does not follow redirects, takes its proxy from HTTPS_PROXY,
	// HTTP_PROXY and NO_PROXY, and trusts CAFile besides the system's roots.
	Client *http.Client
	// CAFile is a PEM bundle trusted besides the system's roots, for an
	// endpoint behind a TLS-inspecting proxy or a private CA. Ignored when
	// Client is set.
	CAFile string
	// RatePerMinute paces delivery per routing key with a token bucket of
	// BurstPerKey tokens refilled at this many a minute; 0 turns pacing off.
	// Retries spend tokens too: PagerDuty counts every request.
	RatePerMinute float64
	BurstPerKey   int
	// UserAgent is sent with every request; empty means "courier".
	UserAgent string
	// MaxConnections caps the connections open to the upstream at once
	// when Client is nil; zero means DefaultMaxConnections. Deliveries past
	// it wait for a connection (within the request's timeout).
	MaxConnections int
	Logger         zerolog.Logger
}

// NewPagerDutySink returns the Sink of events keys: it POSTs each stored event
// to PagerDuty exactly as it was accepted, one event per request, in order.
//
// The queue delivers a batch as a unit. When the event at index k fails, the
// error is returned; the events before k were accepted by PagerDuty and are
// sent again with the rest of the batch. That is at-least-once delivery,
// which PagerDuty absorbs: it deduplicates by dedup_key, and every stored
// trigger carries one (generated at accept time when the client sent none).
//
// How PagerDuty's answers are classified:
//   - 2xx: delivered.
//   - 400, 422: the event is invalid; queue.Permanent, with PagerDuty's errors.
//   - 413: the event alone is too large; halving cannot help a batch of one,
//     so this is queue.Permanent too (and deliberately not queue.ErrTooLarge).
//   - 429, 5xx and any other status: retried; a *queue.RetryAfterError when
//     the answer has Retry-After (seconds or an HTTP date, capped at an hour).
//     Other 4xx (401, 403, 404, ...) come from a wrong URL or a proxy, which
//     an operator fixes; retrying keeps the events rather than dead-lettering
//     them.
//   - network errors and timeouts: retried.
//   - a stored event that does not decode: queue.Permanent.
//
// It fails only when CAFile cannot be read or holds no certificate.
func NewPagerDutySink(opts PagerDutyOptions) (queue.Sink, error) {
	s := &pagerDutySink{
		url:       opts.URL,
		v1URL:     opts.V1URL,
		changeURL: opts.ChangeURL,
		client:    opts.Client,
		ua:        opts.UserAgent,
		log:       opts.Logger.With().Str("component", "pagerduty").Logger(),
		now:       time.Now,
		pace:      newPacer(opts.RatePerMinute, opts.BurstPerKey),
	}
	if s.url == "" {
		s.url = DefaultURL
	}
	if s.v1URL == "" {
		s.v1URL = v1URLFor(s.url)
	}
	if s.changeURL == "" {
		s.changeURL = changeURLFor(s.url)
	}
	if s.client == nil {
		tr, err := httpTransport(opts.CAFile)
		if err != nil {
			return nil, err
		}
		n := opts.MaxConnections
		if n <= 0 {
			n = DefaultMaxConnections
		}
		// One delivery per routing key runs at once; thousands of keys must
		// not mean thousands of connections to PagerDuty.
		tr.MaxConnsPerHost, tr.MaxIdleConnsPerHost = n, n
		s.client = &http.Client{
			Transport: tr,
			Timeout:   30 * time.Second,
			// On 301/302/303 net/http would re-send the POST as a GET
			// without the event; the 3xx is reported instead.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		}
	}
	if s.ua == "" {
		s.ua = "courier"
	}
	return s, nil
}

// httpTransport is net/http's default transport (proxy from the
// environment, dial and TLS timeouts) with TLS verification always on and
// caFile trusted besides the system's roots.
func httpTransport(caFile string) (*http.Transport, error) {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.Proxy = http.ProxyFromEnvironment
	tr.TLSClientConfig = &tls.Config{MinVersion: tls.VersionTLS12}
	if caFile == "" {
		return tr, nil
	}
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("events.ca_file: %w", err)
	}
	pool, err := x509.SystemCertPool()
	if err != nil || pool == nil {
		pool = x509.NewCertPool()
	}
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("events.ca_file %s holds no PEM certificate", caFile)
	}
	tr.TLSClientConfig.RootCAs = pool
	return tr, nil
}

// v1URLFor derives the v1 endpoint that goes with a v2 URL.
func v1URLFor(v2 string) string {
	return siblingURL(v2, DefaultV1URL, "/generic/2010-04-15/create_event.json")
}

// changeURLFor derives the change events endpoint that goes with a v2 URL.
func changeURLFor(v2 string) string {
	return siblingURL(v2, DefaultChangeURL, "/v2/change/enqueue")
}

// siblingURL is PagerDuty's endpoint def when v2 is PagerDuty's, otherwise
// v2's host with path in place of v2's "/v2/enqueue".
func siblingURL(v2, def, path string) string {
	if v2 == DefaultURL {
		return def
	}
	u, err := url.Parse(v2)
	if err != nil {
		return def
	}
	u.Path = strings.TrimSuffix(strings.TrimSuffix(u.Path, "/"), "/v2/enqueue") + path
	u.RawPath = ""
	u.RawQuery = ""
	return u.String()
}

type pagerDutySink struct {
	url, v1URL, changeURL string
	client                *http.Client
	ua                    string
	log                   zerolog.Logger
	now                   func() time.Time
	pace                  *pacer
}

func (s *pagerDutySink) Deliver(ctx context.Context, key string, batch []queue.Message) error {
	routingKey := strings.TrimPrefix(key, queueKeyPrefix)
	log := s.log.With().Str("routing_key", RedactKey(routingKey)).Logger()
	for i, m := range batch {
		if err := s.deliverOne(ctx, routingKey, m); err != nil {
			if i > 0 {
				log.Debug().Int("sent", i).Int("batch", len(batch)).Msg("batch stopped part way; the events already sent will be sent again")
			}
			return err
		}
		log.Debug().Uint64("seq", m.Seq).Msg("event delivered to PagerDuty")
	}
	return nil
}

func (s *pagerDutySink) deliverOne(ctx context.Context, routingKey string, m queue.Message) error {
	stored, err := DecodeStored(m.Payload)
	if err != nil {
		return queue.Permanent(fmt.Errorf("corrupt stored event (seq %d): %w", m.Seq, err))
	}
	target := s.url
	switch stored.API {
	case APIv1:
		target = s.v1URL
	case APIChange:
		target = s.changeURL
	}
	// Alerts, changes and v1 events of one key share PagerDuty's limit.
	if err := s.pace.wait(ctx, routingKey); err != nil {
		return fmt.Errorf("waiting for the routing key's pace: %w", err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, target, bytes.NewReader(stored.Event))
	if err != nil {
		// A bad URL is a configuration error that a restart with a fixed
		// config cures, so the event is kept.
		return fmt.Errorf("build PagerDuty request: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", s.ua)
	resp, err := s.client.Do(req)
	if err != nil {
		return fmt.Errorf("send event to PagerDuty: %w", err)
	}
	defer func() {
		// Drain a little so that the connection can be reused.
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxAnswerBytes))
		_ = resp.Body.Close()
	}()
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		return nil
	}
	answer, _ := io.ReadAll(io.LimitReader(resp.Body, maxAnswerBytes))
	// PagerDuty may echo the integration key in its errors; error reasons are
	// logged and shown in `courier status`, so the key is redacted there.
	msg := strings.ReplaceAll(answerMessage(answer), routingKey, RedactKey(routingKey))
	if loc := resp.Header.Get("Location"); loc != "" && resp.StatusCode >= 300 && resp.StatusCode < 400 {
		msg = "redirected to " + loc + "; set the events URL to where it points"
	}
	err = fmt.Errorf("PagerDuty answered %s: %s", resp.Status, msg)
	switch resp.StatusCode {
	case http.StatusBadRequest, http.StatusUnprocessableEntity, http.StatusRequestEntityTooLarge:
		s.log.Warn().Str("routing_key", RedactKey(routingKey)).Uint64("seq", m.Seq).Err(err).Msg("PagerDuty refused the event; it is kept as failed")
		return queue.PermanentStatus(resp.StatusCode, err)
	}
	if after, ok := retryAfter(resp.Header.Get("Retry-After"), s.now()); ok {
		return &queue.RetryAfterError{After: after, Err: err}
	}
	return err
}

// answerMessage renders PagerDuty's error body (status, message, errors),
// or the start of whatever else came back.
func answerMessage(b []byte) string {
	var pd struct {
		Status  string   `json:"status"`
		Message string   `json:"message"`
		Errors  []string `json:"errors"`
	}
	if json.Unmarshal(b, &pd) == nil && (pd.Message != "" || len(pd.Errors) > 0) {
		msg := pd.Message
		if msg == "" {
			msg = pd.Status
		}
		if len(pd.Errors) > 0 {
			msg += ": " + strings.Join(pd.Errors, "; ")
		}
		return msg
	}
	text := strings.TrimSpace(string(b))
	if text == "" {
		return "(empty body)"
	}
	const maxText = 512
	if len(text) > maxText {
		text = strings.ToValidUTF8(text[:maxText], "") + "…"
	}
	return text
}

// retryAfter parses a Retry-After header: delay-seconds or an HTTP date.
func retryAfter(h string, now time.Time) (time.Duration, bool) {
	h = strings.TrimSpace(h)
	if h == "" {
		return 0, false
	}
	var d time.Duration
	if secs, err := strconv.ParseInt(h, 10, 64); err == nil {
		if secs < 0 {
			return 0, false
		}
		d = time.Duration(min(secs, int64(maxRetryAfter/time.Second))) * time.Second
	} else if t, err := http.ParseTime(h); err == nil {
		d = max(t.Sub(now), 0)
	} else {
		return 0, false
	}
	return min(d, maxRetryAfter), true
}

// RedactKey shortens an integration key for logs, status and metrics: its
// first 4 characters, an ellipsis and a short hash (internal/redact). Anyone
// holding the full key can post events to the service.
func RedactKey(key string) string { return redact.Key(key) }
