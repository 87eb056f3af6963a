package github

import (
	"bytes"
	"io"
	"net/http"
	"time"

	"courier/integrations/httpx"
)

// secondaryWait is how long to wait on a secondary rate limit that says
// neither Retry-After nor an exhausted budget: GitHub asks for "at least
// one minute".
var secondaryWait = time.Minute

// rateLimit reads GitHub's rate-limit answers:
//   - primary: 403 or 429 with X-RateLimit-Remaining: 0 waits until
//     X-RateLimit-Reset;
//   - secondary: 403 or 429 with Retry-After waits that long;
//   - secondary without either header (the body's message or
//     documentation_url says "secondary rate limit"): one minute.
//
// The first two are httpx.DefaultRateLimit's; the third needs the body,
// which is put back for the caller.
func rateLimit(resp *http.Response) (time.Duration, bool) {
	if d, ok := httpx.DefaultRateLimit(resp); ok {
		return d, true
	}
	if resp.StatusCode != http.StatusForbidden && resp.StatusCode != http.StatusTooManyRequests {
		return 0, false
	}
	body := peek(resp, 16<<10)
	lower := bytes.ToLower(body)
	if bytes.Contains(lower, []byte("secondary rate limit")) || bytes.Contains(lower, []byte("abuse")) {
		return secondaryWait, true
	}
	return 0, false
}

// peek reads up to n bytes of resp's body and puts them back in front of
// the rest, so the caller still reads the whole body.
func peek(resp *http.Response, n int64) []byte {
	if resp.Body == nil {
		return nil
	}
	b, _ := io.ReadAll(io.LimitReader(resp.Body, n))
	resp.Body = struct {
		io.Reader
		io.Closer
	}{io.MultiReader(bytes.NewReader(b), resp.Body), resp.Body}
	return b
}
