package config

import (
	"fmt"
	"log/slog"
	"strconv"
	"time"

	"gopkg.in/yaml.v3"
)

// Duration is a time.Duration written as a Go duration string ("200ms",
// "5s", "1m") in YAML and JSON, rather than as nanoseconds.
type Duration time.Duration

// Duration returns d as a time.Duration.
func (d Duration) Duration() time.Duration { return time.Duration(d) }

// String formats d in the shortest unit that is exact ("1m" rather than
// time.Duration's "1m0s"), which is what a person would write in the file.
// The result always parses back with time.ParseDuration.
func (d Duration) String() string {
	v := time.Duration(d)
	for _, u := range []struct {
		unit time.Duration
		name string
	}{{time.Hour, "h"}, {time.Minute, "m"}, {time.Second, "s"}, {time.Millisecond, "ms"}} {
		if v != 0 && v%u.unit == 0 {
			return strconv.FormatInt(int64(v/u.unit), 10) + u.name
		}
	}
	return v.String()
}

// MarshalYAML writes d as a duration string.
func (d Duration) MarshalYAML() (any, error) { return d.String(), nil }

// UnmarshalYAML reads a duration string. A bare number is refused: "5" could
// mean seconds or nanoseconds, and guessing wrong is a silent misconfiguration.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return typeError(n, "must be a duration such as 200ms, 5s or 1m")
	}
	v, err := time.ParseDuration(n.Value)
	if err != nil {
		return typeError(n, fmt.Sprintf("must be a duration such as 200ms, 5s or 1m, not %q", n.Value))
	}
	*d = Duration(v)
	return nil
}

// MarshalText writes d as a duration string, so encoding/json and loggers
// show "5s" too.
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// UnmarshalText reads a duration string.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return err
	}
	*d = Duration(v)
	return nil
}

// typeError reports a bad value in the form the YAML decoder uses for its own
// type errors ("line N: ..."), so that Load can attach the key's name to both
// in one place.
func typeError(n *yaml.Node, msg string) error {
	return &yaml.TypeError{Errors: []string{fmt.Sprintf("line %d: %s", n.Line, msg)}}
}

// Redacted is what a Secret shows everywhere except in the config file.
const Redacted = "[redacted]"

// Secret is a credential. It prints as "[redacted]" through fmt (every verb),
// encoding/json, encoding.TextMarshaler users and log/slog, so a config or a
// struct holding one can be logged whole without leaking it. Only YAML sees
// the real value, so that config.yaml round-trips. Use Reveal where the value
// is really needed (an Authorization header).
type Secret string

// Reveal returns the secret's value. Its name is meant to stand out in review.
func (s Secret) Reveal() string { return string(s) }

// String returns "[redacted]".
func (s Secret) String() string { return Redacted }

// GoString returns a redacted Go expression, for %#v.
func (s Secret) GoString() string { return "config.Secret(" + fmt.Sprintf("%q", Redacted) + ")" }

// Format redacts every fmt verb. String alone is not enough: fmt only routes
// %v, %s, %q, %x and %X to String, and prints the raw value for the others
// (%d reports a bad verb followed by the value itself).
func (s Secret) Format(f fmt.State, verb rune) {
	if verb == 'v' && f.Flag('#') {
		_, _ = fmt.Fprint(f, s.GoString())
		return
	}
	_, _ = fmt.Fprint(f, Redacted)
}

// MarshalJSON returns "[redacted]" as a JSON string.
func (s Secret) MarshalJSON() ([]byte, error) { return []byte(`"` + Redacted + `"`), nil }

// MarshalText returns "[redacted]"; zerolog and slog's text handler use it.
func (s Secret) MarshalText() ([]byte, error) { return []byte(Redacted), nil }

// LogValue redacts the secret for log/slog.
func (s Secret) LogValue() slog.Value { return slog.StringValue(Redacted) }

// MarshalYAML writes the real value: config.yaml is the one place it belongs.
func (s Secret) MarshalYAML() (any, error) { return string(s), nil }

// UnmarshalYAML reads the value as a string.
func (s *Secret) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return typeError(n, "must be a string")
	}
	*s = Secret(n.Value)
	return nil
}
