package events

import (
	"encoding/json"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
)

const (
	testKey   = "R0ut1ngK3yR0ut1ngK3yR0ut1ngK3y01" // 32 characters
	testKeyV1 = "S3rv1c3K3yS3rv1c3K3yS3rv1c3K3y01"
)

var hex32 = regexp.MustCompile(`^[0-9a-f]{32}$`)

func trigger(extra string) string {
	return `{"routing_key":"` + testKey + `","event_action":"trigger",` + extra +
		`"payload":{"summary":"disk full on build-7","source":"build-7","severity":"critical"}}`
}

func TestParseV2Valid(t *testing.T) {
	cases := map[string]struct {
		body, action, dedup string
	}{
		"trigger with dedup key": {trigger(`"dedup_key":"disk/build-7",`), ActionTrigger, "disk/build-7"},
		"acknowledge":            {`{"routing_key":"` + testKey + `","event_action":"acknowledge","dedup_key":"disk/build-7"}`, ActionAcknowledge, "disk/build-7"},
		"resolve":                {`{"routing_key":"` + testKey + `","event_action":"resolve","dedup_key":"disk/build-7"}`, ActionResolve, "disk/build-7"},
		// PagerDuty ignores the payload of acknowledge and resolve.
		"resolve with junk payload": {`{"routing_key":"` + testKey + `","event_action":"resolve","dedup_key":"k","payload":"junk"}`, ActionResolve, "k"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			a, errs := ParseV2([]byte(tc.body))
			if errs != nil {
				t.Fatalf("unexpected errors: %q", errs)
			}
			if a.API != APIv2 || a.Key != testKey || a.Action != tc.action || a.DedupKey != tc.dedup {
				t.Fatalf("accepted = %+v", a)
			}
			if string(a.Event) != tc.body {
				t.Fatalf("stored event changed:\n got %s\nwant %s", a.Event, tc.body)
			}
			if a.QueueKey() != "events/"+testKey {
				t.Fatalf("queue key = %q", a.QueueKey())
			}
		})
	}
}

func TestParseV2FullEvent(t *testing.T) {
	body := `{
	  "routing_key": "` + testKey + `",
	  "event_action": "trigger",
	  "dedup_key": "srv01/HTTP",
	  "payload": {
	    "summary": "Example alert on host1.example.com <&>",
	    "timestamp": "2015-07-17T08:42:58.315+0000",
	    "source": "monitoringtool:cloudvendor:central-region-dc-01:852559987:cluster/api-stats-prod-003",
	    "severity": "info",
	    "component": "postgres",
	    "group": "prod-datapipe",
	    "class": "deploy",
	    "custom_details": {"ping time": "1500ms", "load avg": 0.75, "big": 12345678901234567890}
	  },
	  "images": [{"src": "https://www.pagerduty.com/wp-content/uploads/2016/05/pagerduty-logo-green.png", "href": "https://example.com/", "alt": "Example text"}],
	  "links": [{"href": "https://example.com/", "text": "Link text"}],
	  "client": "Sample Monitoring Service",
	  "client_url": "https://monitoring.service.com",
	  "future_field": {"kept": true}
	}`
	a, errs := ParseV2([]byte(body))
	if errs != nil {
		t.Fatalf("unexpected errors: %q", errs)
	}
	e := a.V2
	if e.Payload.Component != "postgres" || e.Payload.Timestamp != "2015-07-17T08:42:58.315+0000" ||
		len(e.Images) != 1 || e.Images[0].Alt != "Example text" || len(e.Links) != 1 || e.ClientURL != "https://monitoring.service.com" {
		t.Fatalf("event = %+v, payload = %+v", e, e.Payload)
	}
	details := e.Payload.CustomDetails.(map[string]any)
	if details["big"].(json.Number).String() != "12345678901234567890" {
		t.Fatalf("custom_details lost precision: %v", details["big"])
	}
	// The stored event is the body compacted: unknown fields kept, nothing
	// HTML-escaped, large numbers untouched.
	for _, want := range []string{`"future_field":{"kept":true}`, `<&>`, `12345678901234567890`} {
		if !strings.Contains(string(a.Event), want) {
			t.Fatalf("stored event %s lacks %s", a.Event, want)
		}
	}
	if strings.Contains(string(a.Event), "\n") {
		t.Fatalf("stored event is not compact: %s", a.Event)
	}
}

