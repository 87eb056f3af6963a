package config_test

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"courier/config"
)

// loadErr loads body and returns the error message, failing if it loads.
func loadErr(t *testing.T, body string) (path, msg string) {
	t.Helper()
	path = writeConfig(t, body)
	c, err := config.Load(path)
	if err == nil {
		t.Fatalf("loaded without error: %+v", c)
	}
	if !errors.Is(err, config.ErrInvalid) {
		t.Errorf("error does not match ErrInvalid: %v", err)
	}
	if !strings.Contains(err.Error(), path) {
		t.Errorf("error %q does not name the file", err)
	}
	return path, err.Error()
}

func TestLoadPartialFileKeepsDefaults(t *testing.T) {
	c, err := config.Load(writeConfig(t, "queue:\n  linger: 1s\nexports:\n"))
	if err != nil {
		t.Fatal(err)
	}
	want := config.Default()
	want.Queue.Linger = config.Duration(time.Second)
	if !reflect.DeepEqual(c, want) {
		t.Fatalf("got %+v\nwant %+v", c, want)
	}
}

func TestLoadEmptyFileIsDefaults(t *testing.T) {
	for _, body := range []string{"", "# only a comment\n", "---\n", "~\n"} {
		c, err := config.Load(writeConfig(t, body))
		if err != nil {
			t.Fatalf("%q: %v", body, err)
		}
		if !reflect.DeepEqual(c, config.Default()) {
			t.Fatalf("%q: got %+v", body, c)
		}
	}
}

func TestLoadUnknownKey(t *testing.T) {
	tests := []struct {
		body string
		want string
	}{
		{
			"listen: 127.0.0.1:1\nlisen: 127.0.0.1:2\n",
			`unknown key "lisen" (line 2); did you mean "listen"?`,
		},
		{
			"queue:\n  batch_max_items: 5\n  lingr: 1s\n",
			`unknown key "queue.lingr" (line 3); did you mean "queue.linger"?`,
		},
		{
			// Right key, wrong section.
			"linger: 1s\n",
			`unknown key "linger" (line 1); did you mean "queue.linger"?`,
		},
		{
			"events:\n  upstream: pagerduty\n  colour: blue\n",
			`unknown key "events.colour" (line 3)`,
		},
		{
			// A merge key does not smuggle in keys a section does not have.
			"queue: &q\n  linger: 1s\nexports:\n  <<: *q\n",
			`unknown key "exports.linger" (line 2)`,
		},
	}
	for _, tt := range tests {
		_, msg := loadErr(t, tt.body)
		if !strings.Contains(msg, tt.want) {
			t.Errorf("body %q:\n got: %s\nwant: %s", tt.body, msg, tt.want)
		}
	}
}

func TestLoadUnknownKeysAllReported(t *testing.T) {
	_, msg := loadErr(t, "foo: 1\nqueue:\n  bar: 2\n")
	if !strings.Contains(msg, `"foo"`) || !strings.Contains(msg, `"queue.bar"`) {
		t.Fatalf("want both keys in %q", msg)
	}
}

func TestLoadBadValueNamesKeyAndLine(t *testing.T) {
	tests := []struct {
		body string
		want string
	}{
		{"queue:\n  max_pending_items: abc\n", `queue.max_pending_items: must be a whole number, not "abc" (line 2)`},
		{"queue:\n  max_pending_items: 99999999999999999999\n", `queue.max_pending_items: out of range`},
		{"queue:\n  linger: 5\n", `queue.linger: must be a duration such as 200ms, 5s or 1m, not "5" (line 2)`},
		{"queue:\n  linger: [1s]\n", `queue.linger: must be a duration`},
		{"listen: [a, b]\n", `listen: must be a string, not a list (line 1)`},
		{"queue: 5\n", `queue: must be a mapping of keys, not "5" (line 1)`},
		{"queue:\n  max_pending_bytes: 0\n", `queue.max_pending_bytes: must be > 0 (line 2)`},
		{"events:\n  upstream: slack\n", `events.upstream: must be "pagerduty" or "backend", not "slack" (line 2)`},
		{"listen: 1.2.3.4\n", `listen: must be host:port, not "1.2.3.4" (line 1)`},
		{"listen: 127.0.0.1:1\nlisten: 127.0.0.1:2\n", `listen: set twice (first at line 1) (line 2)`},
		{"local_token: [x]\n", `local_token: must be a string (line 1)`},
	}
	for _, tt := range tests {
		_, msg := loadErr(t, tt.body)
		if !strings.Contains(msg, tt.want) {
			t.Errorf("body %q:\n got: %s\nwant: %s", tt.body, msg, tt.want)
		}
	}
}

func TestLoadNonLoopbackWithoutTokenRefuses(t *testing.T) {
	_, msg := loadErr(t, "listen: 0.0.0.0:8787\n")
	if !strings.Contains(msg, "local_token: required when listen (0.0.0.0:8787) is not a loopback address") {
		t.Fatalf("got %s", msg)
	}
	c, err := config.Load(writeConfig(t, "listen: 0.0.0.0:8787\nlocal_token: 0123456789abcdef0123\n"))
	if err != nil {
		t.Fatalf("with a token: %v", err)
	}
	if c.LocalToken.Reveal() != "0123456789abcdef0123" {
		t.Fatalf("token not loaded: %q", c.LocalToken.Reveal())
	}
}

