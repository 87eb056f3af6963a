package config

import (
	"bytes"
	"errors"
	"io"
	"reflect"
	"regexp"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// DecodeStrict decodes YAML, or JSON (which is YAML), into v, a pointer to
// a struct, the way Load decodes config.yaml: an unknown key is an error
// naming its dotted path, its line and the key most likely meant; a value
// of the wrong type names its key and line; a syntax error names the line
// it is on. When v has a Validate method, its errors that start with a key
// ("orgs: must be at least 1") get that key's line. Empty input leaves v
// as it is, then validates it. Every error matches ErrInvalid.
//
// Integration configs use it, so that a typo reads the same in a YAML or a
// JSON file and in config.yaml.
func DecodeStrict(data []byte, v any) error {
	doc, err := parseDocument(data)
	if err != nil {
		return err
	}
	t := reflect.TypeOf(v).Elem()
	idx := newKeyIndex(t)
	if doc != nil {
		idx.walk(doc, t, "", 0)
		if err := idx.unknown.err(); err != nil {
			return err
		}
		strict := yaml.NewDecoder(bytes.NewReader(data))
		strict.KnownFields(true)
		if err := strict.Decode(v); err != nil {
			return idx.decodeError(err)
		}
	}
	return idx.validate(v)
}

// DecodeNode is DecodeStrict for a part of a larger document (the config
// of one integration in a command's params): lines are those of the whole
// document.
func DecodeNode(n *yaml.Node, v any) error {
	t := reflect.TypeOf(v).Elem()
	idx := newKeyIndex(t)
	if n != nil && n.Kind != 0 && !(n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null") {
		idx.walk(n, t, "", 0)
		if err := idx.unknown.err(); err != nil {
			return err
		}
		// Node.Decode has no strict mode; walk found the unknown keys.
		if err := n.Decode(v); err != nil {
			return idx.decodeError(err)
		}
	}
	return idx.validate(v)
}

// validate runs v's Validate, if it has one, and gives its errors lines.
func (x *keyIndex) validate(v any) error {
	val, ok := v.(interface{ Validate() error })
	if !ok {
		return nil
	}
	err := val.Validate()
	if err == nil {
		return nil
	}
	var errs []error
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		errs = j.Unwrap()
	} else {
		errs = []error{err}
	}
	var p problems
	for _, e := range errs {
		p = append(p, x.keyed(e))
	}
	return x.addLines(p.err())
}

// keyedError is "key: message": the form in which Validate methods name a
// key (repos[2]: ..., orgs: ...).
var keyedError = regexp.MustCompile(`^([A-Za-z0-9_.]+(?:\[\d+\])?): (.*)$`)

// keyed turns an error of a Validate method into a FieldError when it
// starts with a key the document has.
func (x *keyIndex) keyed(err error) error {
	var fe *FieldError
	if errors.As(err, &fe) {
		return fe
	}
	m := keyedError.FindStringSubmatch(err.Error())
	if m == nil {
		return invalidf("%v", err)
	}
	if _, ok := x.lines[m[1]]; !ok {
		base, _, _ := strings.Cut(m[1], "[")
		if _, ok := x.lines[base]; !ok {
			return invalidf("%v", err)
		}
		return &FieldError{Key: m[1], Msg: m[2], Line: x.lines[base]}
	}
	return &FieldError{Key: m[1], Msg: m[2]}
}

// parseDocument parses one YAML document into a node; nil for an empty
// document (comments only). A syntax error names the line it is on.
func parseDocument(data []byte) (*yaml.Node, error) {
	var doc yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&doc); errors.Is(err, io.EOF) {
		return nil, nil
	} else if err != nil {
		return nil, syntaxErrorAt(data, err)
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); err == nil {
		return nil, invalidf("line %d: a second YAML document is not allowed", extra.Line)
	} else if !errors.Is(err, io.EOF) {
		return nil, syntaxErrorAt(data, err)
	}
	return &doc, nil
}

var yamlErrorLine = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

// syntaxErrorAt reports a YAML syntax error at the line of the problem.
// yaml.v3 gives the line where the enclosing block started (a mis-indented
// line 27 inside a mapping opened at line 5 is reported as line 5, or 4);
// the line of the problem is the first line at which the document, cut
// there, fails with the same message (for a quote never closed: the line
// it opens on). A binary search: a failure stays a failure as lines are
// added.
func syntaxErrorAt(data []byte, err error) error {
	m := yamlErrorLine.FindStringSubmatch(err.Error())
	if m == nil {
		return invalidf("%s", strings.TrimPrefix(err.Error(), "yaml: "))
	}
	reported, _ := strconv.Atoi(m[1])
	msg := m[2]
	lines := bytes.SplitAfter(data, []byte("\n"))
	failsAt := func(k int) bool {
		var n yaml.Node
		err := yaml.Unmarshal(bytes.Join(lines[:k], nil), &n)
		if err == nil {
			return false
		}
		m := yamlErrorLine.FindStringSubmatch(err.Error())
		return m != nil && m[2] == msg
	}
	lo, hi := 1, len(lines)
	if !failsAt(hi) {
		return invalidf("line %d: %s", reported, msg)
	}
	for lo < hi {
		mid := (lo + hi) / 2
		if failsAt(mid) {
			hi = mid
		} else {
			lo = mid + 1
		}
	}
	return invalidf("line %d: %s", lo, msg)
}
