// Package redact turns PagerDuty routing keys, which are credentials, into
// the short form that logs, metrics and `courier status` show and that
// `courier retry -k` still accepts.
package redact

import (
	"crypto/sha256"
	"encoding/hex"
	"strings"
)

// Ellipsis separates the kept prefix from the hash. Where "…" is hard to
// type, "..." is accepted in its place.
const Ellipsis = "…"

// eventsPrefix is the queue's prefix of event routing keys (PROTOCOL §1).
const eventsPrefix = "events/"

// Key returns the first 4 characters of key, an ellipsis and 8 hex digits
// of the key's SHA-256: two keys that share their first characters still
// differ, and nobody can post events with what is shown.
func Key(key string) string {
	if key == "" {
		return ""
	}
	sum := sha256.Sum256([]byte(key))
	h := hex.EncodeToString(sum[:4])
	r := []rune(key)
	if len(r) <= 4 {
		return Ellipsis + h
	}
	return string(r[:4]) + Ellipsis + h
}

// QueueKey redacts the routing key inside an events/ queue key and returns
// any other queue key (export/int_1, results) as it is: those are not
// secret.
func QueueKey(key string) string {
	if rk, ok := strings.CutPrefix(key, eventsPrefix); ok {
		return eventsPrefix + Key(rk)
	}
	return key
}

// IsRedacted reports whether s is in the form Key returns (or its "..."
// spelling) rather than a whole key. Whole routing keys are printable ASCII,
// so they hold no "…"; and they are 32 characters, so no "..." form of 15
// characters is one.
func IsRedacted(s string) bool {
	s = strings.TrimPrefix(s, eventsPrefix)
	if strings.Contains(s, Ellipsis) {
		return true
	}
	i := strings.Index(s, "...")
	return i >= 0 && i <= 4 && len(s) == i+3+8
}

// Matches reports whether form (as IsRedacted accepts it, with or without
// the events/ prefix) is the redacted form of the queue key key.
func Matches(form, key string) bool {
	form = strings.Replace(form, "...", Ellipsis, 1)
	if rk, ok := strings.CutPrefix(key, eventsPrefix); ok {
		return form == eventsPrefix+Key(rk) || form == Key(rk)
	}
	return false
}
