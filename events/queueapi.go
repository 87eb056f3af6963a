package events

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"courier/internal/redact"
	"courier/queue"
)

// maxPurgeBodyBytes bounds the body of POST /v1/queue/purge.
const maxPurgeBodyBytes = 64 << 10

// ItemsResponse is the answer of GET /v1/queue/items. Next, when not empty,
// is the after= of the next page.
type ItemsResponse struct {
	Items []queue.Item `json:"items"`
	Next  string       `json:"next,omitempty"`
}

// ItemResponse is the answer of GET /v1/queue/item: the item and what is
// stored, as JSON when it is JSON (every event and record is), else in
// base64.
type ItemResponse struct {
	queue.Item
	Payload       json.RawMessage `json:"payload,omitempty"`
	PayloadBase64 []byte          `json:"payload_base64,omitempty"`
}

// PurgeRequest is the body of POST /v1/queue/purge. Exactly one of
// RoutingKey and All selects the keys; Seq (with a key) one dead letter;
// OlderThan ("36h", "7d") only those that failed longer ago.
type PurgeRequest struct {
	RoutingKey string  `json:"routing_key,omitempty"`
	All        bool    `json:"all,omitempty"`
	Seq        *uint64 `json:"seq,omitempty"`
	OlderThan  string  `json:"older_than,omitempty"`
}

// PurgeResponse says what a purge dropped.
type PurgeResponse struct {
	Dropped int           `json:"dropped"`
	Bytes   int64         `json:"bytes"`
	Keys    []PurgedCount `json:"keys"`
}

// PurgedCount is what a purge dropped of one key.
type PurgedCount struct {
	Key     string `json:"key"`
	Dropped int    `json:"dropped"`
}

// ParseAge reads a duration as Go writes it, or a whole number of days
// ("7d"), which is how dead letters' ages are thought of.
func ParseAge(s string) (time.Duration, error) {
	if d, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.ParseUint(d, 10, 16)
		if err != nil {
			return 0, fmt.Errorf("%q is not a number of days", s)
		}
		return time.Duration(n) * 24 * time.Hour, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		return 0, fmt.Errorf("%q is not a duration such as 36h or 7d", s)
	}
	return d, nil
}

// queueKeyParam resolves a routing_key parameter as retry does; "" stays "".
func (a *api) queueKeyParam(w http.ResponseWriter, r *http.Request, given string) (string, bool) {
	if given == "" {
		return "", true
	}
	k, code, err := a.resolveRetryKey(r, given)
	if err != nil {
		writeError(w, code, err.Error())
		return "", false
	}
	return k, true
}

// itemsError answers the queue's errors about what the request named.
func (a *api) itemsError(w http.ResponseWriter, key string, seq uint64, what string, err error) {
	// Redacted even for the token's holder: the caller knows what it
	// gave, and errors end up in terminals and logs.
	shown := redact.QueueKey(key)
	switch {
	case errors.Is(err, queue.ErrUnknownKey):
		writeError(w, http.StatusNotFound, fmt.Sprintf("no routing key in the queue matches %s; `courier status` lists them", shown))
	case errors.Is(err, queue.ErrNoItem):
		writeError(w, http.StatusNotFound, fmt.Sprintf("%s holds no item with seq %d; `courier queue ls -k KEY` lists them", shown, seq))
	default:
		a.queueError(w, what, err)
	}
}

func (a *api) items(w http.ResponseWriter, r *http.Request) {
	qv := r.URL.Query()
	query := queue.ItemQuery{State: qv.Get("state")}
	if query.State != "" && query.State != queue.StateFailed && query.State != queue.StatePending {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("state=%q: use failed or pending", query.State))
		return
	}
	if l := qv.Get("limit"); l != "" {
		n, err := strconv.Atoi(l)
		if err != nil || n < 1 || n > 1000 {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("limit=%q: a number from 1 to 1000", l))
			return
		}
		query.Limit = n
	}
	var ok bool
	if query.Key, ok = a.queueKeyParam(w, r, qv.Get("routing_key")); !ok {
		return
	}
	if after := qv.Get("after"); after != "" {
		i := strings.LastIndexByte(after, ':')
		seq, err := strconv.ParseUint(after[i+1:], 10, 64)
		if i <= 0 || err != nil {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("after=%q: pass the next of the previous page as it is", after))
			return
		}
		if query.AfterKey, ok = a.queueKeyParam(w, r, after[:i]); !ok {
			return
		}
		query.AfterSeq = seq
	}
	page, err := a.q.ListItems(query)
	if err != nil {
		if query.Key == "" || !errors.Is(err, queue.ErrUnknownKey) {
			a.queueError(w, "could not list the queue's items", err)
			return
		}
		a.itemsError(w, query.Key, 0, "", err)
		return
	}
	show := a.guard.showsKeys(r)
	resp := ItemsResponse{Items: page.Items}
	if resp.Items == nil {
		resp.Items = []queue.Item{}
	}
	if page.More {
		last := page.Items[len(page.Items)-1]
		resp.Next = last.Key + ":" + strconv.FormatUint(last.Seq, 10)
		if !show {
			resp.Next = redact.QueueKey(last.Key) + ":" + strconv.FormatUint(last.Seq, 10)
		}
	}
	if !show {
		for i := range resp.Items {
			resp.Items[i].Key = redact.QueueKey(resp.Items[i].Key)
		}
	}
	writeJSON(w, http.StatusOK, resp)
}