func TestParseV2GeneratesDedupKey(t *testing.T) {
	for name, extra := range map[string]string{
		"absent": ``,
		"null":   `"dedup_key":null,`,
		"empty":  `"dedup_key":"",`,
		"blank":  `"dedup_key":"  ",`,
	} {
		t.Run(name, func(t *testing.T) {
			a, errs := ParseV2([]byte(trigger(extra + `"client":"a<b",`)))
			if errs != nil {
				t.Fatalf("unexpected errors: %q", errs)
			}
			if !hex32.MatchString(a.DedupKey) || a.V2.DedupKey != a.DedupKey {
				t.Fatalf("dedup key = %q, event's = %q", a.DedupKey, a.V2.DedupKey)
			}
			var stored map[string]any
			if err := json.Unmarshal(a.Event, &stored); err != nil {
				t.Fatal(err)
			}
			if stored["dedup_key"] != a.DedupKey {
				t.Fatalf("stored event %s does not carry the generated key %s", a.Event, a.DedupKey)
			}
			if stored["client"] != "a<b" || !strings.Contains(string(a.Event), `"a<b"`) {
				t.Fatalf("rebuilt event changed other fields: %s", a.Event)
			}
			if n := strings.Count(string(a.Event), `"dedup_key"`); n != 1 {
				t.Fatalf("dedup_key appears %d times in %s", n, a.Event)
			}
			again, errs := ParseV2(a.Event)
			if errs != nil || again.DedupKey != a.DedupKey || string(again.Event) != string(a.Event) {
				t.Fatalf("re-parse: %+v %q", again, errs)
			}
		})
	}
	a, _ := ParseV2([]byte(trigger("")))
	b, _ := ParseV2([]byte(trigger("")))
	if a.DedupKey == b.DedupKey {
		t.Fatalf("two triggers got the same generated key %s", a.DedupKey)
	}
}

