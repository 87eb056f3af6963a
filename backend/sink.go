package backend

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"courier/internal/redact"
	"courier/queue"
)

// UnauthorizedRetry is how long delivery waits after the backend refused
// the API key (401) before it tries again: long enough not to hammer a
// backend that will keep refusing, short enough to resume soon after the
// key is restored.
const UnauthorizedRetry = 30 * time.Second

// Sink returns the durable queue's sink for everything bound for the
// backend.
//
// Under ResultsKey each message is a ResultMessage (EncodeResult), posted to
// /commands/{id}/result one by one; the backend treats a repeat as a no-op,
// so a batch cut short by a retryable error is simply sent again. A result
// the backend refuses for good (4xx) does not stop the others: the rest of
// the batch is still posted, and then the batch is returned as
// queue.Permanent naming the refused command ids (it is kept as failed;
// `courier retry` re-sends it, and the accepted ones are no-ops).
//
// Every other key (export/<id>, onboard/<command>, events/<routing key>) is
// one POST /uploads per batch: each line is the stored payload (a JSON
// object) with "seq":N put in front, as queue.DirSink writes it; X-Batch-Id
// is BatchID(key, store incarnation, first seq, last seq); X-Command-Id is the top-level
// "command" string of the batch's first payload, left out when it has none.
//
// Errors map onto the queue's: 413 → queue.ErrTooLarge (wrapped; the queue
// halves the batch), other 4xx → queue.Permanent, 401 → a
// *queue.RetryAfterError of UnauthorizedRetry (nothing is dropped; the
// Client logs why, once a minute), 429/503 with Retry-After → a
// *queue.RetryAfterError of that long, 5xx and network errors → a plain
// error, which the queue retries with backoff.
func (c *Client) Sink() queue.Sink { return sink{c: c} }

type sink struct{ c *Client }

func (s sink) Deliver(ctx context.Context, key string, batch []queue.Message) error {
	if len(batch) == 0 {
		return nil
	}
	if key == ResultsKey {
		return s.results(ctx, batch)
	}
	return s.upload(ctx, key, batch)
}

func (s sink) upload(ctx context.Context, key string, batch []queue.Message) error {
	lines := make([][]byte, len(batch))
	for i, m := range batch {
		line, err := queue.WithSeq(m.Seq, m.Payload)
		if err != nil {
			return queue.Permanent(fmt.Errorf("record %d of %s: %w", m.Seq, logKey(key), err))
		}
		lines[i] = line
	}
	first, last := batch[0].Seq, batch[len(batch)-1].Seq
	err := s.c.Upload(ctx, key, BatchID(key, batch[0].Store, first, last), commandOf(batch[0].Payload), lines)
	if err == nil {
		s.c.log.Debug().Str("routing_key", logKey(key)).Uint64("first", first).Uint64("last", last).Msg("batch uploaded")
	}
	return queueError(err)
}

func (s sink) results(ctx context.Context, batch []queue.Message) error {
	var refused []string
	var firstRefusal error
	refuse := func(what string, err error) {
		refused = append(refused, what)
		if firstRefusal == nil {
			firstRefusal = err
		}
	}
	for _, m := range batch {
		var rm struct {
			CommandID string          `json:"command_id"`
			Result    json.RawMessage `json:"result"`
		}
		if err := json.Unmarshal(m.Payload, &rm); err != nil || rm.CommandID == "" || !isObject(rm.Result) {
			refuse("message "+strconv.FormatUint(m.Seq, 10), fmt.Errorf("message %d under %s is not a result message (command_id and result)", m.Seq, ResultsKey))
			continue
		}
		err := s.c.do(ctx, call{method: http.MethodPost, path: commandPath(rm.CommandID, "result"),
			body: rm.Result, contentType: "application/json"}, nil)
		if err == nil {
			s.c.log.Debug().Str("command", rm.CommandID).Msg("result delivered")
			continue
		}
		if k := KindOf(err); k == Permanent || k == TooLarge {
			refuse(rm.CommandID, err)
			continue
		}
		// Retryable or unauthorized: the batch is sent again later; what
		// was accepted already is a no-op then.
		return queueError(err)
	}
	if len(refused) > 0 {
		return queue.Permanent(fmt.Errorf("the backend refused %d of %d results (%s): %w",
			len(refused), len(batch), strings.Join(refused, ", "), firstRefusal))
	}
	return nil
}

// queueError maps an error of this package onto the queue's classification.
func queueError(err error) error {
	if err == nil {
		return nil
	}
	var e *Error
	if !errors.As(err, &e) {
		return err
	}
	switch e.Kind {
	case TooLarge:
		return fmt.Errorf("%w: %w", queue.ErrTooLarge, err)
	case Permanent:
		return queue.Permanent(err)
	case Unauthorized:
		return &queue.RetryAfterError{After: UnauthorizedRetry, Err: err}
	}
	if e.RetryAfter > 0 {
		return &queue.RetryAfterError{After: e.RetryAfter, Err: err}
	}
	return err
}

// BatchID is an upload's idempotency key:
// "<routing key>:<store incarnation>:<first>-<last>". The incarnation keeps
// ids unique when the store is created anew and seqs start from 1 again.
func BatchID(key, store string, first, last uint64) string {
	return key + ":" + store + ":" + strconv.FormatUint(first, 10) + "-" + strconv.FormatUint(last, 10)
}

// logKey is a routing key fit for logs and error messages: the routing
// key inside an events/ key is a PagerDuty integration key, which lets
// anyone who holds it post events, so it is redacted as everywhere else.
func logKey(key string) string { return redact.QueueKey(key) }

// commandOf is the top-level "command" string of a stored record, or "".
func commandOf(payload []byte) string {
	var v struct {
		Command string `json:"command"`
	}
	_ = json.Unmarshal(payload, &v) // a record without one (or not a string) has none
	return v.Command
}

func isObject(raw json.RawMessage) bool {
	raw = bytes.TrimSpace(raw)
	return len(raw) >= 2 && raw[0] == '{'
}
