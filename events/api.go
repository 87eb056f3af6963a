package events

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"courier/queue"
)

// MaxBodyBytes is the largest event body the local API takes.
const MaxBodyBytes = 512 << 10

// maxRetryBodyBytes bounds the body of POST /v1/queue/retry.
const maxRetryBodyBytes = 64 << 10

// Queue is what the local API needs of the durable queue.
type Queue interface {
	// Enqueue returns nil only once payloads are durable.
	Enqueue(ctx context.Context, key string, payloads [][]byte, p queue.Policy) error
	Status(ctx context.Context) (queue.Status, error)
	// Retry moves the failed items of key ("" = every key) back to pending
	// and returns how many it moved.
	Retry(ctx context.Context, key string) (int, error)
	// ListItems, Item and Purge let an operator see into the queue and
	// drop dead letters (queue/deadletter.go).
	ListItems(q queue.ItemQuery) (queue.ItemPage, error)
	Item(key string, seq uint64) (queue.Item, error)
	Purge(ctx context.Context, p queue.Purge) (queue.PurgeResult, error)
}

// APIOptions configures NewAPI.
type APIOptions struct {
	Queue Queue
	// Token, when set, is required as "Authorization: Token <token>" on every
	// request except GET /livez (a liveness probe has no credentials).
	Token string
	// RetryAfter is the Retry-After sent with 429 and 503; 0 means 5 s.
	RetryAfter time.Duration
	// Ready reports readiness for /readyz; nil means always ready.
	Ready func() error
	// Metrics serves GET /metrics; nil answers 404.
	Metrics http.Handler
	// Registerer, when set, gets the request counter.
	Registerer prometheus.Registerer
	Logger     zerolog.Logger
	// Now stamps ReceivedAt; nil means time.Now.
	Now func() time.Time
	// LocalToken, carried by a request, shows it whole routing keys in the
	// queue's status; without it they are redacted. Token implies it.
	LocalToken string
	// ListenHosts and AllowedOrigins are config.yaml's listen_hosts and
	// allowed_origins: see guard.
	ListenHosts    []string
	AllowedOrigins []string
	// StampTimestamp sets payload.timestamp at receipt on triggers and
	// change events that have none (events.stamp_timestamp).
	StampTimestamp bool
}

// NewAPI returns the agent's local HTTP API (PROTOCOL.md §2).
//
// It panics if opts.Registerer refuses the request counter for a reason other
// than it being registered already, as prometheus.MustRegister does: that is
// a programming error.
func NewAPI(opts APIOptions) http.Handler {
	a := &api{
		q:     opts.Queue,
		ready: opts.Ready,
		log:   opts.Logger.With().Str("component", "local-api").Logger(),
		now:   opts.Now,
		stamp: opts.StampTimestamp,
	}
	if opts.LocalToken == "" {
		opts.LocalToken = opts.Token
	}
	a.guard = newGuard(opts)
	if opts.Token != "" {
		sum := sha256.Sum256([]byte("Token " + opts.Token))
		a.tokenSum = &sum
	}
	after := opts.RetryAfter
	if after <= 0 {
		after = 5 * time.Second
	}
	a.retryAfter = strconv.FormatInt(int64(math.Ceil(after.Seconds())), 10)
	if a.now == nil {
		a.now = time.Now
	}
	a.requests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "courier_local_api_requests_total",
		Help: "Requests to the local API by path and HTTP status code.",
	}, []string{"path", "code"})
	if opts.Registerer != nil {
		if err := opts.Registerer.Register(a.requests); err != nil {
			var are prometheus.AlreadyRegisteredError
			if !errors.As(err, &are) {
				panic(fmt.Sprintf("events: register the local API's request counter: %v", err))
			}
			a.requests = are.ExistingCollector.(*prometheus.CounterVec)
		}
	}
	metrics := opts.Metrics
	if metrics == nil {
		metrics = http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			writeError(w, http.StatusNotFound, "metrics are not served by this agent")
		})
	}
	get := []string{http.MethodGet, http.MethodHead}
	post := []string{http.MethodPost}
	a.routes = map[string]route{
		"/v2/enqueue":        {post, a.enqueueV2, false},
		"/v2/change/enqueue": {post, a.enqueueChange, false},
		"/v1/send":           {post, a.send, false},
		"/v1/queue/status":   {get, a.status, false},
		"/v1/queue/retry":    {post, a.retry, false},
		"/v1/queue/items":    {get, a.items, false},
		"/v1/queue/item":     {get, a.item, false},
		"/v1/queue/purge":    {post, a.purge, false},
		"/livez":             {get, a.livez, true},
		"/readyz":            {get, a.readyz, false},
		"/metrics":           {get, metrics.ServeHTTP, false},
	}
	return a
}

