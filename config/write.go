package config

import (
	"bytes"
	"courier/internal/atomicfile"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"gopkg.in/yaml.v3"
)

// fileMode keeps config.yaml private: it holds the API key and local token.
const fileMode = 0o600

// header heads every file Init and Save write.
const header = `courier agent configuration.
Written by "courier init"; "courier enroll" fills in backend. An unknown key
is an error. Durations are Go durations (200ms, 5s, 1m); sizes are bytes.`

// comments says what each key is; Init and Save write them above the keys.
// TestCommentsCoverEveryKey keeps it in step with the Config struct.
var comments = map[string]string{
	"backend":                 "Backend the agent is enrolled with; empty until `courier enroll`.",
	"backend.url":             "Base URL of the backend.",
	"backend.agent_id":        "This agent's id, issued at enroll.",
	"backend.api_key":         "Secret API key, issued at enroll.",
	"backend.ca_file":         "Optional absolute path to an extra PEM CA bundle; TLS is always verified.",
	"backend.allow_http":      "Accept an http:// url off loopback (the API key then travels in clear).",
	"backend.max_connections": "Most connections open to the backend at once.",

	"listen":          "Address of the local API (host:port). Loopback unless local_token is set.",
	"local_token":     "Secret clients must send (Authorization: Token ...) when listen is not loopback.",
	"listen_hosts":    "Host names clients may use for the local API besides localhost and loopback addresses.",
	"allowed_origins": "Web origins (https://host:port) whose pages may call the local API; browsers are refused otherwise.",

	"events":                 "Where relayed events go.",
	"events.upstream":        "pagerduty (post each event to url) or backend (send through the backend).",
	"events.url":             "PagerDuty Events API v2 endpoint.",
	"events.v1_url":          "PagerDuty Events API v1 endpoint.",
	"events.max_connections": "Most connections open to the events upstream at once, all routing keys together.",
	"events.change_url":      "PagerDuty Change Events endpoint. Left at PagerDuty's while url points elsewhere, it follows url's host.",
	"events.ca_file":         "Optional absolute path to an extra PEM CA bundle for the three endpoints (a TLS-inspecting proxy); TLS is always verified. HTTPS_PROXY and NO_PROXY are honoured.",
	"events.rate_per_key":    "Pace per routing key, events a minute (0 = off); rate + burst within PagerDuty's ~120/min.",
	"events.burst_per_key":   "Events a routing key may send at once after a quiet spell.",
	"events.stamp_timestamp": "Set payload.timestamp at receipt when absent (changes the forwarded body).",

	"queue":                    "Durable queue: quotas and delivery batches.",
	"queue.max_pending_bytes":  "Most bytes pending delivery, all routing keys together.",
	"queue.max_pending_items":  "Most items pending delivery, all routing keys together.",
	"queue.max_key_bytes":      "Most bytes pending for one routing key.",
	"queue.max_key_items":      "Most items pending for one routing key.",
	"queue.batch_max_items":    "Most items sent upstream in one batch.",
	"queue.batch_max_bytes":    "Most bytes sent upstream in one batch.",
	"queue.linger":             "How long a batch waits to fill before it is sent.",
	"queue.retry_after":        "Retry-After answered to local HTTP clients while the queue is full.",
	"queue.idle_timeout":       "Idle time after which a routing key's delivery actor stops.",
	"queue.metrics_keys":       "Routing keys (the most pending) with series of their own in /metrics; the rest are summed.",
	"queue.min_free_bytes":     "Free space kept on the root's filesystem: below it new events are refused (503) and exports wait; delivery goes on.",
	"queue.disk_reserve_bytes": "Reserve file (db/courier-reserve) released when the disk fills all the same, so that delivery can go on deleting.",
	"queue.max_failed_bytes":   "Most bytes of dead letters (refused for good), all routing keys together; past it the oldest are dropped.",
	"queue.max_failed_age":     "Dead letters that failed longer ago than this are dropped (0 = kept until max_failed_bytes needs the room).",

	"exports":               "Integration exports.",
	"exports.stall_timeout": "An integration making no progress for this long is cancelled.",
	"exports.max_parallel":  "Most integrations exporting at the same time.",
}

// Init writes a new config.yaml at path: every key with its default and a
// comment, and a fresh random local_token. It refuses to replace an existing
// file (ErrExists) unless force is set. The parent folder is created (0700)
// if needed. It returns the config written.
//
// The token is generated even though the default listen address does not
// need one, so that opening the local API to the network is a one-line
// change that cannot be made without authentication.
func Init(path string, force bool) (*Config, error) {
	if !force {
		if _, err := os.Lstat(path); err == nil {
			return nil, fmt.Errorf("%w: %s; refusing to overwrite it", ErrExists, path)
		} else if !errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("config: %w", err)
		}
	}
	c := Default()
	c.LocalToken = NewToken()
	if err := os.MkdirAll(filepath.Dir(path), dirMode); err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	if err := Save(path, c); err != nil {
		return nil, err
	}
	return c, nil
}

// NewToken returns 32 random bytes from crypto/rand, base64url-encoded
// without padding (43 characters, safe in headers and YAML).
func NewToken() Secret {
	var b [32]byte
	_, _ = rand.Read(b[:]) // never fails: crypto/rand aborts the process instead
	return Secret(base64.RawURLEncoding.EncodeToString(b[:]))
}

// Save validates c and writes it to path atomically with mode 0600: a crash
// leaves either the old file or the new one, never a torn one, which
// matters because the file holds the only copy of the API key.
//
// The file is written in the same commented layout as Init; comments a user
// added by hand are not kept.
func Save(path string, c *Config) error {
	if err := c.Validate(); err != nil {
		return fmt.Errorf("config %s: not saved: %w", path, err)
	}
	data, err := render(c)
	if err != nil {
		return fmt.Errorf("config %s: %w", path, err)
	}
	if err := atomicfile.Write(path, data, fileMode); err != nil {
		return fmt.Errorf("config %s: %w", path, err)
	}
	return nil
}

// render encodes c as YAML with a comment above every key.
func render(c *Config) ([]byte, error) {
	var doc yaml.Node
	if err := doc.Encode(c); err != nil {
		return nil, err
	}
	addComments(&doc, "")

	var body bytes.Buffer
	enc := yaml.NewEncoder(&body)
	enc.SetIndent(2)
	if err := enc.Encode(&doc); err != nil {
		return nil, err
	}
	if err := enc.Close(); err != nil {
		return nil, err
	}

	// yaml.v3 writes no blank lines; one before each top-level key's comment
	// makes the sections readable. Only our own comment lines are matched, so
	// a line inside a multi-line value is never touched.
	sections := map[string]bool{}
	for k, text := range comments {
		if !strings.Contains(k, ".") {
			sections["# "+text+"\n"] = true
		}
	}
	var out bytes.Buffer
	for _, line := range strings.Split(header, "\n") {
		out.WriteString("# " + line + "\n")
	}
	for _, line := range strings.SplitAfter(body.String(), "\n") {
		if sections[line] {
			out.WriteString("\n")
		}
		out.WriteString(line)
	}
	return out.Bytes(), nil
}

func addComments(n *yaml.Node, prefix string) {
	if n.Kind != yaml.MappingNode {
		return
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		path := joinKey(prefix, k.Value)
		k.HeadComment = comments[path]
		addComments(v, path)
	}
}
