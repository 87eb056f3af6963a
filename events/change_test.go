package events

import (
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"
)

// changeEvent is PagerDuty's documented example change event with a real
// routing key, plus extra members.
func changeEvent(extra string) string {
	return `{"routing_key":"` + testKey + `",` + extra + `"payload":{"summary":"Build Success: Increase snapshot create timeout to 30 seconds",` +
		`"timestamp":"2020-07-17T08:42:58.315+0000","source":"acme-build-pipeline-tool-default-i-9999",` +
		`"custom_details":{"build_state":"passed","build_number":"2","run_time":"1236s"}},` +
		`"links":[{"href":"https://acme.pagerduty.dev/build/2","text":"View more details in Acme!"}]}`
}

func TestParseChangeValid(t *testing.T) {
	for name, body := range map[string]string{
		"documented example": changeEvent(""),
		"summary only":       `{"routing_key":"` + testKey + `","payload":{"summary":"deployed"}}`,
		// As for alerts, members PagerDuty does not define go up unchanged.
		"unknown members": changeEvent(`"future":{"a":[1]},`),
		// go-pagerduty's CreateChangeEvent sends its zero time.Time when the
		// caller sets none.
		"zero time": `{"routing_key":"` + testKey + `","payload":{"summary":"s","timestamp":"0001-01-01T00:00:00Z"}}`,
	} {
		t.Run(name, func(t *testing.T) {
			a, errs := ParseChange([]byte(body))
			if errs != nil {
				t.Fatalf("unexpected errors: %q", errs)
			}
			if a.API != APIChange || a.Key != testKey || a.DedupKey != "" || a.Change == nil || a.Change.Payload.Summary == "" {
				t.Fatalf("accepted = %+v", a)
			}
			if string(a.Event) != body {
				t.Fatalf("stored event changed:\n got %s\nwant %s", a.Event, body)
			}
			if a.QueueKey() != QueueKey(testKey) {
				t.Fatalf("queue key %q: change events must share the key's queue with its alerts", a.QueueKey())
			}
		})
	}
}

func TestParseChangeInvalid(t *testing.T) {
	cases := map[string]struct {
		body string
		want []string
	}{
		"no routing key":   {`{"payload":{"summary":"s"}}`, []string{"'routing_key' is missing or blank"}},
		"short key":        {`{"routing_key":"abc","payload":{"summary":"s"}}`, []string{"Length of 'routing_key' is incorrect (should be 32 characters)"}},
		"no payload":       {`{"routing_key":"` + testKey + `"}`, []string{"'payload' is missing or blank"}},
		"payload a string": {`{"routing_key":"` + testKey + `","payload":"s"}`, []string{"'payload' is invalid (must be an object)"}},
		"no summary":       {`{"routing_key":"` + testKey + `","payload":{"source":"ci"}}`, []string{"'payload.summary' is missing or blank"}},
		"long summary": {`{"routing_key":"` + testKey + `","payload":{"summary":"` + strings.Repeat("é", 1025) + `"}}`,
			[]string{"Length of 'payload.summary' is too long (should be at most 1024 characters)"}},
		"bad timestamp": {`{"routing_key":"` + testKey + `","payload":{"summary":"s","timestamp":"last tuesday"}}`,
			[]string{"'payload.timestamp' is invalid (must be an ISO 8601 date and time with a time zone, such as 2015-07-17T08:42:58.315+0000)"}},
		"timestamp without zone": {`{"routing_key":"` + testKey + `","payload":{"summary":"s","timestamp":"2020-07-17T08:42:58"}}`,
			[]string{"'payload.timestamp' is invalid (must be an ISO 8601 date and time with a time zone, such as 2015-07-17T08:42:58.315+0000)"}},
		"source not a string": {`{"routing_key":"` + testKey + `","payload":{"summary":"s","source":7}}`, []string{"'payload.source' is invalid (must be a string)"}},
		"link without href": {`{"routing_key":"` + testKey + `","payload":{"summary":"s"},"links":[{"href":"https://a"},{"text":"no href"}]}`,
			[]string{"'links[1].href' is missing or blank"}},
		"links not a list": {`{"routing_key":"` + testKey + `","payload":{"summary":"s"},"links":{"href":"https://a"}}`,
			[]string{"'links' is invalid (must be a list of objects with 'href', 'text')"}},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			a, errs := ParseChange([]byte(tc.body))
			if !slices.Equal(errs, tc.want) {
				t.Fatalf("errors:\n got %q\nwant %q", errs, tc.want)
			}
			if a.Event != nil {
				t.Fatalf("an invalid event was accepted: %s", a.Event)
			}
		})
	}
}