type route struct {
	methods []string
	handler http.HandlerFunc
	open    bool // served without the token
}

type api struct {
	q          Queue
	tokenSum   *[sha256.Size]byte
	retryAfter string
	ready      func() error
	requests   *prometheus.CounterVec
	log        zerolog.Logger
	now        func() time.Time
	stamp      bool
	routes     map[string]route
	guard      *guard
}

func (a *api) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	rec := &statusRecorder{ResponseWriter: w}
	rt, known := a.routes[r.URL.Path]
	path := r.URL.Path
	if !known {
		path = "other" // bounded label cardinality
	}
	defer func() {
		code := rec.code
		if code == 0 {
			code = http.StatusOK
		}
		a.requests.WithLabelValues(path, strconv.Itoa(code)).Inc()
		a.log.Debug().Str("method", r.Method).Str("path", r.URL.Path).Int("code", code).
			Dur("duration", time.Since(start)).Msg("request")
	}()
	if !a.guard.allow(rec, r) {
		return
	}
	// Authentication comes before routing so that an unauthenticated caller
	// learns nothing about which paths exist.
	if !(known && rt.open) && !a.authorized(r) {
		rec.Header().Set("WWW-Authenticate", "Token")
		writeError(rec, http.StatusUnauthorized,
			`missing or wrong token: send "Authorization: Token <local_token>" with the local_token from config.yaml`)
		return
	}
	if !known {
		writeError(rec, http.StatusNotFound, fmt.Sprintf("no such endpoint %s; see PROTOCOL.md §2 for the local API", r.URL.Path))
		return
	}
	allowed := false
	for _, m := range rt.methods {
		allowed = allowed || r.Method == m
	}
	if !allowed {
		rec.Header().Set("Allow", strings.Join(rt.methods, ", "))
		writeError(rec, http.StatusMethodNotAllowed,
			fmt.Sprintf("%s does not accept %s; use %s", r.URL.Path, r.Method, strings.Join(rt.methods, " or ")))
		return
	}
	rt.handler(rec, r)
}

// authorized compares the Authorization header with the token in constant
// time. Hashing both first also hides the token's length.
func (a *api) authorized(r *http.Request) bool {
	if a.tokenSum == nil {
		return true
	}
	h := r.Header.Get("Authorization")
	// The scheme is case-insensitive (RFC 9110); the token is not.
	if len(h) > len("Token ") && strings.EqualFold(h[:len("Token ")], "Token ") {
		h = "Token " + h[len("Token "):]
	}
	sum := sha256.Sum256([]byte(h))
	return subtle.ConstantTimeCompare(sum[:], a.tokenSum[:]) == 1
}

func (a *api) enqueueV2(w http.ResponseWriter, r *http.Request) {
	a.accept(w, r, ParseV2)
}

func (a *api) enqueueChange(w http.ResponseWriter, r *http.Request) {
	a.accept(w, r, ParseChange)
}

func (a *api) send(w http.ResponseWriter, r *http.Request) {
	a.accept(w, r, ParseSend)
}

