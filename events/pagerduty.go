package events

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"
	"unicode/utf8"
)

// Event actions (v2 event_action, v1 event_type).
const (
	ActionTrigger     = "trigger"
	ActionAcknowledge = "acknowledge"
	ActionResolve     = "resolve"
)

// APIs of a stored event and of the /v1/send wrapper: Events API v2 alerts,
// v1 events and v2 Change Events.
const (
	APIv2     = "v2"
	APIv1     = "v1"
	APIChange = "change"
)

// Limits PagerDuty enforces; exceeding them is a 400 there, so it is one here
// too rather than a dead letter later.
const (
	KeyLength        = 32
	MaxDedupKeyChars = 255
	MaxSummaryChars  = 1024
)

// Event is a PagerDuty Events API v2 event.
type Event struct {
	RoutingKey  string   `json:"routing_key"`
	EventAction string   `json:"event_action"`
	DedupKey    string   `json:"dedup_key,omitempty"`
	Payload     *Payload `json:"payload,omitempty"`
	Images      []Image  `json:"images,omitempty"`
	Links       []Link   `json:"links,omitempty"`
	Client      string   `json:"client,omitempty"`
	ClientURL   string   `json:"client_url,omitempty"`
}

// Payload is the body of a v2 trigger. Timestamp is kept as sent: PagerDuty
// accepts ISO 8601 forms (such as "+0000") that time.Time would rewrite.
type Payload struct {
	Summary       string `json:"summary"`
	Source        string `json:"source"`
	Severity      string `json:"severity"`
	Timestamp     string `json:"timestamp,omitempty"`
	Component     string `json:"component,omitempty"`
	Group         string `json:"group,omitempty"`
	Class         string `json:"class,omitempty"`
	CustomDetails any    `json:"custom_details,omitempty"`
}

// Image is an image attached to a v2 event.
type Image struct {
	Src  string `json:"src"`
	Href string `json:"href,omitempty"`
	Alt  string `json:"alt,omitempty"`
}

// Link is a link attached to a v2 event.
type Link struct {
	Href string `json:"href"`
	Text string `json:"text,omitempty"`
}

// V1Event is a PagerDuty Events API v1 event (the generic create_event.json).
type V1Event struct {
	ServiceKey  string      `json:"service_key"`
	EventType   string      `json:"event_type"`
	IncidentKey string      `json:"incident_key,omitempty"`
	Description string      `json:"description,omitempty"`
	Details     any         `json:"details,omitempty"`
	Client      string      `json:"client,omitempty"`
	ClientURL   string      `json:"client_url,omitempty"`
	Contexts    []V1Context `json:"contexts,omitempty"`
}

// V1Context is a link or image attached to a v1 event.
type V1Context struct {
	Type string `json:"type"`
	Href string `json:"href,omitempty"`
	Src  string `json:"src,omitempty"`
	Text string `json:"text,omitempty"`
	Alt  string `json:"alt,omitempty"`
}

// SendRequest is the body of POST /v1/send, what `courier send` posts: one
// event of any API (APIv2, APIv1 or APIChange). An empty APIVersion means v2.
type SendRequest struct {
	APIVersion string          `json:"api_version"`
	Event      json.RawMessage `json:"event"`
}

// Accepted is an event that passed validation.
type Accepted struct {
	API string // APIv2 or APIv1
	// Key is the routing_key (v2) or service_key (v1).
	Key string
	// DedupKey is the dedup_key (v2) or incident_key (v1); generated for a
	// trigger that had none.
	DedupKey string
	// Action is the event_action (v2) or event_type (v1).
	Action string
	// Event is the event as accepted: the client's JSON, compacted, with a
	// generated dedup key filled in. It is what is stored and what is sent
	// upstream, byte for byte, so fields this package does not know reach
	// PagerDuty unchanged.
	Event  json.RawMessage
	V2     *Event       // set when API is APIv2
	V1     *V1Event     // set when API is APIv1
	Change *ChangeEvent // set when API is APIChange
}