func TestParseV2ImagesAndLinks(t *testing.T) {
	cases := map[string]struct {
		extra string
		want  []string
	}{
		"https image":       {`"images":[{"src":"https://example.com/a.png","href":"http://example.com","alt":"a"}],`, nil},
		"http image":        {`"images":[{"src":"http://example.com/a.png"}],`, []string{"'images[0].src' is invalid (must be an https:// URL: PagerDuty shows only images served over HTTPS)"}},
		"image without src": {`"images":[{"src":"https://example.com/a.png"},{"alt":"a"}],`, []string{"'images[1].src' is missing or blank"}},
		"relative image":    {`"images":[{"src":"/a.png"}],`, []string{"'images[0].src' is invalid (must be an https:// URL: PagerDuty shows only images served over HTTPS)"}},
		"link without href": {`"links":[{"text":"runbook"}],`, []string{"'links[0].href' is missing or blank"}},
		"images not a list": {`"images":"https://example.com/a.png",`, []string{"'images' is invalid (must be a list of objects with 'src', 'href', 'alt')"}},
		// PagerDuty reads client and client_url on triggers only and ignores
		// them elsewhere; they are accepted (and forwarded) on any action.
		"client on trigger": {`"client":"Alertmanager","client_url":"http://am:9093",`, nil},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			_, errs := ParseV2([]byte(trigger(tc.extra)))
			if !slices.Equal(errs, tc.want) {
				t.Fatalf("errors:\n got %q\nwant %q", errs, tc.want)
			}
		})
	}
	resolve := `{"routing_key":"` + testKey + `","event_action":"resolve","dedup_key":"k","client":"Alertmanager","client_url":"http://am:9093"}`
	if a, errs := ParseV2([]byte(resolve)); errs != nil || string(a.Event) != resolve {
		t.Fatalf("resolve with client: %q %s", errs, a.Event)
	}
}

func TestStampTimestamp(t *testing.T) {
	at := time.Date(2026, 12, 5, 9, 30, 1, 250_000_000, time.FixedZone("CET", 3600))
	const want = "2026-12-05T08:30:01.250Z"
	cases := map[string]struct {
		parse   func([]byte) (Accepted, []string)
		body    string
		stamped bool
	}{
		"trigger without":      {ParseV2, trigger(`"dedup_key":"d",`), true},
		"trigger with":         {ParseV2, `{"routing_key":"` + testKey + `","event_action":"trigger","payload":{"summary":"s","source":"s","severity":"info","timestamp":"2015-07-17T08:42:58.315+0000"}}`, false},
		"change without":       {ParseChange, `{"routing_key":"` + testKey + `","payload":{"summary":"s"},"links":[{"href":"https://a"}]}`, true},
		"change with":          {ParseChange, changeEvent(""), false},
		"resolve (no payload)": {ParseV2, `{"routing_key":"` + testKey + `","event_action":"resolve","dedup_key":"k"}`, false},
		"v1":                   {ParseV1, `{"service_key":"` + testKeyV1 + `","event_type":"trigger","description":"d"}`, false},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			a, errs := tc.parse([]byte(tc.body))
			if errs != nil {
				t.Fatal(errs)
			}
			before := string(a.Event)
			got, err := a.StampTimestamp(at)
			if err != nil {
				t.Fatal(err)
			}
			if string(a.Event) != before {
				t.Fatalf("the original was modified")
			}
			if !tc.stamped {
				if string(got.Event) != before {
					t.Fatalf("event changed:\n got %s\nwant %s", got.Event, before)
				}
				return
			}
			var e struct {
				Payload map[string]any `json:"payload"`
			}
			if err := json.Unmarshal(got.Event, &e); err != nil {
				t.Fatal(err)
			}
			if e.Payload["timestamp"] != want {
				t.Fatalf("payload.timestamp = %v, want %s (event %s)", e.Payload["timestamp"], want, got.Event)
			}
			// Only the timestamp was added: everything else is as sent.
			if strings.Replace(string(got.Event), `,"timestamp":"`+want+`"`, "", 1) != before {
				t.Fatalf("stamping changed more than the timestamp:\n got %s\nfrom %s", got.Event, before)
			}
			again, errs := tc.parse(got.Event)
			if errs != nil || string(again.Event) != string(got.Event) {
				t.Fatalf("the stamped event does not validate as is: %q", errs)
			}
		})
	}
}