// accept validates an event, stores it, and answers 202 only once the queue
// says it is durable: a 202 is a promise that the event will reach upstream.
func (a *api) accept(w http.ResponseWriter, r *http.Request, parse func([]byte) (Accepted, []string)) {
	body, ok := a.readBody(w, r, MaxBodyBytes)
	if !ok {
		return
	}
	accepted, problems := parse(body)
	if problems != nil {
		// curl -d sends a form content type with a JSON body; courier, as
		// PagerDuty, reads the body as JSON whatever the header says, so the
		// header is worth naming only when the body is not JSON at all.
		if ct := mediaType(r); !json.Valid(body) && (ct == "application/x-www-form-urlencoded" || ct == "multipart/form-data") {
			problems = append(problems, "the body must be JSON (Content-Type: application/json), not "+ct)
		}
		writeJSON(w, http.StatusBadRequest, map[string]any{
			"status":  "invalid event",
			"message": "Event object is invalid",
			"errors":  problems,
			"error":   "the event is invalid: " + strings.Join(problems, "; "),
		})
		return
	}
	now := a.now()
	if a.stamp {
		var err error
		if accepted, err = accepted.StampTimestamp(now); err != nil {
			a.log.Error().Err(err).Msg("stamp the event's timestamp")
			writeError(w, http.StatusInternalServerError, "could not stamp the event's timestamp: "+err.Error())
			return
		}
	}
	payload, err := EncodeStored(accepted.Stored(now))
	if err != nil {
		a.log.Error().Err(err).Msg("encode accepted event")
		writeError(w, http.StatusInternalServerError, "could not encode the event: "+err.Error())
		return
	}
	err = a.q.Enqueue(r.Context(), accepted.QueueKey(), [][]byte{payload}, queue.Refuse)
	if err == nil {
		a.log.Debug().Str("api", accepted.API).Str("routing_key", RedactKey(accepted.Key)).Str("dedup_key", accepted.DedupKey).Msg("event stored")
		if accepted.API == APIChange {
			writeRaw(w, http.StatusAccepted, changeAnswer)
			return
		}
		// PagerDuty's answer, built without a map: this is every 202.
		dk, _ := json.Marshal(accepted.DedupKey)
		b := make([]byte, 0, 64+len(dk))
		b = append(b, `{"status":"success","message":"Event processed","dedup_key":`...)
		b = append(b, dk...)
		writeRaw(w, http.StatusAccepted, append(b, '}'))
		return
	}
	log := a.log.With().Str("api", accepted.API).Str("routing_key", RedactKey(accepted.Key)).Logger()
	switch {
	case errors.Is(err, queue.ErrFull):
		log.Warn().Msg("event refused: the queue is full")
		w.Header().Set("Retry-After", a.retryAfter)
		msg := fmt.Sprintf("the agent's event queue is full (upstream is slow or down); retry after %s s", a.retryAfter)
		writeJSON(w, http.StatusTooManyRequests, map[string]string{"status": "throttled", "message": msg, "error": msg})
	case errors.Is(err, queue.ErrClosed):
		w.Header().Set("Retry-After", a.retryAfter)
		msg := fmt.Sprintf("the agent is shutting down; retry after %s s", a.retryAfter)
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "unavailable", "message": msg, "error": msg})
	case errors.Is(err, queue.ErrDiskFull):
		// 503, not 507: the condition is temporary (delivery frees space),
		// Retry-After is defined for 503, and PagerDuty's clients retry a
		// 503 as they would PagerDuty's own.
		log.Warn().Err(err).Msg("event refused: the disk is full")
		w.Header().Set("Retry-After", a.retryAfter)
		msg := fmt.Sprintf("the agent's disk is full, so the event was not accepted (%v); retry after %s s", err, a.retryAfter)
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "unavailable", "message": msg, "error": msg})
	default:
		// Disk full, I/O errors, the client going away: the event is not
		// acknowledged, so the client keeps it and retries.
		level := zerolog.ErrorLevel
		if errors.Is(err, context.Canceled) {
			level = zerolog.DebugLevel // the client hung up; nobody to tell
		}
		log.WithLevel(level).Err(err).Msg("event not stored")
		w.Header().Set("Retry-After", a.retryAfter)
		msg := "the agent could not store the event, so it was not accepted: " + err.Error()
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "unavailable", "message": msg, "error": msg})
	}
}

// maxDrainBytes is how much of a body past the limit is read and thrown
// away before answering 413: a client still sending when the answer comes
// and the connection closes sees a reset, not the 413, and retries forever.
// Past this bound the connection is closed, so a huge body costs only this.
const maxDrainBytes = 1 << 20