// QueueKey is the routing key of the queue the event goes to.
func (a Accepted) QueueKey() string { return QueueKey(a.Key) }

// Stored returns the envelope to enqueue for the event.
func (a Accepted) Stored(receivedAt time.Time) Stored {
	return Stored{API: a.API, ReceivedAt: receivedAt.UTC(), Event: a.Event}
}

// Stored is the queue payload of one event.
type Stored struct {
	API        string          `json:"api"`
	ReceivedAt time.Time       `json:"received_at"`
	Event      json.RawMessage `json:"event"`
}

// queueKeyPrefix prefixes the queue routing keys of events (PROTOCOL.md).
const queueKeyPrefix = "events/"

// QueueKey maps a PagerDuty routing key (or v1 service key) to the queue's
// routing key, so that each integration key keeps its own order and one
// throttled key does not hold up the others.
func QueueKey(routingKey string) string { return queueKeyPrefix + routingKey }

// EncodeStored encodes s as a queue payload. HTML escaping is off so that the
// event is stored byte for byte as accepted.
func EncodeStored(s Stored) ([]byte, error) {
	// Written by hand: encoding/json would re-scan and compact the event,
	// which parsing already did; this is on the path of every 202.
	if len(s.Event) == 0 || s.Event[0] != '{' {
		return nil, errors.New("encode stored event: the event is not a JSON object")
	}
	api, err := json.Marshal(s.API)
	if err != nil {
		return nil, fmt.Errorf("encode stored event: %w", err)
	}
	b := make([]byte, 0, len(s.Event)+80)
	b = append(b, `{"api":`...)
	b = append(b, api...)
	b = append(b, `,"received_at":"`...)
	b = s.ReceivedAt.AppendFormat(b, time.RFC3339Nano)
	b = append(b, `","event":`...)
	b = append(b, s.Event...)
	return append(b, '}'), nil
}

// DecodeStored decodes a queue payload written by EncodeStored.
func DecodeStored(b []byte) (Stored, error) {
	var s Stored
	if err := json.Unmarshal(b, &s); err != nil {
		return Stored{}, fmt.Errorf("decode stored event: %w", err)
	}
	if s.API != APIv2 && s.API != APIv1 && s.API != APIChange {
		return Stored{}, fmt.Errorf("decode stored event: unknown api %q", s.API)
	}
	if len(s.Event) == 0 || s.Event[0] != '{' {
		return Stored{}, errors.New("decode stored event: the event is not a JSON object")
	}
	return s, nil
}

// ParseV2 validates a PagerDuty Events API v2 body. It returns every problem
// found, in PagerDuty's words, or the accepted event.
func ParseV2(body []byte) (Accepted, []string) {
	obj, errs := parseBody(body)
	if errs != nil {
		return Accepted{}, errs
	}
	return acceptV2(obj)
}

// ParseV1 validates a PagerDuty Events API v1 body.
func ParseV1(body []byte) (Accepted, []string) {
	obj, errs := parseBody(body)
	if errs != nil {
		return Accepted{}, errs
	}
	return acceptV1(obj)
}

// ParseSend validates the body of POST /v1/send (a SendRequest).
func ParseSend(body []byte) (Accepted, []string) {
	obj, errs := parseBody(body)
	if errs != nil {
		return Accepted{}, errs
	}
	var c checker
	version := c.str(obj, "", "api_version")
	raw, ok := obj.get("event")
	switch {
	case !ok:
		c.add("'event' is missing or blank")
	case raw[0] != '{':
		c.add("'event' is invalid (must be a JSON object)")
	}
	switch version {
	case "", APIv2, APIv1, APIChange:
	default:
		c.add("'api_version' is invalid (must be one of v2, v1, change)")
	}
	if c.errs != nil {
		return Accepted{}, c.errs
	}
	event, err := decodeObject(raw)
	if err != nil {
		// Unreachable for a valid body; kept so that a bug shows as a 400.
		return Accepted{}, []string{"'event' is invalid: " + err.Error()}
	}
	switch version {
	case APIv1:
		return acceptV1(event)
	case APIChange:
		return acceptChange(event)
	}
	return acceptV2(event)
}

