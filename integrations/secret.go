package integrations

// Secret is a credential. It prints, logs and marshals as "[redacted]";
// only the HTTP layer reads its value. Every integration's credentials are
// of this type, so that no %v, log field or JSON of a config shows one.
type Secret string

const redacted = "[redacted]"

// String hides the value.
func (s Secret) String() string {
	if s == "" {
		return ""
	}
	return redacted
}

// GoString hides the value from %#v.
func (s Secret) GoString() string { return `"` + s.String() + `"` }

// MarshalJSON hides the value.
func (s Secret) MarshalJSON() ([]byte, error) { return []byte(`"` + s.String() + `"`), nil }

// MarshalYAML hides the value.
func (s Secret) MarshalYAML() (any, error) { return s.String(), nil }

// MarshalText hides the value (zerolog, encoding/xml, map keys).
func (s Secret) MarshalText() ([]byte, error) { return []byte(s.String()), nil }
