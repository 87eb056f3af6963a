package events

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
)

// fuzzSeeds are shared by both targets; FuzzParseSend also wraps each one.
// More seeds live in testdata/fuzz/<target>/.
func fuzzSeeds() []string {
	return []string{
		trigger(`"dedup_key":"disk/build-7",`),
		trigger(""),
		`{"routing_key":"` + testKey + `","event_action":"acknowledge","dedup_key":"k"}`,
		`{"routing_key":"` + testKey + `","event_action":"resolve","dedup_key":"k","payload":null}`,
		`{"service_key":"` + testKeyV1 + `","event_type":"trigger","description":"d","details":{"n":1e400}}`,
		`{"routing_key":`,
		`{"routing_key":"` + testKey + `","event_action":"trigger","payload":{"summary":"` + strings.Repeat("s", 1025) + `","source":"s","severity":"info"}}`,
		`{"routing_key":"` + strings.Repeat("é", 32) + `","event_action":"trigger","dedup_key":"","payload":{"summary":"ディスクがいっぱい 🔥","source":"ホスト","severity":"warning","timestamp":"2015-07-17T08:42:58.315+0000"}}`,
		`{"routing_key":"` + testKey + `","routing_key":"` + testKey + `","event_action":"trigger","payload":{"summary":"s","source":"s","severity":"info","severity":"error"}}`,
		`[]`, `null`, `"x"`, ``,
	}
}

// checkAccepted is the property both targets share: an accepted event
// re-parses, unchanged, to an accepted event with the same dedup key, and
// survives the stored envelope byte for byte.
func checkAccepted(t *testing.T, a Accepted, errs []string) {
	t.Helper()
	if errs != nil {
		if a.Event != nil {
			t.Fatalf("errors %q came with an accepted event", errs)
		}
		for _, e := range errs {
			if e == "" {
				t.Fatal("empty error message")
			}
		}
		return
	}
	if a.DedupKey == "" && a.Action == ActionTrigger {
		t.Fatalf("accepted trigger without dedup key: %s", a.Event)
	}
	parse := ParseV2
	if a.API == APIv1 {
		parse = ParseV1
	}
	again, errs := parse(a.Event)
	if errs != nil {
		t.Fatalf("accepted event %s no longer parses: %q", a.Event, errs)
	}
	if again.DedupKey != a.DedupKey || again.Key != a.Key || string(again.Event) != string(a.Event) {
		t.Fatalf("re-parse changed the event:\n%+v\n%+v", a, again)
	}
	b, err := EncodeStored(a.Stored(time.Unix(0, 0)))
	if err != nil {
		t.Fatal(err)
	}
	s, err := DecodeStored(b)
	if err != nil || s.API != a.API || string(s.Event) != string(a.Event) {
		t.Fatalf("stored round trip: %+v %v", s, err)
	}
}

func FuzzParseV2(f *testing.F) {
	for _, s := range fuzzSeeds() {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		a, errs := ParseV2(body)
		checkAccepted(t, a, errs)
	})
}

func FuzzParseSend(f *testing.F) {
	for _, s := range fuzzSeeds() {
		f.Add([]byte(`{"api_version":"v2","event":` + s + `}`))
		f.Add([]byte(`{"api_version":"v1","event":` + s + `}`))
	}
	f.Add([]byte(`{"event":{}}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		a, errs := ParseSend(body)
		checkAccepted(t, a, errs)
		if errs != nil {
			return
		}
		wrapped, err := json.Marshal(SendRequest{APIVersion: a.API, Event: a.Event})
		if err != nil {
			t.Fatal(err)
		}
		again, errs := ParseSend(wrapped)
		if errs != nil || again.DedupKey != a.DedupKey || again.API != a.API {
			t.Fatalf("re-wrapped event: %+v %q", again, errs)
		}
	})
}
