package config_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"github.com/rs/zerolog"
	"gopkg.in/yaml.v3"

	"courier/config"
)

const (
	apiKey = "sk_live_SHOULD_NEVER_PRINT"
	token  = "tok_SHOULD_NEVER_PRINT_0123456789"
)

func secretConfig() *config.Config {
	c := config.Default()
	c.Backend.URL, c.Backend.AgentID, c.Backend.APIKey = "https://b.example.com", "agt_1", apiKey
	c.LocalToken = token
	return c
}

func assertRedacted(t *testing.T, what, out string) {
	t.Helper()
	if strings.Contains(out, "SHOULD_NEVER_PRINT") {
		t.Errorf("%s leaks a secret: %s", what, out)
	}
	if !strings.Contains(out, config.Redacted) {
		t.Errorf("%s does not show %s: %s", what, config.Redacted, out)
	}
}

func TestSecretRedactedByFmt(t *testing.T) {
	c := secretConfig()
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x", "%X", "%d", "%10.3s"} {
		assertRedacted(t, "Sprintf("+verb+") of a Secret", fmt.Sprintf(verb, c.Backend.APIKey))
		assertRedacted(t, "Sprintf("+verb+") of the Config", fmt.Sprintf(verb, c))
		assertRedacted(t, "Sprintf("+verb+") of the Config value", fmt.Sprintf(verb, *c))
	}
	assertRedacted(t, "Sprint", fmt.Sprint(c, c.LocalToken))
	assertRedacted(t, "Sprintln", fmt.Sprintln(c.Backend))
	assertRedacted(t, "error wrapping", fmt.Errorf("enroll failed for %v", c.Backend).Error())
}

func TestSecretRedactedByJSON(t *testing.T) {
	b, err := json.Marshal(secretConfig())
	if err != nil {
		t.Fatal(err)
	}
	assertRedacted(t, "json.Marshal", string(b))
}

func TestSecretRedactedByZerolog(t *testing.T) {
	c := secretConfig()
	var buf bytes.Buffer
	l := zerolog.New(&buf)
	l.Info().Interface("config", c).Msg("interface")
	l.Info().Any("backend", c.Backend).Msg("any")
	l.Info().Stringer("key", c.Backend.APIKey).Msg("stringer")
	l.Info().Str("key", fmt.Sprint(c.Backend.APIKey)).Msg("sprint")
	l.Info().Msgf("config %+v", c)
	for _, line := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
		assertRedacted(t, "zerolog", line)
	}
}

func TestSecretRedactedBySlog(t *testing.T) {
	c := secretConfig()
	var buf bytes.Buffer
	slog.New(slog.NewJSONHandler(&buf, nil)).Info("json", "config", c, "key", c.Backend.APIKey)
	slog.New(slog.NewTextHandler(&buf, nil)).Info("text", "config", c, "key", c.LocalToken)
	for _, line := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
		assertRedacted(t, "slog", line)
	}
}

func TestSecretKeepsValueInYAML(t *testing.T) {
	b, err := yaml.Marshal(secretConfig())
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), apiKey) || !strings.Contains(string(b), token) {
		t.Fatalf("YAML must hold the real secrets:\n%s", b)
	}
	var back config.Config
	if err := yaml.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if back.Backend.APIKey.Reveal() != apiKey || back.LocalToken.Reveal() != token {
		t.Fatal("secrets did not round-trip through YAML")
	}
}

func TestValidationErrorsDoNotQuoteSecrets(t *testing.T) {
	c := secretConfig()
	c.Backend.APIKey = "has space SHOULD_NEVER_PRINT"
	c.LocalToken = "short_SHOULD_NEVER_PRINT\n"
	err := c.Validate()
	if err == nil {
		t.Fatal("want an error")
	}
	if strings.Contains(err.Error(), "SHOULD_NEVER_PRINT") {
		t.Fatalf("error quotes a secret: %v", err)
	}
}