func (a *api) item(w http.ResponseWriter, r *http.Request) {
	qv := r.URL.Query()
	given := qv.Get("routing_key")
	seq, err := strconv.ParseUint(qv.Get("seq"), 10, 64)
	if given == "" || err != nil {
		writeError(w, http.StatusBadRequest, "give routing_key and seq (a number, as `courier queue ls` shows it)")
		return
	}
	key, ok := a.queueKeyParam(w, r, given)
	if !ok {
		return
	}
	it, err := a.q.Item(key, seq)
	if err != nil {
		a.itemsError(w, key, seq, "could not read the item", err)
		return
	}
	resp := ItemResponse{Item: it}
	if !a.guard.showsKeys(r) {
		resp.Key = redact.QueueKey(it.Key)
		it.Payload = RedactPayload(it.Payload)
	}
	if json.Valid(it.Payload) {
		resp.Payload = it.Payload
	} else {
		resp.PayloadBase64 = it.Payload
	}
	writeJSON(w, http.StatusOK, resp)
}

// RedactPayload replaces the routing (or service) key inside a stored event
// by its redacted form; anything else is returned as it is.
func RedactPayload(p []byte) []byte {
	st, err := DecodeStored(p)
	if err != nil {
		return p
	}
	var ev map[string]json.RawMessage
	if json.Unmarshal(st.Event, &ev) != nil {
		return p
	}
	changed := false
	for _, f := range []string{"routing_key", "service_key"} {
		var k string
		if json.Unmarshal(ev[f], &k) == nil && k != "" && !redact.IsRedacted(k) {
			ev[f], _ = json.Marshal(RedactKey(k))
			changed = true
		}
	}
	if !changed {
		return p
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if enc.Encode(ev) != nil {
		return p
	}
	st.Event = bytes.TrimSpace(buf.Bytes())
	out, err := EncodeStored(st)
	if err != nil {
		return p
	}
	return out
}

func (a *api) purge(w http.ResponseWriter, r *http.Request) {
	body, ok := a.readBody(w, r, maxPurgeBodyBytes)
	if !ok {
		return
	}
	var req PurgeRequest
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		writeError(w, http.StatusBadRequest, `body is not a purge request: `+err.Error()+`; send {"routing_key": "...", "seq": N, "older_than": "7d"} or {"all": true}`)
		return
	}
	switch {
	case req.RoutingKey == "" && !req.All:
		writeError(w, http.StatusBadRequest, `say which dead letters to drop: "routing_key", or "all": true for every key`)
		return
	case req.RoutingKey != "" && req.All:
		writeError(w, http.StatusBadRequest, `"routing_key" and "all" together: give one`)
		return
	case req.Seq != nil && req.All:
		writeError(w, http.StatusBadRequest, `"seq" needs its "routing_key", not "all"`)
		return
	}
	var p queue.Purge
	if req.Seq != nil {
		p.OneSeq, p.Seq = true, *req.Seq
	}
	if req.OlderThan != "" {
		d, err := ParseAge(req.OlderThan)
		if err != nil {
			writeError(w, http.StatusBadRequest, "older_than: "+err.Error())
			return
		}
		p.OlderThan = a.now().Add(-d)
	}
	if p.Key, ok = a.queueKeyParam(w, r, req.RoutingKey); !ok {
		return
	}
	res, err := a.q.Purge(r.Context(), p)
	if err != nil {
		a.itemsError(w, p.Key, p.Seq, "could not purge", err)
		return
	}
	show := a.guard.showsKeys(r)
	resp := PurgeResponse{Dropped: res.Dropped, Bytes: res.Bytes, Keys: []PurgedCount{}}
	for k, n := range res.ByKey {
		if !show {
			k = redact.QueueKey(k)
		}
		resp.Keys = append(resp.Keys, PurgedCount{Key: k, Dropped: n})
	}
	slices.SortFunc(resp.Keys, func(x, y PurgedCount) int { return strings.Compare(x.Key, y.Key) })
	writeJSON(w, http.StatusOK, resp)
}
