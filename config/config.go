package config

import (
	"crypto/x509"
	"fmt"
	"math"
	"net"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// Upstreams of events.
const (
	UpstreamPagerDuty = "pagerduty"
	UpstreamBackend   = "backend"
)

// Config is config.yaml. The zero value is not usable: start from Default
// or call SetToDefault, as Load does before decoding, so that a file only
// needs the keys it changes.
type Config struct {
	Backend    Backend `yaml:"backend"`
	Listen     string  `yaml:"listen"`
	LocalToken Secret  `yaml:"local_token"`
	// ListenHosts are the names, besides localhost and loopback addresses,
	// that clients may put in the Host header of a local API request. Any
	// other name is refused: a DNS-rebinding page would send its own.
	ListenHosts []string `yaml:"listen_hosts"`
	// AllowedOrigins are the web origins whose pages may call the local
	// API. Browsers send Origin or Sec-Fetch-Site; every other such request
	// is refused, so a web page cannot page someone.
	AllowedOrigins []string `yaml:"allowed_origins"`
	Events         Events   `yaml:"events"`
	Queue          Queue    `yaml:"queue"`
	Exports        Exports  `yaml:"exports"`

	warnings []string
}

// Backend is where the agent is enrolled; `courier enroll` writes it.
type Backend struct {
	URL     string `yaml:"url"`
	AgentID string `yaml:"agent_id"`
	APIKey  Secret `yaml:"api_key"`
	// CAFile is an extra PEM bundle trusted besides the system's roots, for a
	// backend behind a private CA. There is deliberately no option to turn
	// TLS verification off.
	CAFile string `yaml:"ca_file"`
	// AllowHTTP accepts an http:// URL off loopback, where the API key
	// would travel in clear; it is refused without it.
	AllowHTTP bool `yaml:"allow_http"`
	// MaxConnections caps the connections open to the backend at once.
	MaxConnections int `yaml:"max_connections"`
}

// Enrolled reports whether the agent has a backend to talk to.
func (b Backend) Enrolled() bool { return b.URL != "" }

// Events configures where relayed events go.
type Events struct {
	Upstream  string `yaml:"upstream"`   // UpstreamPagerDuty or UpstreamBackend
	URL       string `yaml:"url"`        // Events API v2 endpoint
	V1URL     string `yaml:"v1_url"`     // Events API v1 endpoint
	ChangeURL string `yaml:"change_url"` // Change Events endpoint
	// CAFile is an extra PEM bundle trusted for the three endpoints, as
	// backend.ca_file is for the backend.
	CAFile string `yaml:"ca_file"`
	// RatePerKey paces delivery to PagerDuty per routing key, in events a
	// minute; 0 turns pacing off. BurstPerKey is the token bucket's size.
	RatePerKey  float64 `yaml:"rate_per_key"`
	BurstPerKey int     `yaml:"burst_per_key"`
	// StampTimestamp sets payload.timestamp at receipt when it is absent.
	StampTimestamp bool `yaml:"stamp_timestamp"`
	// MaxConnections caps the connections open to the events upstream at
	// once, however many routing keys are being delivered.
	MaxConnections int `yaml:"max_connections"`
}

// Defaults of events.*: PagerDuty's endpoints and the pace that keeps a key
// within PagerDuty's limit of about 120 events a minute (rate + burst).
const (
	DefaultEventsURL       = "https://events.pagerduty.com/v2/enqueue"
	DefaultEventsV1URL     = "https://events.pagerduty.com/generic/2010-04-15/create_event.json"
	DefaultEventsChangeURL = "https://events.pagerduty.com/v2/change/enqueue"
	DefaultRatePerKey      = 110
	DefaultBurstPerKey     = 10
)

// Queue bounds the durable queue and shapes delivery batches.
type Queue struct {
	MaxPendingBytes int64    `yaml:"max_pending_bytes"`
	MaxPendingItems int64    `yaml:"max_pending_items"`
	MaxKeyBytes     int64    `yaml:"max_key_bytes"`
	MaxKeyItems     int64    `yaml:"max_key_items"`
	BatchMaxItems   int      `yaml:"batch_max_items"`
	BatchMaxBytes   int      `yaml:"batch_max_bytes"`
	Linger          Duration `yaml:"linger"`
	RetryAfter      Duration `yaml:"retry_after"`
	IdleTimeout     Duration `yaml:"idle_timeout"`
	// MetricsKeys is how many routing keys (the most pending) get series of
	// their own in /metrics; the others are summed under one label.
	MetricsKeys int `yaml:"metrics_keys"`
	// MinFreeBytes is the free space kept on the root's filesystem: below
	// it new events are refused (503) while delivery goes on.
	MinFreeBytes int64 `yaml:"min_free_bytes"`
	// DiskReserveBytes is the reserve file released when the disk fills
	// all the same, so that delivery can go on deleting.
	DiskReserveBytes int64 `yaml:"disk_reserve_bytes"`
	// MaxFailedBytes bounds dead letters, all keys together, apart from the
	// pending quotas; past it the oldest are dropped.
	MaxFailedBytes int64 `yaml:"max_failed_bytes"`
	// MaxFailedAge drops dead letters that failed longer ago; 0 keeps them
	// until the quota needs their room.
	MaxFailedAge Duration `yaml:"max_failed_age"`
}

// Exports configures integration runs.
type Exports struct {
	StallTimeout Duration `yaml:"stall_timeout"`
	MaxParallel  int      `yaml:"max_parallel"`
}

// Default returns a config with every default set. It has no local token:
// the default listen address is loopback, where none is required, and Init
// generates one so that switching to a public address later is one edit.
func Default() *Config {
	c := &Config{}
	c.SetToDefault()
	return c
}

// SetToDefault sets every key to its default, backend credentials and local
// token included (to empty).
func (c *Config) SetToDefault() {
	*c = Config{
		Backend: Backend{MaxConnections: 8},
		Listen:  "127.0.0.1:8787",
		// Empty rather than nil, as they read back from the file.
		ListenHosts:    []string{},
		AllowedOrigins: []string{},
		Events: Events{
			Upstream:       UpstreamPagerDuty,
			URL:            DefaultEventsURL,
			V1URL:          DefaultEventsV1URL,
			ChangeURL:      DefaultEventsChangeURL,
			RatePerKey:     DefaultRatePerKey,
			BurstPerKey:    DefaultBurstPerKey,
			MaxConnections: 16,
		},
		Queue: Queue{
			MaxPendingBytes:  1 << 30,
			MaxPendingItems:  5_000_000,
			MaxKeyBytes:      256 << 20,
			MaxKeyItems:      2_000_000,
			BatchMaxItems:    500,
			BatchMaxBytes:    1 << 20,
			Linger:           Duration(200 * time.Millisecond),
			RetryAfter:       Duration(5 * time.Second),
			IdleTimeout:      Duration(time.Minute),
			MetricsKeys:      20,
			MinFreeBytes:     64 << 20,
			DiskReserveBytes: 16 << 20,
			// 64 MiB: tens of thousands of refused events to look at,
			// a sixteenth of max_pending_bytes. No age limit by default:
			// dead letters are the only copy of what was refused, and the
			// quota already bounds the disk they take.
			MaxFailedBytes: 64 << 20,
		},
		Exports: Exports{
			StallTimeout: Duration(15 * time.Minute),
			MaxParallel:  4,
		},
	}
}

// Warnings are problems of the file that do not stop the agent, such as a
// config.yaml readable by other users. Load fills them; the caller logs them.
func (c *Config) Warnings() []string { return c.warnings }

// Validate checks every key and returns all problems at once. Each problem
// is a *FieldError naming its key, and the error matches ErrInvalid.
//
// Validate reads the file named by backend.ca_file, because a CA bundle
// that is missing or holds no certificate should stop the agent at start,
// not at its first request to the backend.
func (c *Config) Validate() error {
	var p problems

	b := c.Backend
	if b.URL != "" {
		checkURL(&p, "backend.url", b.URL)
		if b.AgentID == "" {
			p.add("backend.agent_id", "required when backend.url is set (run courier enroll)")
		}
		if b.APIKey == "" {
			p.add("backend.api_key", "required when backend.url is set (run courier enroll)")
		}
	} else if b.AgentID != "" || b.APIKey != "" {
		p.add("backend.url", "required when backend.agent_id or backend.api_key is set")
	}
	checkToken(&p, "backend.agent_id", b.AgentID)
	checkToken(&p, "backend.api_key", b.APIKey.Reveal())
	if b.CAFile != "" {
		checkCAFile(&p, "backend.ca_file", b.CAFile)
	}
	if b.URL != "" && !b.AllowHTTP {
		if err := CheckCleartext(b.URL); err != nil {
			p.add("backend.url", "%v (or set backend.allow_http: true, enroll --allow-http, to accept it)", err)
		}
	}
	positive(&p, "backend.max_connections", int64(b.MaxConnections))

	if err := checkListen(c.Listen); err != nil {
		p.add("listen", "%v", err)
	} else if c.LocalToken == "" && !IsLoopback(c.Listen) {
		p.add("local_token", "required when listen (%s) is not a loopback address: every request to the local API must then carry it", c.Listen)
	}
	checkToken(&p, "local_token", c.LocalToken.Reveal())
	if t := c.LocalToken; t != "" && len(t) < minTokenLen {
		p.add("local_token", "must be at least %d characters", minTokenLen)
	}
	for _, h := range c.ListenHosts {
		if err := checkHostName(h); err != nil {
			p.add("listen_hosts", "%v", err)
		}
	}
	for _, o := range c.AllowedOrigins {
		if err := checkOrigin(o); err != nil {
			p.add("allowed_origins", "%v", err)
		}
	}

	switch c.Events.Upstream {
	case UpstreamPagerDuty, UpstreamBackend:
	default:
		p.add("events.upstream", "must be %q or %q, not %q", UpstreamPagerDuty, UpstreamBackend, c.Events.Upstream)
	}
	checkURL(&p, "events.url", c.Events.URL)
	checkURL(&p, "events.v1_url", c.Events.V1URL)
	positive(&p, "events.max_connections", int64(c.Events.MaxConnections))
	checkURL(&p, "events.change_url", c.Events.ChangeURL)
	if c.Events.CAFile != "" {
		checkCAFile(&p, "events.ca_file", c.Events.CAFile)
	}
	if r := c.Events.RatePerKey; r < 0 || math.IsNaN(r) || math.IsInf(r, 0) {
		p.add("events.rate_per_key", "must be a number of events a minute >= 0 (0 turns pacing off), not %v", r)
	}
	if c.Events.BurstPerKey < 1 {
		p.add("events.burst_per_key", "must be >= 1")
	}

	q := c.Queue
	positive(&p, "queue.max_pending_bytes", q.MaxPendingBytes)
	positive(&p, "queue.max_pending_items", q.MaxPendingItems)
	positive(&p, "queue.max_key_bytes", q.MaxKeyBytes)
	positive(&p, "queue.max_key_items", q.MaxKeyItems)
	positive(&p, "queue.batch_max_items", int64(q.BatchMaxItems))
	positive(&p, "queue.batch_max_bytes", int64(q.BatchMaxBytes))
	// A key's quota above the global one can never be reached; it is almost
	// certainly a unit mistake.
	if q.MaxKeyBytes > q.MaxPendingBytes && q.MaxPendingBytes > 0 {
		p.add("queue.max_key_bytes", "must be <= queue.max_pending_bytes (%d)", q.MaxPendingBytes)
	}
	if q.MaxKeyItems > q.MaxPendingItems && q.MaxPendingItems > 0 {
		p.add("queue.max_key_items", "must be <= queue.max_pending_items (%d)", q.MaxPendingItems)
	}
	if q.Linger < 0 {
		p.add("queue.linger", "must be >= 0")
	}
	// Retry-After is sent in whole seconds; anything shorter would be 0,
	// which tells clients to hammer a full queue.
	if q.RetryAfter < Duration(time.Second) {
		p.add("queue.retry_after", "must be >= 1s (Retry-After is in whole seconds)")
	}
	if q.IdleTimeout <= 0 {
		p.add("queue.idle_timeout", "must be > 0")
	}
	positive(&p, "queue.metrics_keys", int64(q.MetricsKeys))
	positive(&p, "queue.min_free_bytes", q.MinFreeBytes)
	positive(&p, "queue.disk_reserve_bytes", q.DiskReserveBytes)
	positive(&p, "queue.max_failed_bytes", q.MaxFailedBytes)
	if q.MaxFailedAge < 0 {
		p.add("queue.max_failed_age", "must be >= 0 (0 keeps dead letters until queue.max_failed_bytes needs their room)")
	}

	if c.Exports.StallTimeout <= 0 {
		p.add("exports.stall_timeout", "must be > 0")
	}
	positive(&p, "exports.max_parallel", int64(c.Exports.MaxParallel))

	return p.err()
}

// minTokenLen keeps a hand-written local token from being guessable; Init
// writes 43 characters.
const minTokenLen = 16

func positive(p *problems, key string, v int64) {
	if v <= 0 {
		p.add(key, "must be > 0")
	}
}

// checkToken limits credentials to visible ASCII: they travel in HTTP
// headers, where a space or control character would corrupt the request.
func checkToken(p *problems, key, v string) {
	for i := 0; i < len(v); i++ {
		if v[i] <= ' ' || v[i] > '~' {
			p.add(key, "must contain only printable ASCII characters without spaces")
			return
		}
	}
}

func checkURL(p *problems, key, raw string) {
	if raw == "" {
		p.add(key, "must be set")
		return
	}
	u, err := url.Parse(raw)
	if err != nil {
		p.add(key, "not a valid URL: %v", unwrapURLError(err))
		return
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		p.add(key, "must be an http or https URL, not %q", raw)
		return
	}
	if u.Host == "" || u.Hostname() == "" {
		p.add(key, "must include a host: %q", raw)
		return
	}
	if u.User != nil {
		// Credentials in a URL end up in logs and error messages.
		p.add(key, "must not contain a user or password")
	}
}

// unwrapURLError drops url.Error's "parse <url>:" prefix, which repeats the
// value (that may be long) in an error that already names the key.
func unwrapURLError(err error) error {
	if ue, ok := err.(*url.Error); ok {
		return ue.Err
	}
	return err
}

// maxCAFileSize is far above any real bundle (the system one is ~200 KiB).
const maxCAFileSize = 16 << 20

func checkCAFile(p *problems, key, path string) {
	if !filepath.IsAbs(path) {
		// The service's working directory is not the user's.
		p.add(key, "must be an absolute path, not %q", path)
		return
	}
	// Stat first: a FIFO or a device such as /dev/zero would block or never
	// end, and the agent must not hang at start on a typo.
	info, err := os.Stat(path)
	if err != nil {
		p.add(key, "%v", err)
		return
	}
	if !info.Mode().IsRegular() || info.Size() > maxCAFileSize {
		p.add(key, "%s must be a regular file of at most %d bytes", path, maxCAFileSize)
		return
	}
	pem, err := os.ReadFile(path)
	if err != nil {
		p.add(key, "%v", err)
		return
	}
	if !x509.NewCertPool().AppendCertsFromPEM(pem) {
		p.add(key, "%s holds no PEM certificate", path)
	}
}

// checkListen requires host:port with a numeric port. Port 0 is allowed: the
// service then picks a free port and records it under the run folder.
func checkListen(listen string) error {
	if listen == "" {
		return fmt.Errorf("must be set, as host:port")
	}
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return fmt.Errorf("must be host:port, not %q", listen)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		return fmt.Errorf("port must be a number from 0 to 65535, not %q", port)
	}
	if strings.ContainsAny(host, " /\\") || strings.ContainsFunc(host, func(r rune) bool { return r < ' ' || r == 0x7f }) {
		return fmt.Errorf("invalid host %q", host)
	}
	return nil
}

