package config_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"courier/config"
)

func TestDefaultsValidate(t *testing.T) {
	c := config.Default()
	if err := c.Validate(); err != nil {
		t.Fatalf("defaults do not validate: %v", err)
	}
	// The values the docs promise.
	if c.Listen != "127.0.0.1:8787" || c.Events.Upstream != "pagerduty" ||
		c.Queue.MaxPendingBytes != 1<<30 || c.Queue.Linger.Duration() != 200*time.Millisecond ||
		c.Exports.StallTimeout.Duration() != 15*time.Minute || c.Exports.MaxParallel != 4 {
		t.Fatalf("unexpected defaults: %+v", c)
	}
	if c.Backend.Enrolled() {
		t.Fatal("defaults must not be enrolled")
	}
}

func TestValidateNamesTheKey(t *testing.T) {
	tests := []struct {
		key    string
		mutate func(c *config.Config)
	}{
		{"events.upstream", func(c *config.Config) { c.Events.Upstream = "slack" }},
		{"events.url", func(c *config.Config) { c.Events.URL = "ftp://events.example.com" }},
		{"events.url", func(c *config.Config) { c.Events.URL = "" }},
		{"events.url", func(c *config.Config) { c.Events.URL = "https://user:pw@example.com/x" }},
		{"events.v1_url", func(c *config.Config) { c.Events.V1URL = "https:///nohost" }},
		{"events.change_url", func(c *config.Config) { c.Events.ChangeURL = "" }},
		{"events.ca_file", func(c *config.Config) { c.Events.CAFile = "relative/ca.pem" }},
		{"events.rate_per_key", func(c *config.Config) { c.Events.RatePerKey = -1 }},
		{"events.burst_per_key", func(c *config.Config) { c.Events.BurstPerKey = 0 }},
		{"listen", func(c *config.Config) { c.Listen = "8787" }},
		{"listen", func(c *config.Config) { c.Listen = "127.0.0.1:http" }},
		{"listen", func(c *config.Config) { c.Listen = "127.0.0.1:70000" }},
		{"local_token", func(c *config.Config) { c.Listen = "0.0.0.0:8787" }},
		{"local_token", func(c *config.Config) { c.Listen = ":8787" }},
		{"local_token", func(c *config.Config) { c.LocalToken = "short" }},
		{"local_token", func(c *config.Config) { c.LocalToken = "has a space in the middle of it" }},
		{"backend.url", func(c *config.Config) { c.Backend.AgentID = "agt_1"; c.Backend.APIKey = "k" }},
		{"backend.url", func(c *config.Config) {
			c.Backend.URL = "backend.example.com"
			c.Backend.AgentID = "a"
			c.Backend.APIKey = "k"
		}},
		{"backend.api_key", func(c *config.Config) { c.Backend.URL = "https://b.example.com"; c.Backend.AgentID = "a" }},
		{"backend.agent_id", func(c *config.Config) { c.Backend.URL = "https://b.example.com"; c.Backend.APIKey = "k" }},
		{"backend.ca_file", func(c *config.Config) { c.Backend.CAFile = "relative/ca.pem" }},
		{"backend.ca_file", func(c *config.Config) { c.Backend.CAFile = "/does/not/exist.pem" }},
		{"backend.ca_file", func(c *config.Config) { c.Backend.CAFile = "/dev/zero" }},
		{"backend.ca_file", func(c *config.Config) { c.Backend.CAFile = "/" }},
		{"queue.max_pending_bytes", func(c *config.Config) { c.Queue.MaxPendingBytes = 0 }},
		{"queue.max_pending_items", func(c *config.Config) { c.Queue.MaxPendingItems = -1 }},
		{"queue.max_key_bytes", func(c *config.Config) { c.Queue.MaxKeyBytes = c.Queue.MaxPendingBytes + 1 }},
		{"queue.max_key_items", func(c *config.Config) { c.Queue.MaxKeyItems = 0 }},
		{"queue.batch_max_items", func(c *config.Config) { c.Queue.BatchMaxItems = 0 }},
		{"queue.batch_max_bytes", func(c *config.Config) { c.Queue.BatchMaxBytes = 0 }},
		{"queue.linger", func(c *config.Config) { c.Queue.Linger = -1 }},
		{"queue.retry_after", func(c *config.Config) { c.Queue.RetryAfter = config.Duration(500 * time.Millisecond) }},
		{"queue.max_failed_bytes", func(c *config.Config) { c.Queue.MaxFailedBytes = 0 }},
		{"queue.max_failed_age", func(c *config.Config) { c.Queue.MaxFailedAge = config.Duration(-time.Hour) }},
		{"queue.idle_timeout", func(c *config.Config) { c.Queue.IdleTimeout = 0 }},
		{"exports.stall_timeout", func(c *config.Config) { c.Exports.StallTimeout = 0 }},
		{"exports.max_parallel", func(c *config.Config) { c.Exports.MaxParallel = 0 }},
	}
	for _, tt := range tests {
		t.Run(tt.key, func(t *testing.T) {
			c := config.Default()
			tt.mutate(c)
			err := c.Validate()
			if err == nil {
				t.Fatal("Validate accepted a bad value")
			}
			if !errors.Is(err, config.ErrInvalid) {
				t.Errorf("error does not match ErrInvalid: %v", err)
			}
			var fe *config.FieldError
			if !errors.As(err, &fe) || fe.Key != tt.key {
				t.Errorf("error %q does not name key %s", err, tt.key)
			}
			if !strings.HasPrefix(err.Error(), tt.key+": ") {
				t.Errorf("message %q does not start with the key", err)
			}
		})
	}
}

