package forge

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"slices"
	"strconv"
	"strings"
)

// HashOf is the hex SHA-256 of v's JSON: integrations keep it in a token
// to send an object again only when it changed (users, repos), for APIs
// that have no update time to page by.
func HashOf(v any) string {
	b, _ := json.Marshal(v)
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// ParseHashes reads a token of "id:hash,id:hash" with numeric ids; a token
// that does not parse reads as empty, so every object is sent again.
func ParseHashes(tok string) map[int64]string {
	out := map[int64]string{}
	if tok == "" {
		return out
	}
	for _, part := range strings.Split(tok, ",") {
		id, h, ok := strings.Cut(part, ":")
		n, err := strconv.ParseInt(id, 10, 64)
		if !ok || err != nil {
			return map[int64]string{}
		}
		out[n] = h
	}
	return out
}

// FormatHashes writes m as ParseHashes reads it, ids in order, so that an
// unchanged set gives the same token.
func FormatHashes(m map[int64]string) string {
	ids := make([]int64, 0, len(m))
	for id := range m {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	parts := make([]string, len(ids))
	for i, id := range ids {
		parts[i] = strconv.FormatInt(id, 10) + ":" + m[id]
	}
	return strings.Join(parts, ",")
}