func TestLoadSyntaxError(t *testing.T) {
	_, msg := loadErr(t, "queue:\n  linger: 1s\n bad indent: [\n")
	if !strings.Contains(msg, "line") {
		t.Fatalf("syntax error without a line: %s", msg)
	}
}

// yaml.v3 reports a syntax error at the line where the enclosing block
// starts; the error must name the line of the problem.
func TestLoadSyntaxErrorNamesTheLine(t *testing.T) {
	var long strings.Builder
	long.WriteString("queue:\n  retry_after: 5s\n")
	for i := 3; i < 27; i++ {
		long.WriteString("  # filler\n")
	}
	long.WriteString(" linger: 1s\n") // line 27, indented less than its mapping
	cases := []struct {
		body string
		line int
	}{
		{long.String(), 27},
		{"listen: 127.0.0.1:1\nqueue:\n  linger: 1s\n  retry_after: 5s\n   idle_timeout: 1m\n", 5},
		{"listen: 127.0.0.1:1\nqueue:\n  linger: 1s\n  - x\n", 4},
		{"listen: 127.0.0.1:1\nqueue:\n  linger: 1s\n\tretry_after: 5s\n", 4},
		{"listen: \"127.0.0.1:1\nqueue:\n  linger: 1s\n", 1},
	}
	for _, c := range cases {
		_, msg := loadErr(t, c.body)
		if want := fmt.Sprintf("line %d: ", c.line); !strings.Contains(msg, want) {
			t.Errorf("%q: want %q in %s", c.body, want, msg)
		}
	}
}

// DecodeStrict gives any struct config.yaml's errors, for YAML and JSON
// alike: key, line, the key meant.
func TestDecodeStrictYAMLAndJSON(t *testing.T) {
	type inner struct {
		Depth int `yaml:"depth" json:"depth"`
	}
	type cfg struct {
		Name   string   `yaml:"name" json:"name"`
		Items  []string `yaml:"items" json:"items"`
		Nested inner    `yaml:"nested" json:"nested"`
	}
	cases := []struct{ doc, want string }{
		{"name: a\nnmae: b\n", `unknown key "nmae" (line 2); did you mean "name"?`},
		{"{\n  \"name\": \"a\",\n  \"nmae\": \"b\"\n}", `unknown key "nmae" (line 3); did you mean "name"?`},
		{"name: a\ndepth: 1\n", `unknown key "depth" (line 2); did you mean "nested.depth"?`},
		{"{\"nested\": {\n  \"depth\": \"deep\"}}", `nested.depth: must be a whole number, not "deep" (line 2)`},
		{"nested:\n  depth: deep\n", `nested.depth: must be a whole number, not "deep" (line 2)`},
		{"items: 5\n", `items: must be a list`},
	}
	for _, c := range cases {
		var v cfg
		err := config.DecodeStrict([]byte(c.doc), &v)
		if err == nil || !strings.Contains(err.Error(), c.want) || !errors.Is(err, config.ErrInvalid) {
			t.Errorf("%q: got %v, want %q", c.doc, err, c.want)
		}
	}
}

func TestLoadRefusesSecondDocument(t *testing.T) {
	_, msg := loadErr(t, "listen: 127.0.0.1:1\n---\nlisten: 127.0.0.1:2\n")
	if !strings.Contains(msg, "second YAML document") {
		t.Fatalf("got %s", msg)
	}
}

func TestLoadRefusesHugeFile(t *testing.T) {
	_, msg := loadErr(t, "# "+strings.Repeat("x", 2<<20)+"\n")
	if !strings.Contains(msg, "larger than") {
		t.Fatalf("got %s", msg)
	}
}

func TestLoadMissingFile(t *testing.T) {
	p := filepath.Join(t.TempDir(), "config.yaml")
	_, err := config.Load(p)
	if !errors.Is(err, config.ErrNotFound) {
		t.Fatalf("want ErrNotFound, got %v", err)
	}
	if errors.Is(err, config.ErrInvalid) {
		t.Error("a missing file is not an invalid one")
	}
	if !strings.Contains(err.Error(), p) || !strings.Contains(err.Error(), "courier init") {
		t.Fatalf("error should name the file and `courier init`: %v", err)
	}
}

func TestLoadDirectory(t *testing.T) {
	_, err := config.Load(t.TempDir())
	if err == nil || !errors.Is(err, config.ErrInvalid) {
		t.Fatalf("got %v", err)
	}
}

func TestLoadWarnsAboutOpenPermissions(t *testing.T) {
	if os.Geteuid() == -1 {
		t.Skip("no Unix permissions")
	}
	p := writeConfig(t, "listen: 127.0.0.1:1\n")
	c, err := config.Load(p)
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Warnings()) != 0 {
		t.Fatalf("0600 file has warnings: %v", c.Warnings())
	}
	if err := os.Chmod(p, 0o644); err != nil {
		t.Fatal(err)
	}
	c, err = config.Load(p)
	if err != nil {
		t.Fatalf("a readable file must still load: %v", err)
	}
	w := c.Warnings()
	if len(w) != 1 || !strings.Contains(w[0], "0644") || !strings.Contains(w[0], "chmod 600 "+p) {
		t.Fatalf("warnings = %q", w)
	}
}