// IsLoopback reports whether the listen address (host:port, or a bare host)
// is only reachable from this machine: 127.0.0.0/8, ::1 or localhost. An
// empty host (":8787") means every interface and is not loopback; neither is
// any other name, since what it resolves to can change.
func IsLoopback(listen string) bool {
	host := listen
	if h, _, err := net.SplitHostPort(listen); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.ToLower(host), ".")
	if host == "localhost" {
		return true
	}
	host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	addr, err := netip.ParseAddr(host)
	if err != nil {
		return false
	}
	return addr.Unmap().IsLoopback()
}

// Overrides are values given on the command line or in the environment
// (--listen/COURIER_LISTEN, --events-url/COURIER_EVENTS_URL) that win over
// config.yaml. Empty fields leave the config as it is.
type Overrides struct {
	Listen    string
	EventsURL string
}

// Apply sets the non-empty overrides on c and validates the result. On error
// c is left unchanged, and the error says which overrides were applied, since
// the bad value is not in the file the user would look at.
func (o Overrides) Apply(c *Config) error {
	next := *c
	var applied []string
	if o.Listen != "" {
		next.Listen = o.Listen
		applied = append(applied, "listen="+o.Listen)
	}
	if o.EventsURL != "" {
		next.Events.URL = o.EventsURL
		applied = append(applied, "events.url="+o.EventsURL)
	}
	if err := next.Validate(); err != nil {
		if len(applied) == 0 {
			return err
		}
		return fmt.Errorf("config with overrides (%s): %w", strings.Join(applied, ", "), err)
	}
	*c = next
	return nil
}
