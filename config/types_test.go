package config_test

import (
	"encoding/json"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"courier/config"
)

func TestDurationFormat(t *testing.T) {
	for d, want := range map[time.Duration]string{
		0:                       "0s",
		200 * time.Millisecond:  "200ms",
		5 * time.Second:         "5s",
		time.Minute:             "1m",
		15 * time.Minute:        "15m",
		90 * time.Minute:        "90m",
		2 * time.Hour:           "2h",
		1500 * time.Millisecond: "1500ms",
		1500 * time.Microsecond: "1.5ms",
		-time.Minute:            "-1m",
	} {
		got := config.Duration(d).String()
		if got != want {
			t.Errorf("%v formats as %q, want %q", d, got, want)
		}
		back, err := time.ParseDuration(got)
		if err != nil || back != d {
			t.Errorf("%q parses back as %v, %v", got, back, err)
		}
	}
}

func TestDurationEncodings(t *testing.T) {
	var v struct {
		D config.Duration `yaml:"d" json:"d"`
	}
	if err := yaml.Unmarshal([]byte("d: 1m30s\n"), &v); err != nil || v.D.Duration() != 90*time.Second {
		t.Fatalf("yaml: %v, %v", v.D, err)
	}
	if err := yaml.Unmarshal([]byte("d: 30\n"), &v); err == nil {
		t.Fatal("a bare number must be refused: seconds or nanoseconds?")
	}
	b, err := json.Marshal(v)
	if err != nil || string(b) != `{"d":"90s"}` {
		t.Fatalf("json: %s, %v", b, err)
	}
	if err := json.Unmarshal([]byte(`{"d":"2s"}`), &v); err != nil || v.D.Duration() != 2*time.Second {
		t.Fatalf("json decode: %v, %v", v.D, err)
	}
}