func TestParseV2Invalid(t *testing.T) {
	long := func(n int) string { return strings.Repeat("é", n) } // characters, not bytes
	cases := map[string]struct {
		body string
		want []string
	}{
		"short routing key": {
			`{"routing_key":"abc","event_action":"resolve","dedup_key":"k"}`,
			[]string{"Length of 'routing_key' is incorrect (should be 32 characters)"},
		},
		"routing key of 32 bytes but 16 characters": {
			`{"routing_key":"` + long(16) + `","event_action":"resolve","dedup_key":"k"}`,
			[]string{"Length of 'routing_key' is incorrect (should be 32 characters)"},
		},
		"missing routing key": {
			`{"event_action":"resolve","dedup_key":"k"}`,
			[]string{"'routing_key' is missing or blank"},
		},
		"routing key not a string": {
			`{"routing_key":42,"event_action":"resolve","dedup_key":"k"}`,
			[]string{"'routing_key' is invalid (must be a string)"},
		},
		"bad action": {
			`{"routing_key":"` + testKey + `","event_action":"Trigger"}`,
			[]string{"'event_action' is invalid (must be one of trigger, acknowledge, resolve)"},
		},
		"missing action": {
			`{"routing_key":"` + testKey + `"}`,
			[]string{"'event_action' is missing or blank"},
		},
		"acknowledge without dedup key": {
			`{"routing_key":"` + testKey + `","event_action":"acknowledge"}`,
			[]string{"'dedup_key' is missing or blank (required for acknowledge)"},
		},
		"resolve without dedup key": {
			`{"routing_key":"` + testKey + `","event_action":"resolve","dedup_key":""}`,
			[]string{"'dedup_key' is missing or blank (required for resolve)"},
		},
		"dedup key too long": {
			trigger(`"dedup_key":"` + long(256) + `",`),
			[]string{"Length of 'dedup_key' is too long (should be at most 255 characters)"},
		},
		"trigger without payload": {
			`{"routing_key":"` + testKey + `","event_action":"trigger"}`,
			[]string{"'payload' is missing or blank"},
		},
		"payload not an object": {
			`{"routing_key":"` + testKey + `","event_action":"trigger","payload":[1]}`,
			[]string{"'payload' is invalid (must be an object)"},
		},
		"empty payload": {
			`{"routing_key":"` + testKey + `","event_action":"trigger","payload":{}}`,
			[]string{"'payload.summary' is missing or blank", "'payload.source' is missing or blank", "'payload.severity' is missing or blank"},
		},
		"summary too long": {
			`{"routing_key":"` + testKey + `","event_action":"trigger","payload":{"summary":"` + long(1025) + `","source":"s","severity":"info"}}`,
			[]string{"Length of 'payload.summary' is too long (should be at most 1024 characters)"},
		},
		"bad severity": {
			`{"routing_key":"` + testKey + `","event_action":"trigger","payload":{"summary":"s","source":"s","severity":"CRITICAL"}}`,
			[]string{"'payload.severity' is invalid (must be one of critical, error, warning, info)"},
		},
		"bad timestamp": {
			`{"routing_key":"` + testKey + `","event_action":"trigger","payload":{"summary":"s","source":"s","severity":"info","timestamp":"yesterday"}}`,
			[]string{"'payload.timestamp' is invalid (must be an ISO 8601 date and time with a time zone, such as 2015-07-17T08:42:58.315+0000)"},
		},
		"summary not a string": {
			`{"routing_key":"` + testKey + `","event_action":"trigger","payload":{"summary":{"a":1},"source":"s","severity":"info"}}`,
			[]string{"'payload.summary' is invalid (must be a string)"},
		},
		"bad links": {
			trigger(`"links":"https://example.com",`),
			[]string{"'links' is invalid (must be a list of objects with 'href', 'text')"},
		},
		// PagerDuty's names are case-sensitive; encoding/json's are not.
		"names in the wrong case": {
			`{"Routing_Key":"` + testKey + `","EVENT_ACTION":"resolve","dedup_key":"k"}`,
			[]string{"'routing_key' is missing or blank", "'event_action' is missing or blank"},
		},
		"everything wrong at once": {
			`{"routing_key":"short","event_action":"explode","dedup_key":"` + long(300) + `"}`,
			[]string{
				"Length of 'routing_key' is incorrect (should be 32 characters)",
				"'event_action' is invalid (must be one of trigger, acknowledge, resolve)",
				"Length of 'dedup_key' is too long (should be at most 255 characters)",
			},
		},
		"not JSON":          {`{"routing_key":`, []string{"body is not valid JSON: unexpected end of JSON input (at byte 15)"}},
		"garbage":           {`routing_key=x`, []string{"body is not valid JSON: invalid character 'r' looking for beginning of value (at byte 1)"}},
		"empty body":        {" \n", []string{"body is empty (send one event as a JSON object)"}},
		"two objects":       {`{} {}`, []string{"body is not valid JSON: invalid character '{' after top-level value (at byte 4)"}},
		"array":             {`[` + trigger("") + `]`, []string{"body is not a JSON object (send one event as {...})"}},
		"not UTF-8":         {"{\"routing_key\":\"\xff\"}", []string{"body is not valid JSON: it is not UTF-8"}},
		"JSON null":         {`null`, []string{"body is not a JSON object (send one event as {...})"}},
		"v1 body on the v2": {`{"service_key":"` + testKey + `","event_type":"trigger","description":"d"}`, []string{"'routing_key' is missing or blank", "'event_action' is missing or blank"}},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			a, errs := ParseV2([]byte(tc.body))
			if !slices.Equal(errs, tc.want) {
				t.Fatalf("errors:\n got %q\nwant %q", errs, tc.want)
			}
			if a.Event != nil {
				t.Fatalf("an invalid event was accepted: %s", a.Event)
			}
		})
	}
}

func TestParseV2DuplicateNames(t *testing.T) {
	// The last value wins, as in encoding/json, and the stored event carries
	// it alone so that upstream cannot pick the other one.
	body := `{"routing_key":"short","event_action":"resolve","routing_key":"` + testKey + `","dedup_key":"k"}`
	a, errs := ParseV2([]byte(body))
	if errs != nil {
		t.Fatalf("unexpected errors: %q", errs)
	}
	want := `{"routing_key":"` + testKey + `","event_action":"resolve","dedup_key":"k"}`
	if string(a.Event) != want {
		t.Fatalf("stored event:\n got %s\nwant %s", a.Event, want)
	}
}

