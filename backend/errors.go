package backend

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/cenkalti/backoff/v4"
)

// Kind says what a caller should do about a failed request.
type Kind int

const (
	// Retryable: try again later, with backoff (network errors, timeouts,
	// 5xx, 429, 408, redirects). Error.RetryAfter, when set, is the least
	// wait the backend asked for.
	Retryable Kind = iota
	// Permanent: the backend refused the request and sending it again will
	// not change that (400, 403, 404, 409, 422, ...). For enroll, 401 is
	// Permanent too: the code is unknown.
	Permanent
	// Unauthorized: the backend refused the API key (401). Nothing is wrong
	// with the request; delivery and polling pause, with backoff, until the
	// agent is enrolled again.
	Unauthorized
	// TooLarge: the body was too large (413); send less per request.
	TooLarge
)

func (k Kind) String() string {
	switch k {
	case Retryable:
		return "retryable"
	case Permanent:
		return "permanent"
	case Unauthorized:
		return "unauthorized"
	case TooLarge:
		return "too large"
	}
	return "Kind(" + strconv.Itoa(int(k)) + ")"
}

// Error is every error a request of this package returns.
type Error struct {
	Kind Kind
	// Status is the HTTP status of the answer; 0 when there was none
	// (connection error, timeout) or the request was never sent.
	Status int
	// Message is the backend's {"error"} sentence; for an answer without
	// one, the start of its body or the status text; with no answer, what
	// went wrong on the way.
	Message string
	// RetryAfter is the backend's Retry-After (seconds or an HTTP date,
	// capped at MaxRetryAfter) on a Retryable answer; 0 when absent.
	RetryAfter time.Duration
	// Op is the request, such as "POST /api/v1/agent/uploads".
	Op string
	// Err is the underlying error when no answer came (a *url.Error, a
	// context error); nil otherwise.
	Err error
}

func (e *Error) Error() string {
	var b strings.Builder
	if e.Op != "" {
		b.WriteString(e.Op)
		b.WriteString(": ")
	}
	if e.Status != 0 {
		fmt.Fprintf(&b, "backend answered %d %s: ", e.Status, http.StatusText(e.Status))
	}
	b.WriteString(e.Message)
	return b.String()
}

// Unwrap returns the underlying error, so that errors.Is(err,
// context.Canceled) works through an *Error.
func (e *Error) Unwrap() error { return e.Err }

// HTTPStatus is Status; the queue keeps it with a dead letter.
func (e *Error) HTTPStatus() int { return e.Status }

// KindOf classifies any error of this package. Errors that are not an
// *Error (a context error, anything unexpected) are Retryable: the
// conservative answer for an agent that must not drop data. err must not be
// nil.
func KindOf(err error) Kind {
	var e *Error
	if errors.As(err, &e) {
		return e.Kind
	}
	return Retryable
}

// ForBackoff adapts err to github.com/cenkalti/backoff/v4: Permanent and
// TooLarge errors are wrapped in backoff.Permanent so that backoff.Retry
// stops; Retryable and Unauthorized ones are returned as they are (an
// unauthorized agent keeps trying, slowly, until it is enrolled again).
// errors.As still finds the *Error inside.
func ForBackoff(err error) error {
	if err == nil {
		return nil
	}
	switch KindOf(err) {
	case Permanent, TooLarge:
		return backoff.Permanent(err)
	}
	return err
}

// MaxRetryAfter caps a backend's Retry-After, so that a misbehaving proxy
// cannot park delivery for days.
const MaxRetryAfter = time.Hour

// kindOfStatus is the classification of an answer's status, the one table
// of this package. enroll overrides 401 (Permanent: the code is unknown).
func kindOfStatus(status int) Kind {
	switch {
	case status >= 200 && status < 300:
		panic("kindOfStatus of a success")
	case status == http.StatusUnauthorized:
		return Unauthorized
	case status == http.StatusRequestEntityTooLarge:
		return TooLarge
	case status == http.StatusTooManyRequests, status == http.StatusRequestTimeout:
		return Retryable
	case status >= 400 && status < 500:
		return Permanent
	}
	// 5xx; and 1xx/3xx, which a correct backend never sends here (a
	// redirect means the URL is wrong, which an operator fixes: keeping the
	// data and retrying is the safe side).
	return Retryable
}

// parseRetryAfter reads a Retry-After header: delay-seconds or an HTTP date.
func parseRetryAfter(h string, now time.Time) time.Duration {
	h = strings.TrimSpace(h)
	if h == "" {
		return 0
	}
	if secs, err := strconv.ParseInt(h, 10, 64); err == nil {
		if secs <= 0 {
			return 0
		}
		return time.Duration(min(secs, int64(MaxRetryAfter/time.Second))) * time.Second
	}
	if t, err := http.ParseTime(h); err == nil {
		return min(max(t.Sub(now), 0), MaxRetryAfter)
	}
	return 0
}

// answerMessage is the backend's {"error"} sentence, or the start of
// whatever else came back, or the status text.
func answerMessage(body []byte, status int) string {
	var e struct {
		Error string `json:"error"`
	}
	if json.Unmarshal(body, &e) == nil && strings.TrimSpace(e.Error) != "" {
		return strings.TrimSpace(e.Error)
	}
	text := strings.TrimSpace(string(body))
	if text == "" {
		if t := http.StatusText(status); t != "" {
			return "(no error message; " + strings.ToLower(t) + ")"
		}
		return "(no error message)"
	}
	const maxText = 512
	if len(text) > maxText {
		text = strings.ToValidUTF8(text[:maxText], "") + "…"
	}
	return text
}

// errorOf turns a failed round trip (no answer) into an *Error. ctx is the
// caller's: when it is still live, a deadline was this package's timeout.
func errorOf(ctx context.Context, op string, timeout time.Duration, err error) *Error {
	msg := err.Error()
	var ue *url.Error
	if errors.As(err, &ue) {
		// *url.Error repeats the method and the URL, which Op already says.
		msg = ue.Err.Error()
	}
	if errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil {
		msg = fmt.Sprintf("no answer within %s", timeout)
	}
	return &Error{Kind: Retryable, Op: op, Message: msg, Err: err}
}