// readBody reads at most limit bytes of the body, answering 413 past that.
// Content-Type is not required: PagerDuty takes a body without one.
func (a *api) readBody(w http.ResponseWriter, r *http.Request, limit int64) ([]byte, bool) {
	tooLarge := func(closeConn bool) ([]byte, bool) {
		if closeConn {
			w.Header().Set("Connection", "close")
		}
		writeJSON(w, http.StatusRequestEntityTooLarge, map[string]string{
			"status":  "invalid event",
			"message": "Request body is too large",
			"error":   fmt.Sprintf("the request body is larger than %d KiB; send one smaller event per request", limit>>10),
		})
		return nil, false
	}
	if r.ContentLength > limit+maxDrainBytes {
		// Known to be past the bound: answer before reading anything (a
		// client that sent Expect: 100-continue then sends no body).
		return tooLarge(true)
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, limit+1))
	if err != nil {
		writeError(w, http.StatusBadRequest, "could not read the request body: "+err.Error())
		return nil, false
	}
	if int64(len(body)) > limit {
		// Read the rest, up to a bound, so that the client is done sending
		// when the answer arrives. Beyond the bound, close instead.
		n, _ := io.Copy(io.Discard, io.LimitReader(r.Body, maxDrainBytes+1))
		return tooLarge(n > maxDrainBytes)
	}
	return body, true
}

func mediaType(r *http.Request) string {
	mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	return mt
}

func (a *api) status(w http.ResponseWriter, r *http.Request) {
	st, err := a.q.Status(r.Context())
	if err != nil {
		a.queueError(w, "could not read the queue's status", err)
		return
	}
	st = a.guard.redactStatus(r, st)
	writeJSON(w, http.StatusOK, st)
}

// RetryRequest is the body of POST /v1/queue/retry. RoutingKey is a
// PagerDuty routing key, or a queue key when it contains "/" (such as
// "export/int_1"); empty means every key.
type RetryRequest struct {
	RoutingKey string `json:"routing_key"`
}

// RetryResponse is the answer of POST /v1/queue/retry.
type RetryResponse struct {
	Retried int `json:"retried"`
}

func (a *api) retry(w http.ResponseWriter, r *http.Request) {
	body, ok := a.readBody(w, r, maxRetryBodyBytes)
	if !ok {
		return
	}
	var req RetryRequest
	if len(strings.TrimSpace(string(body))) > 0 {
		if err := json.Unmarshal(body, &req); err != nil {
			writeError(w, http.StatusBadRequest, `body is not valid JSON: `+err.Error()+`; send {"routing_key": "..."} or {}`)
			return
		}
	}
	key := req.RoutingKey
	if key != "" {
		k, code, err := a.resolveRetryKey(r, key)
		if err != nil {
			writeError(w, code, err.Error())
			return
		}
		key = k
	}
	n, err := a.q.Retry(r.Context(), key)
	if err != nil {
		a.queueError(w, "could not retry the failed items", err)
		return
	}
	writeJSON(w, http.StatusOK, RetryResponse{Retried: n})
}

func (a *api) queueError(w http.ResponseWriter, what string, err error) {
	if errors.Is(err, queue.ErrClosed) {
		w.Header().Set("Retry-After", a.retryAfter)
		writeError(w, http.StatusServiceUnavailable, what+": the agent is shutting down")
		return
	}
	if errors.Is(err, queue.ErrDiskFull) {
		w.Header().Set("Retry-After", a.retryAfter)
		writeError(w, http.StatusServiceUnavailable, what+": "+err.Error())
		return
	}
	a.log.Error().Err(err).Msg(what)
	writeError(w, http.StatusInternalServerError, what+": "+err.Error())
}

func (a *api) livez(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

func (a *api) readyz(w http.ResponseWriter, _ *http.Request) {
	if a.ready != nil {
		if err := a.ready(); err != nil {
			writeError(w, http.StatusServiceUnavailable, "not ready: "+err.Error())
			return
		}
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
}

func writeError(w http.ResponseWriter, code int, msg string) {
	writeJSON(w, code, map[string]string{"error": msg})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		// Only our own types are written; this is a bug, not a client error.
		code = http.StatusInternalServerError
		b = []byte(`{"error":"internal error: could not encode the answer"}`)
	}
	writeRaw(w, code, b)
}

// writeRaw writes b, a JSON document, as the answer.
func writeRaw(w http.ResponseWriter, code int, b []byte) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	_, _ = w.Write(append(b, '\n'))
}

// statusRecorder remembers the status code for the request counter.
type statusRecorder struct {
	http.ResponseWriter
	code int
}

func (s *statusRecorder) WriteHeader(code int) {
	if s.code == 0 {
		s.code = code
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusRecorder) Write(b []byte) (int, error) {
	if s.code == 0 {
		s.code = http.StatusOK
	}
	return s.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the real writer.
func (s *statusRecorder) Unwrap() http.ResponseWriter { return s.ResponseWriter }