func acceptV2(obj *object) (Accepted, []string) {
	var c checker
	e := &Event{
		RoutingKey:  c.str(obj, "", "routing_key"),
		EventAction: c.str(obj, "", "event_action"),
		DedupKey:    c.str(obj, "", "dedup_key"),
		Client:      c.str(obj, "", "client"),
		ClientURL:   c.str(obj, "", "client_url"),
	}
	c.images(obj, &e.Images)
	c.links(obj, &e.Links)
	c.key("routing_key", e.RoutingKey, "Length of 'routing_key' is incorrect (should be 32 characters)")
	c.action("event_action", e.EventAction)
	c.dedup("dedup_key", e.DedupKey, e.EventAction)

	if e.EventAction == ActionTrigger {
		// PagerDuty ignores the payload of acknowledge and resolve, so only a
		// trigger's payload is checked.
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
			e.Payload = c.payload(p)
		}
	}
	if c.errs != nil {
		return Accepted{}, c.errs
	}
	event, err := fillDedupKey(obj, "dedup_key", &e.DedupKey, e.EventAction)
	if err != nil {
		return Accepted{}, []string{err.Error()}
	}
	return Accepted{API: APIv2, Key: e.RoutingKey, DedupKey: e.DedupKey, Action: e.EventAction, Event: event, V2: e}, nil
}

func (c *checker) payload(p *object) *Payload {
	const at = "payload."
	out := &Payload{
		Summary:   c.str(p, at, "summary"),
		Source:    c.str(p, at, "source"),
		Severity:  c.str(p, at, "severity"),
		Timestamp: c.str(p, at, "timestamp"),
		Component: c.str(p, at, "component"),
		Group:     c.str(p, at, "group"),
		Class:     c.str(p, at, "class"),
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
	if blank(out.Source) {
		c.missing(at + "source")
	}
	switch out.Severity {
	case "critical", "error", "warning", "info":
	case "":
		c.missing(at + "severity")
	default:
		c.add("'payload.severity' is invalid (must be one of critical, error, warning, info)")
	}
	c.timestamp(out.Timestamp)
	return out
}

func acceptV1(obj *object) (Accepted, []string) {
	var c checker
	e := &V1Event{
		ServiceKey:  c.str(obj, "", "service_key"),
		EventType:   c.str(obj, "", "event_type"),
		IncidentKey: c.str(obj, "", "incident_key"),
		Description: c.str(obj, "", "description"),
		Client:      c.str(obj, "", "client"),
		ClientURL:   c.str(obj, "", "client_url"),
	}
	if raw, ok := obj.get("details"); ok {
		e.Details = anyValue(raw)
	}
	_ = c.decode(obj, "contexts", &e.Contexts, "must be a list of objects with 'type', 'href', 'src', 'text', 'alt'")
	c.key("service_key", e.ServiceKey, "Service key is the wrong length (should be 32 characters)")
	c.action("event_type", e.EventType)
	c.dedup("incident_key", e.IncidentKey, e.EventType)
	switch {
	case e.EventType == ActionTrigger && blank(e.Description):
		c.missing("description")
	case utf8.RuneCountInString(e.Description) > MaxSummaryChars:
		c.add(fmt.Sprintf("Length of 'description' is too long (should be at most %d characters)", MaxSummaryChars))
	}
	if c.errs != nil {
		return Accepted{}, c.errs
	}
	event, err := fillDedupKey(obj, "incident_key", &e.IncidentKey, e.EventType)
	if err != nil {
		return Accepted{}, []string{err.Error()}
	}
	return Accepted{API: APIv1, Key: e.ServiceKey, DedupKey: e.IncidentKey, Action: e.EventType, Event: event, V1: e}, nil
}

// anyValue decodes free-form details. UseNumber keeps large integers exact
// for whoever reads the value; raw is valid JSON, so decoding cannot fail.
func anyValue(raw json.RawMessage) any {
	var v any
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	_ = dec.Decode(&v)
	return v
}

// timestampLayouts are the ISO 8601 forms accepted for payload.timestamp.
// time.Parse accepts fractional seconds after the seconds field even when the
// layout has none.
var timestampLayouts = []string{
	time.RFC3339,               // 2015-07-17T08:42:58.315Z, +00:00
	"2006-01-02T15:04:05Z0700", // +0000, as in PagerDuty's own examples
	"2006-01-02T15:04:05Z07",   // +00
	"2006-01-02T15:04Z07:00",   // no seconds
	"2006-01-02T15:04Z0700",    // no seconds, +0000
	"20060102T150405Z0700",     // ISO 8601 basic format
}

// ParseTimestamp parses a payload.timestamp. A time zone is required: without
// one the instant is ambiguous.
func ParseTimestamp(s string) (time.Time, error) {
	for _, layout := range timestampLayouts {
		if t, err := time.Parse(layout, s); err == nil {
			return t, nil
		}
	}
	return time.Time{}, fmt.Errorf("timestamp %q is not an ISO 8601 date and time with a time zone", s)
}

// NewDedupKey returns a random dedup key of 32 hex characters.
func NewDedupKey() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (it crashes the program instead)
	return hex.EncodeToString(b[:])
}