func TestParseTimestamp(t *testing.T) {
	want := time.Date(2015, 7, 17, 8, 42, 58, 315e6, time.UTC)
	for _, s := range []string{
		"2015-07-17T08:42:58.315+0000",
		"2015-07-17T08:42:58.315Z",
		"2015-07-17T08:42:58.315+00:00",
		"2015-07-17T10:42:58.315+02",
		"2015-07-17T04:42:58.315-0400",
		"20150717T084258.315Z",
	} {
		got, err := ParseTimestamp(s)
		if err != nil || !got.Equal(want) {
			t.Errorf("ParseTimestamp(%q) = %v, %v", s, got, err)
		}
	}
	if got, err := ParseTimestamp("2015-07-17T08:42Z"); err != nil || !got.Equal(time.Date(2015, 7, 17, 8, 42, 0, 0, time.UTC)) {
		t.Errorf("no seconds: %v, %v", got, err)
	}
	for _, s := range []string{"2015-07-17T08:42:58", "2015-07-17", "17/07/2015 08:42", "", "2015-13-17T08:42:58Z"} {
		if _, err := ParseTimestamp(s); err == nil {
			t.Errorf("ParseTimestamp(%q) accepted", s)
		}
	}
}

func TestParseV1(t *testing.T) {
	a, errs := ParseV1([]byte(`{"service_key":"` + testKeyV1 + `","event_type":"trigger","description":"FAILURE for production/HTTP on machine srv01.acme.com","client":"Sample Monitoring Service","client_url":"https://monitoring.service.com","details":{"ping time":"1500ms"},"contexts":[{"type":"link","href":"http://acme.pagerduty.com"}]}`))
	if errs != nil {
		t.Fatalf("unexpected errors: %q", errs)
	}
	if a.API != APIv1 || a.Key != testKeyV1 || !hex32.MatchString(a.DedupKey) || a.V1.IncidentKey != a.DedupKey || len(a.V1.Contexts) != 1 {
		t.Fatalf("accepted = %+v %+v", a, a.V1)
	}
	if !strings.Contains(string(a.Event), `"incident_key":"`+a.DedupKey+`"`) {
		t.Fatalf("generated incident_key not stored: %s", a.Event)
	}
	if a.QueueKey() != "events/"+testKeyV1 {
		t.Fatalf("queue key = %q", a.QueueKey())
	}

	cases := map[string]struct {
		body string
		want []string
	}{
		"wrong key length": {
			`{"service_key":"abc","event_type":"resolve","incident_key":"k"}`,
			[]string{"Service key is the wrong length (should be 32 characters)"},
		},
		"resolve without incident key": {
			`{"service_key":"` + testKeyV1 + `","event_type":"resolve"}`,
			[]string{"'incident_key' is missing or blank (required for resolve)"},
		},
		"trigger without description": {
			`{"service_key":"` + testKeyV1 + `","event_type":"trigger"}`,
			[]string{"'description' is missing or blank"},
		},
		"description too long": {
			`{"service_key":"` + testKeyV1 + `","event_type":"trigger","description":"` + strings.Repeat("x", 1025) + `"}`,
			[]string{"Length of 'description' is too long (should be at most 1024 characters)"},
		},
		"bad type and no key": {
			`{"event_type":"page"}`,
			[]string{"'service_key' is missing or blank", "'event_type' is invalid (must be one of trigger, acknowledge, resolve)"},
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			_, errs := ParseV1([]byte(tc.body))
			if !slices.Equal(errs, tc.want) {
				t.Fatalf("errors:\n got %q\nwant %q", errs, tc.want)
			}
		})
	}
}