func TestValidateReportsAllProblems(t *testing.T) {
	c := config.Default()
	c.Queue.MaxPendingBytes = 0
	c.Exports.MaxParallel = 0
	err := c.Validate()
	for _, key := range []string{"queue.max_pending_bytes", "exports.max_parallel"} {
		if err == nil || !strings.Contains(err.Error(), key) {
			t.Errorf("error %v does not mention %s", err, key)
		}
	}
}

func TestValidateAcceptsGoodValues(t *testing.T) {
	ca := writeTestCA(t)
	c := config.Default()
	c.Backend.URL, c.Backend.AgentID, c.Backend.APIKey, c.Backend.CAFile = "http://127.0.0.1:9000/", "agt_1", "key-123", ca
	c.Listen = "[::]:0" // port 0: pick a free one
	c.LocalToken = config.NewToken()
	c.Events.Upstream = "backend"
	c.Queue.Linger = 0
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
}

func TestNonLoopbackListenNeedsToken(t *testing.T) {
	c := config.Default()
	c.Listen = "0.0.0.0:8787"
	err := c.Validate()
	if err == nil || !strings.Contains(err.Error(), "local_token: required") {
		t.Fatalf("want local_token required, got %v", err)
	}
	c.LocalToken = config.NewToken()
	if err := c.Validate(); err != nil {
		t.Fatalf("with a token: %v", err)
	}
}

func TestIsLoopback(t *testing.T) {
	for listen, want := range map[string]bool{
		"127.0.0.1:8787":        true,
		"127.8.9.10:1":          true,
		"localhost:8787":        true,
		"LOCALHOST.:8787":       true,
		"[::1]:8787":            true,
		"[::ffff:127.0.0.1]:80": true,
		"::1":                   true,
		"127.0.0.1":             true,
		"0.0.0.0:8787":          false,
		":8787":                 false,
		"[::]:8787":             false,
		"10.0.0.1:8787":         false,
		"example.com:8787":      false,
		"localhost.example:80":  false,
		"128.0.0.1:80":          false,
		"":                      false,
	} {
		if got := config.IsLoopback(listen); got != want {
			t.Errorf("IsLoopback(%q) = %v, want %v", listen, got, want)
		}
	}
}

func TestOverrides(t *testing.T) {
	t.Run("empty changes nothing", func(t *testing.T) {
		c := config.Default()
		if err := (config.Overrides{}).Apply(c); err != nil {
			t.Fatal(err)
		}
		if c.Listen != config.Default().Listen {
			t.Fatal("config changed")
		}
	})
	t.Run("non-empty wins", func(t *testing.T) {
		c := config.Default()
		err := config.Overrides{Listen: "127.0.0.1:9999", EventsURL: "http://127.0.0.1:1/v2/enqueue"}.Apply(c)
		if err != nil {
			t.Fatal(err)
		}
		if c.Listen != "127.0.0.1:9999" || c.Events.URL != "http://127.0.0.1:1/v2/enqueue" {
			t.Fatalf("overrides not applied: %+v", c)
		}
	})
	t.Run("invalid result is refused and leaves config as it was", func(t *testing.T) {
		c := config.Default()
		err := config.Overrides{Listen: "0.0.0.0:8787"}.Apply(c)
		if err == nil || !errors.Is(err, config.ErrInvalid) {
			t.Fatalf("want an invalid-config error, got %v", err)
		}
		for _, want := range []string{"listen=0.0.0.0:8787", "local_token"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("error %q does not mention %q", err, want)
			}
		}
		if c.Listen != "127.0.0.1:8787" {
			t.Fatalf("config changed on error: %s", c.Listen)
		}
	})
	t.Run("bad events url names the key", func(t *testing.T) {
		err := config.Overrides{EventsURL: "not a url"}.Apply(config.Default())
		if err == nil || !strings.Contains(err.Error(), "events.url") {
			t.Fatalf("got %v", err)
		}
	})
}

// writeTestCA writes a freshly generated self-signed certificate as PEM and
// returns its path.
func writeTestCA(t *testing.T) string {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "courier-test-ca"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}
