package events

import (
	"crypto/sha256"
	"crypto/subtle"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strings"

	"courier/internal/redact"
	"courier/queue"
)

// guard keeps web pages out of the local API. A browser marks what a page
// sends with Origin (every POST, every cross-origin fetch) or
// Sec-Fetch-Site; PagerDuty's clients, curl and courier itself send
// neither. A DNS-rebinding page reaches 127.0.0.1 under its own name, which
// the Host check refuses.
type guard struct {
	hosts    map[string]bool // lower case, no port, no trailing dot
	origins  map[string]bool // as NormalizeOrigin makes them
	tokenSum *[sha256.Size]byte
}

func newGuard(opts APIOptions) *guard {
	g := &guard{hosts: map[string]bool{}, origins: map[string]bool{}}
	for _, h := range opts.ListenHosts {
		g.hosts[normalizeHost(h)] = true
	}
	for _, o := range opts.AllowedOrigins {
		g.origins[normalizeOrigin(o)] = true
	}
	if tok := opts.LocalToken; tok != "" {
		sum := sha256.Sum256([]byte("Token " + tok))
		g.tokenSum = &sum
	}
	return g
}

func normalizeHost(h string) string {
	return strings.TrimSuffix(strings.ToLower(strings.Trim(h, "[]")), ".")
}

func normalizeOrigin(o string) string { return strings.TrimSuffix(strings.ToLower(o), "/") }

// allow answers 403 and returns false for a request from a web page or to a
// host name that is not this agent's.
func (g *guard) allow(w http.ResponseWriter, r *http.Request) bool {
	if !g.hostAllowed(r.Host) {
		writeError(w, http.StatusForbidden, fmt.Sprintf(
			"Host %q is not a name of this agent (DNS rebinding is refused); use 127.0.0.1 or localhost, or add the name to listen_hosts in config.yaml", r.Host))
		return false
	}
	origin := r.Header.Get("Origin")
	if origin != "" && g.origins[normalizeOrigin(origin)] {
		return true
	}
	if origin != "" {
		writeError(w, http.StatusForbidden, fmt.Sprintf(
			"requests from web pages are refused (Origin: %s); add the origin to allowed_origins in config.yaml if this page must reach the agent", origin))
		return false
	}
	// Without Origin, a browser still says where a request comes from; only
	// "none" (typed into the address bar) is a person rather than a page.
	if site := r.Header.Get("Sec-Fetch-Site"); site != "" && site != "none" {
		writeError(w, http.StatusForbidden, fmt.Sprintf(
			"requests from web pages are refused (Sec-Fetch-Site: %s); a page's origin must be in allowed_origins in config.yaml", site))
		return false
	}
	return true
}

// hostAllowed accepts loopback addresses, localhost, any name in
// listen_hosts, and no Host at all (HTTP/1.0; browsers always send one).
// Other IP literals are refused too: a listener on every interface is
// reached under a name or address the operator lists.
func (g *guard) hostAllowed(hostport string) bool {
	if hostport == "" {
		return true
	}
	host := hostport
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		host = h
	}
	host = normalizeHost(host)
	if host == "localhost" || g.hosts[host] {
		return true
	}
	a, err := netip.ParseAddr(host)
	return err == nil && a.Unmap().IsLoopback()
}

// showsKeys reports whether r carries the local token, which entitles it to
// whole routing keys in the queue's status.
func (g *guard) showsKeys(r *http.Request) bool {
	if g.tokenSum == nil {
		return false
	}
	h := r.Header.Get("Authorization")
	if len(h) > len("Token ") && strings.EqualFold(h[:len("Token ")], "Token ") {
		h = "Token " + h[len("Token "):]
	}
	sum := sha256.Sum256([]byte(h))
	return subtle.ConstantTimeCompare(sum[:], g.tokenSum[:]) == 1
}

// redactStatus replaces routing keys by their redacted form unless r
// carries the local token.
func (g *guard) redactStatus(r *http.Request, st queue.Status) queue.Status {
	if g.showsKeys(r) {
		return st
	}
	keys := make([]queue.KeyStatus, len(st.Keys))
	for i, k := range st.Keys {
		k.Key = redact.QueueKey(k.Key)
		keys[i] = k
	}
	st.Keys = keys
	return st
}

// resolveRetryKey turns what `retry -k` was given into a queue key: a
// redacted form (as status shows it) names the one key it stands for.
func (a *api) resolveRetryKey(r *http.Request, given string) (string, int, error) {
	if !redact.IsRedacted(given) {
		if !strings.Contains(given, "/") {
			return QueueKey(given), 0, nil
		}
		return given, 0, nil
	}
	st, err := a.q.Status(r.Context())
	if err != nil {
		return "", http.StatusInternalServerError, fmt.Errorf("could not read the queue's keys: %w", err)
	}
	var found []string
	for _, k := range st.Keys {
		if redact.Matches(given, k.Key) {
			found = append(found, k.Key)
		}
	}
	switch len(found) {
	case 0:
		return "", http.StatusNotFound, fmt.Errorf("no routing key in the queue matches %s; `courier status` lists them", given)
	case 1:
		return found[0], 0, nil
	}
	return "", http.StatusConflict, fmt.Errorf("%s matches %d routing keys; give the whole key (`courier status --show-keys`)", given, len(found))
}