func TestParseSend(t *testing.T) {
	v2 := trigger(`"dedup_key":"d1",`)
	v1 := `{"service_key":"` + testKeyV1 + `","event_type":"acknowledge","incident_key":"i1"}`
	for name, tc := range map[string]struct {
		body, api, key, dedup, event string
	}{
		"v2":                  {`{"api_version":"v2","event":` + v2 + `}`, APIv2, testKey, "d1", v2},
		"v1":                  {`{"api_version":"v1","event":` + v1 + `}`, APIv1, testKeyV1, "i1", v1},
		"no version means v2": {`{"event":` + v2 + `,"extra":1}`, APIv2, testKey, "d1", v2},
	} {
		t.Run(name, func(t *testing.T) {
			a, errs := ParseSend([]byte(tc.body))
			if errs != nil {
				t.Fatalf("unexpected errors: %q", errs)
			}
			if a.API != tc.api || a.Key != tc.key || a.DedupKey != tc.dedup || string(a.Event) != tc.event {
				t.Fatalf("accepted = %+v (event %s)", a, a.Event)
			}
		})
	}

	// The CLI builds the body with SendRequest.
	body, err := json.Marshal(SendRequest{APIVersion: APIv2, Event: json.RawMessage(trigger(""))})
	if err != nil {
		t.Fatal(err)
	}
	if a, errs := ParseSend(body); errs != nil || !hex32.MatchString(a.DedupKey) {
		t.Fatalf("SendRequest body: %+v %q", a, errs)
	}

	for name, tc := range map[string]struct {
		body string
		want []string
	}{
		"bad version":         {`{"api_version":"v3","event":` + v2 + `}`, []string{"'api_version' is invalid (must be one of v2, v1, change)"}},
		"no event":            {`{"api_version":"v2"}`, []string{"'event' is missing or blank"}},
		"event not an object": {`{"api_version":"v2","event":"hello"}`, []string{"'event' is invalid (must be a JSON object)"}},
		"invalid v1 event":    {`{"api_version":"v1","event":` + v2 + `}`, []string{"'service_key' is missing or blank", "'event_type' is missing or blank"}},
		"broken":              {`{"api_version":"v2","event":{`, []string{"body is not valid JSON: unexpected end of JSON input (at byte 29)"}},
	} {
		t.Run(name, func(t *testing.T) {
			_, errs := ParseSend([]byte(tc.body))
			if !slices.Equal(errs, tc.want) {
				t.Fatalf("errors:\n got %q\nwant %q", errs, tc.want)
			}
		})
	}
}

func TestStoredRoundTrip(t *testing.T) {
	a, errs := ParseV2([]byte(trigger(`"client":"<b>&\u2028",`)))
	if errs != nil {
		t.Fatal(errs)
	}
	at := time.Date(2026, 1, 2, 3, 4, 5, 6, time.FixedZone("CET", 3600))
	b, err := EncodeStored(a.Stored(at))
	if err != nil {
		t.Fatal(err)
	}
	s, err := DecodeStored(b)
	if err != nil {
		t.Fatal(err)
	}
	if s.API != APIv2 || !s.ReceivedAt.Equal(at) || s.ReceivedAt.Location() != time.UTC || string(s.Event) != string(a.Event) {
		t.Fatalf("round trip: %+v (event %s, want %s)", s, s.Event, a.Event)
	}
	if !strings.Contains(string(b), `"received_at":"2026-01-02T02:04:05.000000006Z"`) {
		t.Fatalf("envelope = %s", b)
	}

	for name, bad := range map[string]string{
		"not JSON":    `{"api":`,
		"unknown api": `{"api":"v9","event":{}}`,
		"no event":    `{"api":"v2"}`,
		"event array": `{"api":"v2","event":[]}`,
	} {
		if _, err := DecodeStored([]byte(bad)); err == nil {
			t.Errorf("%s: DecodeStored(%s) succeeded", name, bad)
		}
	}
}

func TestQueueKey(t *testing.T) {
	if got := QueueKey(testKey); got != "events/"+testKey {
		t.Fatalf("QueueKey = %q", got)
	}
}

func TestNewDedupKey(t *testing.T) {
	seen := map[string]bool{}
	for range 100 {
		k := NewDedupKey()
		if !hex32.MatchString(k) || seen[k] {
			t.Fatalf("bad or repeated key %q", k)
		}
		seen[k] = true
	}
}