// fillDedupKey returns the event to store: the object as sent, with a fresh
// dedup key when a trigger has none. The client is told that key, and the
// same key goes upstream, so a later acknowledge or resolve matches it.
func fillDedupKey(obj *object, name string, key *string, action string) (json.RawMessage, error) {
	if !blank(*key) || action != ActionTrigger {
		return obj.encode()
	}
	*key = NewDedupKey()
	v, _ := json.Marshal(*key) // a hex string always marshals
	obj.set(name, v)
	return obj.encode()
}

// checker collects every problem of an event, as PagerDuty lists them all.
type checker struct {
	errs []string
	// wrongType holds the fields already reported as having the wrong JSON
	// type, so that they are not also reported as missing.
	wrongType map[string]bool
}

func (c *checker) add(msg string) { c.errs = append(c.errs, msg) }

func (c *checker) missing(path string) {
	if !c.wrongType[path] {
		c.add(fmt.Sprintf("'%s' is missing or blank", path))
	}
}

// str reads an optional string member; null counts as absent. prefix is the
// path of obj in the event, for messages ("payload.").
func (c *checker) str(obj *object, prefix, name string) string {
	raw, ok := obj.get(name)
	if !ok {
		return ""
	}
	// Most strings need no unescaping: take them as they are, sparing a
	// json.Unmarshal (a validation pass and an allocation) per field.
	if len(raw) >= 2 && raw[0] == '"' && bytes.IndexByte(raw, '\\') < 0 {
		return string(raw[1 : len(raw)-1])
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		if c.wrongType == nil {
			c.wrongType = map[string]bool{}
		}
		c.wrongType[prefix+name] = true
		c.add(fmt.Sprintf("'%s%s' is invalid (must be a string)", prefix, name))
		return ""
	}
	return s
}

// images checks images[]: src is required and, as PagerDuty shows only
// images served over HTTPS, must be an https URL.
func (c *checker) images(obj *object, out *[]Image) {
	if !c.decode(obj, "images", out, "must be a list of objects with 'src', 'href', 'alt'") {
		return
	}
	for i, im := range *out {
		switch {
		case blank(im.Src):
			c.add(fmt.Sprintf("'images[%d].src' is missing or blank", i))
		case !isHTTPS(im.Src):
			c.add(fmt.Sprintf("'images[%d].src' is invalid (must be an https:// URL: PagerDuty shows only images served over HTTPS)", i))
		}
	}
}

