package config

import (
	"errors"
	"fmt"
	"strings"
)

var (
	// ErrInvalid matches every error about the content of a config: YAML
	// syntax, unknown keys, wrong types, values that fail Validate.
	ErrInvalid = errors.New("invalid config")
	// ErrNotFound matches the error of Load when the file does not exist.
	ErrNotFound = errors.New("config not found")
	// ErrExists matches the error of Init when the file already exists.
	ErrExists = errors.New("config already exists")
)

// FieldError is a bad value of one key.
type FieldError struct {
	Key  string // dotted path, e.g. "queue.max_pending_bytes"
	Msg  string
	Line int // line in the file; 0 when not known (Validate on a value)
}

func (e *FieldError) Error() string {
	if e.Line > 0 {
		return fmt.Sprintf("%s: %s (line %d)", e.Key, e.Msg, e.Line)
	}
	return e.Key + ": " + e.Msg
}

// Is makes errors.Is(err, ErrInvalid) true.
func (e *FieldError) Is(target error) bool { return target == ErrInvalid }

// UnknownKeyError is a key that the config does not have, most often a typo.
type UnknownKeyError struct {
	Key     string // dotted path
	Line    int
	Suggest string // a known key close to Key, or ""
}

func (e *UnknownKeyError) Error() string {
	s := fmt.Sprintf("unknown key %q (line %d)", e.Key, e.Line)
	if e.Suggest != "" {
		s += fmt.Sprintf("; did you mean %q?", e.Suggest)
	}
	return s
}

// Is makes errors.Is(err, ErrInvalid) true.
func (e *UnknownKeyError) Is(target error) bool { return target == ErrInvalid }

// syntaxError is YAML that does not parse, or a decoding problem that cannot
// be pinned on one key.
type syntaxError struct{ msg string }

func (e *syntaxError) Error() string        { return e.msg }
func (e *syntaxError) Is(target error) bool { return target == ErrInvalid }

func invalidf(format string, a ...any) error { return &syntaxError{fmt.Sprintf(format, a...)} }

// problems collects every error of a config so the user fixes them in one
// round instead of one per restart.
type problems []error

func (l *problems) add(key, format string, a ...any) {
	*l = append(*l, &FieldError{Key: key, Msg: fmt.Sprintf(format, a...)})
}

// err returns nil when there is no problem, so that a nil slice never
// becomes a non-nil error interface.
func (l problems) err() error {
	if len(l) == 0 {
		return nil
	}
	return l
}

func (l problems) Unwrap() []error { return l }

func (l problems) Error() string {
	if len(l) == 1 {
		return l[0].Error()
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%d problems:", len(l))
	for _, e := range l {
		b.WriteString("\n  - ")
		b.WriteString(e.Error())
	}
	return b.String()
}
