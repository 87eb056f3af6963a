package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"reflect"
	"regexp"
	"runtime"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// maxFileSize bounds what Load reads. A real config is a few KiB; anything
// this large is the wrong file, and YAML aliases make big inputs expensive.
const maxFileSize = 1 << 20

// Load reads the config file at path: defaults first, then the file decoded
// strictly (an unknown key is an error), then Validate.
//
// Errors name the file, and the key and line where known. A missing file
// matches ErrNotFound; every problem with the content matches ErrInvalid.
//
// A file that is not fatal but not right either (readable by other users,
// although it holds credentials) loads, with the problem in
// Config.Warnings(); the caller decides how to show it. Returning a warning
// rather than an error keeps `chmod` mistakes from taking an agent down.
func Load(path string) (*Config, error) {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w: %s does not exist; run `courier init` (with the same --root) to create it", ErrNotFound, path)
	}
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	defer func() { _ = f.Close() }()

	info, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	if !info.Mode().IsRegular() {
		return nil, fmt.Errorf("config %s: %w", path, invalidf("not a regular file"))
	}
	data, err := io.ReadAll(io.LimitReader(f, maxFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	if len(data) > maxFileSize {
		return nil, fmt.Errorf("config %s: %w", path, invalidf("larger than %d bytes", maxFileSize))
	}

	c, err := parse(data)
	if err != nil {
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	// Permission bits mean little on Windows; the ACLs there are out of scope.
	if perm := info.Mode().Perm(); runtime.GOOS != "windows" && perm&0o077 != 0 {
		c.warnings = append(c.warnings, fmt.Sprintf(
			"config %s has mode %04o but holds credentials; run: chmod 600 %s", path, perm, path))
	}
	return c, nil
}

// parse turns the bytes of a config file into a validated Config.
//
// The file is decoded twice: once into a yaml.Node, to report unknown keys
// with their full dotted path and to map lines back to keys, and once
// strictly into the Config. yaml.v3's own messages give only the last part
// of a key ("field lingr not found in type config.Queue"), which is not
// enough to find it in a file where several sections share key names.
func parse(data []byte) (*Config, error) {
	c := Default()
	doc, err := parseDocument(data)
	if err != nil {
		return nil, err
	}
	if doc == nil {
		// Empty, or comments only: every key keeps its default.
		return c, nil
	}
	idx := newKeyIndex(reflect.TypeFor[Config]())
	idx.walk(doc, idx.root, "", 0)
	if err := idx.unknown.err(); err != nil {
		return nil, err
	}

	strict := yaml.NewDecoder(bytes.NewReader(data))
	strict.KnownFields(true)
	if err := strict.Decode(c); err != nil {
		return nil, idx.decodeError(err)
	}
	if err := c.Validate(); err != nil {
		return nil, idx.addLines(err)
	}
	return c, nil
}

// keyIndex is what parse learns from the YAML tree: where each key is, and
// which keys are unknown.
type keyIndex struct {
	root    reflect.Type   // the struct the document decodes into
	lines   map[string]int // dotted key → line of the key
	byLine  map[int]string // line → the one dotted key on it ("" if several)
	unknown problems
	merged  map[*yaml.Node]bool
}

func newKeyIndex(root reflect.Type) *keyIndex {
	return &keyIndex{root: root, lines: map[string]int{}, byLine: map[int]string{}, merged: map[*yaml.Node]bool{}}
}

func (x *keyIndex) mark(line int, key string) {
	if prev, ok := x.byLine[line]; ok && prev != key {
		key = ""
	}
	x.byLine[line] = key
}

// maxMergeDepth bounds merge keys ("<<: *base") followed while walking; a
// real config has one level, a hostile one could chain many.
const maxMergeDepth = 8

// walk checks the mapping n against the yaml keys of struct type t. Anything
// that is not a mapping is left to the strict decoder, which reports the
// type mismatch.
func (x *keyIndex) walk(n *yaml.Node, t reflect.Type, prefix string, merges int) {
	for n != nil && (n.Kind == yaml.DocumentNode || n.Kind == yaml.AliasNode) {
		if n.Kind == yaml.AliasNode {
			n = n.Alias
		} else if len(n.Content) > 0 {
			n = n.Content[0]
		} else {
			n = nil
		}
	}
	if n == nil || n.Kind != yaml.MappingNode {
		return
	}
	fields := yamlFields(t)
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if k.ShortTag() == "!!merge" {
			x.merge(v, t, prefix, merges)
			continue
		}
		path := joinKey(prefix, k.Value)
		ft, ok := fields[k.Value]
		if !ok {
			x.unknown = append(x.unknown, &UnknownKeyError{Key: path, Line: k.Line, Suggest: x.suggest(k.Value, prefix, t)})
			continue
		}
		if _, seen := x.lines[path]; !seen {
			x.lines[path] = k.Line
		}
		x.mark(k.Line, path)
		if v.Kind == yaml.ScalarNode && v.Line != k.Line {
			x.mark(v.Line, path)
		}
		for ft.Kind() == reflect.Pointer {
			ft = ft.Elem()
		}
		switch {
		case ft == nodeType:
			// Kept as YAML for a later, typed decode (DecodeNode).
		case ft.Kind() == reflect.Struct:
			x.walk(v, ft, path, merges)
		case ft.Kind() == reflect.Slice && v.Kind == yaml.SequenceNode:
			et := ft.Elem()
			for et.Kind() == reflect.Pointer {
				et = et.Elem()
			}
			for i, item := range v.Content {
				ip := fmt.Sprintf("%s[%d]", path, i)
				x.lines[ip] = item.Line
				if et.Kind() == reflect.Struct && et != nodeType {
					x.walk(item, et, ip, merges)
				}
			}
		}
	}
}

var nodeType = reflect.TypeFor[yaml.Node]()

// merge walks the mapping(s) merged in by a "<<" key as part of the
// mapping that holds it.
func (x *keyIndex) merge(v *yaml.Node, t reflect.Type, prefix string, merges int) {
	if merges >= maxMergeDepth || x.merged[v] {
		return
	}
	x.merged[v] = true
	if v.Kind == yaml.SequenceNode {
		for _, m := range v.Content {
			x.merge(m, t, prefix, merges+1)
		}
		return
	}
	x.walk(v, t, prefix, merges+1)
}

func joinKey(prefix, key string) string {
	if prefix == "" {
		return key
	}
	return prefix + "." + key
}

// yamlFields maps the yaml key of each field of struct t to its type.
func yamlFields(t reflect.Type) map[string]reflect.Type {
	m := map[string]reflect.Type{}
	for i := range t.NumField() {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if name == "-" {
			continue
		}
		if name == "" {
			name = strings.ToLower(f.Name)
		}
		m[name] = f.Type
	}
	return m
}

// keyPaths lists every leaf key of struct t as a dotted path, in field
// order.
func keyPaths(t reflect.Type, prefix string) []string {
	var out []string
	for i := range t.NumField() {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if name == "-" || name == "" {
			continue
		}
		path := joinKey(prefix, name)
		if f.Type.Kind() == reflect.Struct {
			out = append(out, keyPaths(f.Type, path)...)
		} else {
			out = append(out, path)
		}
	}
	return out
}

// suggest finds the key the user most likely meant: the same name in
// another section (a key put at the wrong level), else a name in the same
// section within two edits (a typo).
func (x *keyIndex) suggest(name, prefix string, t reflect.Type) string {
	all := keyPaths(x.root, "")
	for _, p := range all {
		if p == name || strings.HasSuffix(p, "."+name) {
			return p
		}
	}
	best, bestDist := "", 3
	for k := range yamlFields(t) {
		if d := editDistance(name, k); d < bestDist || (d == bestDist && k < best) {
			best, bestDist = k, d
		}
	}
	if best == "" {
		return ""
	}
	return joinKey(prefix, best)
}

// editDistance is the Levenshtein distance of a and b, in bytes.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

var (
	typeErrorLine = regexp.MustCompile(`^line (\d+): (.*)$`)
	cannotDecode  = regexp.MustCompile("^cannot unmarshal !!(\\w+)(?: `(.*)`)? into (\\S+)$")
	duplicateKey  = regexp.MustCompile(`^mapping key .* already defined at line (\d+)$`)
	bigInteger    = regexp.MustCompile(`^[-+]?[0-9]+(\.\.\.)?$`)
)

// decodeError turns an error of the strict decoder into problems naming
// keys. The decoder reports type errors as "line N: message"; the line is
// mapped back to the key written on it.
func (x *keyIndex) decodeError(err error) error {
	var te *yaml.TypeError
	if !errors.As(err, &te) {
		return invalidf("%v", err)
	}
	var p problems
	for _, e := range te.Errors {
		m := typeErrorLine.FindStringSubmatch(e)
		if m == nil {
			p = append(p, invalidf("%s", e))
			continue
		}
		line, _ := strconv.Atoi(m[1])
		msg := friendlyMessage(m[2])
		if key := x.byLine[line]; key != "" {
			p = append(p, &FieldError{Key: key, Msg: msg, Line: line})
		} else {
			p = append(p, invalidf("line %d: %s", line, msg))
		}
	}
	return p.err()
}

// friendlyMessage rewords yaml.v3's messages in terms of the file rather
// than of Go types.
func friendlyMessage(msg string) string {
	if m := duplicateKey.FindStringSubmatch(msg); m != nil {
		return "set twice (first at line " + m[1] + ")"
	}
	m := cannotDecode.FindStringSubmatch(msg)
	if m == nil {
		return msg
	}
	got := strconv.Quote(m[2])
	switch m[1] {
	case "seq":
		got = "a list"
	case "map":
		got = "a mapping"
	}
	switch into := m[3]; {
	case strings.HasPrefix(into, "int") || strings.HasPrefix(into, "uint"):
		// yaml.v3 resolves an integer too big for int64 as a float, and
		// shortens long values with "...".
		if m[1] == "int" || bigInteger.MatchString(m[2]) {
			return "out of range: " + got
		}
		return "must be a whole number, not " + got
	case into == "string":
		return "must be a string, not " + got
	case strings.HasPrefix(into, "[]"):
		return "must be a list, not " + got
	case strings.HasPrefix(into, "config.") || strings.HasSuffix(into, "Config") || strings.HasPrefix(into, "map["):
		return "must be a mapping of keys, not " + got
	default:
		return msg
	}
}

// addLines sets the line of each FieldError of Validate from the file.
func (x *keyIndex) addLines(err error) error {
	if p, ok := err.(problems); ok {
		for _, e := range p {
			if fe, ok := e.(*FieldError); ok && fe.Line == 0 {
				fe.Line = x.lines[fe.Key]
			}
		}
	}
	return err
}