// links checks links[]: href is required.
func (c *checker) links(obj *object, out *[]Link) {
	if !c.decode(obj, "links", out, "must be a list of objects with 'href', 'text'") {
		return
	}
	for i, l := range *out {
		if blank(l.Href) {
			c.add(fmt.Sprintf("'links[%d].href' is missing or blank", i))
		}
	}
}

func isHTTPS(raw string) bool {
	u, err := url.Parse(raw)
	return err == nil && strings.EqualFold(u.Scheme, "https") && u.Host != ""
}

// decode reads an optional member into v; false when it is absent or has
// the wrong shape (reported).
func (c *checker) decode(obj *object, name string, v any, must string) bool {
	raw, ok := obj.get(name)
	if !ok {
		return false
	}
	if err := json.Unmarshal(raw, v); err != nil {
		c.add(fmt.Sprintf("'%s' is invalid (%s)", name, must))
		return false
	}
	return true
}

func (c *checker) key(name, v, wrongLength string) {
	switch {
	case blank(v):
		c.missing(name)
	case utf8.RuneCountInString(v) != KeyLength:
		c.add(wrongLength)
	default:
		if msg := keyCharProblem(name, v); msg != "" {
			c.add(msg)
		}
	}
}

// keyCharProblem refuses what PagerDuty never issues in an integration key
// and what the queue or `courier retry -k` could not address: anything but
// printable ASCII, spaces and "/" (a queue key's separator).
func keyCharProblem(name, v string) string {
	for i, r := range v {
		if r > ' ' && r < 0x7f && r != '/' {
			continue
		}
		var what string
		switch {
		case r == '/':
			what = `"/"`
		case r == ' ':
			what = "a space"
		case r < ' ' || r == 0x7f:
			what = fmt.Sprintf("the control character %U", r)
		default:
			what = fmt.Sprintf("the non-ASCII character %U", r)
		}
		return fmt.Sprintf("'%s' contains %s at byte %d (must be printable ASCII characters without spaces or \"/\")", name, what, i)
	}
	return ""
}

func (c *checker) action(name, v string) {
	switch v {
	case ActionTrigger, ActionAcknowledge, ActionResolve:
	case "":
		c.missing(name)
	default:
		c.add(fmt.Sprintf("'%s' is invalid (must be one of trigger, acknowledge, resolve)", name))
	}
}

func (c *checker) dedup(name, v, action string) {
	switch {
	case blank(v) && (action == ActionAcknowledge || action == ActionResolve):
		if !c.wrongType[name] {
			c.add(fmt.Sprintf("'%s' is missing or blank (required for %s)", name, action))
		}
	case utf8.RuneCountInString(v) > MaxDedupKeyChars:
		c.add(fmt.Sprintf("Length of '%s' is too long (should be at most %d characters)", name, MaxDedupKeyChars))
	}
}

func blank(s string) bool { return strings.TrimSpace(s) == "" }

// parseBody checks that body is one JSON object and splits it into members.
func parseBody(body []byte) (*object, []string) {
	if !utf8.Valid(body) {
		return nil, []string{"body is not valid JSON: it is not UTF-8"}
	}
	if len(bytes.TrimSpace(body)) == 0 {
		return nil, []string{"body is empty (send one event as a JSON object)"}
	}
	if !json.Valid(body) {
		var v any
		err := json.Unmarshal(body, &v)
		var syn *json.SyntaxError
		if errors.As(err, &syn) {
			err = fmt.Errorf("%w (at byte %d)", err, syn.Offset)
		}
		return nil, []string{"body is not valid JSON: " + err.Error()}
	}
	var buf bytes.Buffer
	_ = json.Compact(&buf, body) // body is valid JSON
	if b := buf.Bytes(); len(b) == 0 || b[0] != '{' {
		return nil, []string{"body is not a JSON object (send one event as {...})"}
	}
	obj, err := decodeObject(buf.Bytes())
	if err != nil {
		return nil, []string{"body is not valid JSON: " + err.Error()}
	}
	return obj, nil
}