func TestChangeEndpoint(t *testing.T) {
	q := &fakeQueue{}
	srv := apiServer(t, q)
	body := changeEvent("")
	r := do(t, http.MethodPost, srv.URL+"/v2/change/enqueue", body)
	// PagerDuty's answer to a change event has no dedup key.
	if r.code != http.StatusAccepted || string(r.raw) != `{"status":"success","message":"Change event processed"}`+"\n" {
		t.Fatalf("answer %d %s", r.code, r.raw)
	}
	// Through the CLI's endpoint too.
	r = do(t, http.MethodPost, srv.URL+"/v1/send", `{"api_version":"change","event":`+body+`}`)
	if r.code != http.StatusAccepted || r.body["message"] != "Change event processed" {
		t.Fatalf("send: answer %d %s", r.code, r.raw)
	}
	stored := q.stored(QueueKey(testKey))
	if len(stored) != 2 {
		t.Fatalf("stored %d events, want 2", len(stored))
	}
	for _, p := range stored {
		s, err := DecodeStored(p)
		if err != nil {
			t.Fatal(err)
		}
		if s.API != APIChange || string(s.Event) != body {
			t.Fatalf("stored %s %s", s.API, s.Event)
		}
	}

	bad := do(t, http.MethodPost, srv.URL+"/v2/change/enqueue", `{"routing_key":"`+testKey+`","payload":{}}`)
	bad.mustError(t, http.StatusBadRequest, "'payload.summary' is missing or blank")
	if bad.body["status"] != "invalid event" {
		t.Fatalf("not PagerDuty's shape: %s", bad.raw)
	}
	// An alert is not a change event, nor the other way round.
	do(t, http.MethodPost, srv.URL+"/v2/enqueue", body).mustError(t, http.StatusBadRequest, "'event_action' is missing or blank")
	if n := q.count(); n != 2 {
		t.Fatalf("%d events stored, want 2", n)
	}
}

func TestEnqueueStampsTimestampWhenAsked(t *testing.T) {
	q := &fakeQueue{}
	srv := apiServer(t, q, func(o *APIOptions) { o.StampTimestamp = true })
	do(t, http.MethodPost, srv.URL+"/v2/enqueue", trigger(`"dedup_key":"d",`))
	do(t, http.MethodPost, srv.URL+"/v2/change/enqueue", `{"routing_key":"`+testKey+`","payload":{"summary":"s"}}`)
	stored := q.stored(QueueKey(testKey))
	if len(stored) != 2 {
		t.Fatalf("stored %d", len(stored))
	}
	for _, p := range stored {
		s, _ := DecodeStored(p)
		if !strings.Contains(string(s.Event), `"timestamp":"2026-05-04T03:02:01.000Z"`) {
			t.Fatalf("not stamped with the time of receipt: %s", s.Event)
		}
	}
	// Off by default: the body is forwarded as sent.
	q2 := &fakeQueue{}
	srv2 := apiServer(t, q2)
	do(t, http.MethodPost, srv2.URL+"/v2/enqueue", trigger(`"dedup_key":"d",`))
	if s, _ := DecodeStored(q2.stored(QueueKey(testKey))[0]); string(s.Event) != trigger(`"dedup_key":"d",`) {
		t.Fatalf("stamped although not asked: %s", s.Event)
	}
}
