package events

import (
	"encoding/json"
	"fmt"
	"time"
	"unicode/utf8"
)

// DefaultChangeURL is PagerDuty's Change Events endpoint.
const DefaultChangeURL = "https://events.pagerduty.com/v2/change/enqueue"

// ChangeEvent is a PagerDuty Events API v2 Change Event. It has no action
// and no dedup key: every change event is a new entry on the service's
// timeline.
type ChangeEvent struct {
	RoutingKey string         `json:"routing_key"`
	Payload    *ChangePayload `json:"payload"`
	Links      []Link         `json:"links,omitempty"`
}

// ChangePayload is the body of a change event. Timestamp is kept as sent,
// as in Payload.
type ChangePayload struct {
	Summary       string `json:"summary"`
	Source        string `json:"source,omitempty"`
	Timestamp     string `json:"timestamp,omitempty"`
	CustomDetails any    `json:"custom_details,omitempty"`
}

// ParseChange validates a PagerDuty Change Event body (POST
// /v2/change/enqueue). It returns every problem found, or the accepted event.
func ParseChange(body []byte) (Accepted, []string) {
	obj, errs := parseBody(body)
	if errs != nil {
		return Accepted{}, errs
	}
	return acceptChange(obj)
}

func acceptChange(obj *object) (Accepted, []string) {
	var c checker
	e := &ChangeEvent{RoutingKey: c.str(obj, "", "routing_key")}
	c.key("routing_key", e.RoutingKey, "Length of 'routing_key' is incorrect (should be 32 characters)")
	c.links(obj, &e.Links)
	raw, ok := obj.get("payload")
	switch {
	case !ok:
		c.add("'payload' is missing or blank")
	case raw[0] != '{':
		c.add("'payload' is invalid (must be an object)")
	default:
		p, err := decodeObject(raw)
		if err != nil {
			c.add("'payload' is invalid: " + err.Error())
			break
		}
		e.Payload = c.changePayload(p)
	}
	if c.errs != nil {
		return Accepted{}, c.errs
	}
	event, err := obj.encode()
	if err != nil {
		return Accepted{}, []string{err.Error()}
	}
	return Accepted{API: APIChange, Key: e.RoutingKey, Event: event, Change: e}, nil
}

func (c *checker) changePayload(p *object) *ChangePayload {
	const at = "payload."
	out := &ChangePayload{
		Summary:   c.str(p, at, "summary"),
		Source:    c.str(p, at, "source"),
		Timestamp: c.str(p, at, "timestamp"),
	}
	if raw, ok := p.get("custom_details"); ok {
		out.CustomDetails = anyValue(raw)
	}
	switch {
	case blank(out.Summary):
		c.missing(at + "summary")
	case utf8.RuneCountInString(out.Summary) > MaxSummaryChars:
		c.add(fmt.Sprintf("Length of 'payload.summary' is too long (should be at most %d characters)", MaxSummaryChars))
	}
	c.timestamp(out.Timestamp)
	return out
}

func (c *checker) timestamp(ts string) {
	if ts == "" {
		return
	}
	if _, err := ParseTimestamp(ts); err != nil {
		c.add("'payload.timestamp' is invalid (must be an ISO 8601 date and time with a time zone, such as 2015-07-17T08:42:58.315+0000)")
	}
}

// changeAnswer is PagerDuty's answer to an accepted change event: it has no
// dedup key.
var changeAnswer = []byte(`{"status":"success","message":"Change event processed"}`)

// StampLayout is how StampTimestamp writes payload.timestamp: ISO 8601 in
// UTC with milliseconds, as in PagerDuty's examples.
const StampLayout = "2006-01-02T15:04:05.000Z07:00"

// StampTimestamp sets payload.timestamp to at when the event has a payload
// that PagerDuty reads (a v2 trigger or a change event) without a timestamp,
// so that an event held through an outage keeps the time it happened rather
// than the time it was finally delivered. Other events are returned as they
// are.
func (a Accepted) StampTimestamp(at time.Time) (Accepted, error) {
	var pTimestamp *string
	switch {
	case a.API == APIv2 && a.Action == ActionTrigger && a.V2 != nil && a.V2.Payload != nil:
		pTimestamp = &a.V2.Payload.Timestamp
	case a.API == APIChange && a.Change != nil && a.Change.Payload != nil:
		pTimestamp = &a.Change.Payload.Timestamp
	default:
		return a, nil
	}
	if *pTimestamp != "" {
		return a, nil
	}
	obj, err := decodeObject(a.Event)
	if err != nil {
		return a, fmt.Errorf("stamp timestamp: %w", err)
	}
	raw, ok := obj.get("payload")
	if !ok {
		return a, nil
	}
	p, err := decodeObject(raw)
	if err != nil {
		return a, fmt.Errorf("stamp timestamp: %w", err)
	}
	ts := at.UTC().Format(StampLayout)
	v, _ := json.Marshal(ts) // a plain ASCII string always marshals
	p.set("timestamp", v)
	pRaw, err := p.encode()
	if err != nil {
		return a, fmt.Errorf("stamp timestamp: %w", err)
	}
	obj.set("payload", pRaw)
	event, err := obj.encode()
	if err != nil {
		return a, fmt.Errorf("stamp timestamp: %w", err)
	}
	// The structs are shared with the caller's copy; copy before writing.
	switch a.API {
	case APIv2:
		e, pl := *a.V2, *a.V2.Payload
		pl.Timestamp = ts
		e.Payload = &pl
		a.V2 = &e
	case APIChange:
		e, pl := *a.Change, *a.Change.Payload
		pl.Timestamp = ts
		e.Payload = &pl
		a.Change = &e
	}
	a.Event = event
	return a, nil
}