// object is a JSON object's members in order. Lookups are case-sensitive,
// as PagerDuty's are (encoding/json's struct decoding is not), so that what
// is accepted here is what PagerDuty accepts.
type object struct {
	names  []string
	values map[string]json.RawMessage
	raw    json.RawMessage // the compact object; nil once it must be rebuilt
}

// decodeObject splits a compact JSON object. A repeated name keeps its last
// value (as encoding/json and most parsers do) and the object is rebuilt
// without the repeat, so that upstream cannot read it differently.
//
// raw is always compact, valid JSON here (parseBody validated and compacted
// the body, and members of it are too), so a byte scanner splits it:
// encoding/json's token decoder cost ~190 allocations and most of the CPU
// of accepting an event.
func decodeObject(raw json.RawMessage) (*object, error) {
	n := len(raw)
	if n < 2 || raw[0] != '{' || raw[n-1] != '}' {
		return nil, errors.New("not a JSON object")
	}
	o := &object{values: make(map[string]json.RawMessage, 8), raw: raw}
	for i := 1; i < n-1; {
		if raw[i] != '"' {
			return nil, errors.New("malformed JSON object")
		}
		end := scanString(raw, i)
		var name string
		if bytes.IndexByte(raw[i:end], '\\') >= 0 {
			if err := json.Unmarshal(raw[i:end], &name); err != nil {
				return nil, err
			}
		} else {
			name = string(raw[i+1 : end-1])
		}
		if end >= n-1 || raw[end] != ':' {
			return nil, errors.New("malformed JSON object")
		}
		vend, err := scanValue(raw, end+1)
		if err != nil {
			return nil, err
		}
		v := raw[end+1 : vend]
		if _, dup := o.values[name]; dup {
			o.raw = nil
		} else {
			o.names = append(o.names, name)
		}
		o.values[name] = v
		i = vend
		if i < n-1 {
			if raw[i] != ',' {
				return nil, errors.New("malformed JSON object")
			}
			i++
		}
	}
	return o, nil
}

// scanString returns the index just past the string starting at b[i].
func scanString(b []byte, i int) int {
	for j := i + 1; j < len(b); j++ {
		switch b[j] {
		case '\\':
			j++
		case '"':
			return j + 1
		}
	}
	return len(b)
}

// scanValue returns the index just past the compact JSON value at b[i].
func scanValue(b []byte, i int) (int, error) {
	if i >= len(b) {
		return 0, errors.New("malformed JSON object")
	}
	switch b[i] {
	case '"':
		return scanString(b, i), nil
	case '{', '[':
		depth := 0
		for j := i; j < len(b); j++ {
			switch b[j] {
			case '"':
				j = scanString(b, j) - 1
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return j + 1, nil
				}
			}
		}
		return 0, errors.New("malformed JSON object")
	}
	j := i
	for j < len(b) && b[j] != ',' && b[j] != '}' && b[j] != ']' {
		j++
	}
	return j, nil
}

// get returns a member's value; null counts as absent, as it does for
// PagerDuty.
func (o *object) get(name string) (json.RawMessage, bool) {
	v, ok := o.values[name]
	if !ok || string(v) == "null" {
		return nil, false
	}
	return v, true
}

func (o *object) set(name string, v json.RawMessage) {
	if _, ok := o.values[name]; !ok {
		o.names = append(o.names, name)
	}
	o.values[name] = v
	o.raw = nil
}

func (o *object) encode() (json.RawMessage, error) {
	if o.raw != nil {
		return o.raw, nil
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	buf.WriteByte('{')
	for i, name := range o.names {
		if i > 0 {
			buf.WriteByte(',')
		}
		if err := enc.Encode(name); err != nil {
			return nil, err
		}
		buf.Truncate(buf.Len() - 1) // Encode's newline
		buf.WriteByte(':')
		buf.Write(o.values[name])
	}
	buf.WriteByte('}')
	return buf.Bytes(), nil
}
