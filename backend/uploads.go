package backend

import (
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"net/http"
	"sync"
)

// Upload headers (PROTOCOL.md §1, Uploads).
const (
	HeaderRoutingKey = "X-Routing-Key"
	HeaderBatchID    = "X-Batch-Id"
	HeaderCommandID  = "X-Command-Id"
)

// ContentTypeNDJSON is the Content-Type of uploads and logs; their bodies
// are gzip-compressed.
const ContentTypeNDJSON = "application/x-ndjson"

// Upload posts one batch of record envelopes (POST /uploads) as gzip
// NDJSON. Each line is one JSON object, without a trailing newline (one is
// added). batchID is the idempotency key, "<routing key>:<first seq>-<last
// seq>"; commandID is sent as X-Command-Id when not empty.
//
// A line containing a newline would split into two records; it is an
// error of Kind Permanent, as are empty routingKey, batchID or lines.
func (c *Client) Upload(ctx context.Context, routingKey, batchID, commandID string, lines [][]byte) error {
	const op = "POST " + APIPrefix + "/uploads"
	if routingKey == "" || batchID == "" {
		return &Error{Kind: Permanent, Op: op, Message: "an upload needs a routing key and a batch id"}
	}
	header := map[string]string{HeaderRoutingKey: routingKey, HeaderBatchID: batchID}
	if commandID != "" {
		header[HeaderCommandID] = commandID
	}
	return c.postNDJSON(ctx, op, "/uploads", header, lines)
}

// Logs posts a batch of the agent's own JSON log lines of one command
// (POST /logs) as gzip NDJSON, with X-Command-Id. Best effort: the caller
// bounds what it keeps while the backend is away.
func (c *Client) Logs(ctx context.Context, commandID string, lines [][]byte) error {
	const op = "POST " + APIPrefix + "/logs"
	if commandID == "" {
		return &Error{Kind: Permanent, Op: op, Message: "log lines need a command id"}
	}
	return c.postNDJSON(ctx, op, "/logs", map[string]string{HeaderCommandID: commandID}, lines)
}

func (c *Client) postNDJSON(ctx context.Context, op, path string, header map[string]string, lines [][]byte) error {
	if len(lines) == 0 {
		return &Error{Kind: Permanent, Op: op, Message: "nothing to send"}
	}
	body, err := gzipLines(lines)
	if err != nil {
		return &Error{Kind: Permanent, Op: op, Message: err.Error(), Err: err}
	}
	return c.do(ctx, call{
		method: http.MethodPost, path: path, body: body,
		contentType: ContentTypeNDJSON, gzipped: true, header: header,
	}, nil)
}

var gzipWriters = sync.Pool{New: func() any { return gzip.NewWriter(nil) }}

// gzipLines compresses lines as NDJSON, one line each.
func gzipLines(lines [][]byte) ([]byte, error) {
	size := 0
	for i, l := range lines {
		if len(l) == 0 {
			return nil, fmt.Errorf("line %d is empty", i+1)
		}
		if bytes.IndexByte(l, '\n') >= 0 {
			return nil, fmt.Errorf("line %d contains a newline, which would split it in two", i+1)
		}
		size += len(l) + 1
	}
	var buf bytes.Buffer
	buf.Grow(size/4 + 64)
	zw := gzipWriters.Get().(*gzip.Writer)
	defer gzipWriters.Put(zw)
	zw.Reset(&buf)
	for _, l := range lines {
		if _, err := zw.Write(l); err != nil {
			return nil, err
		}
		if _, err := zw.Write(newline); err != nil {
			return nil, err
		}
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

var newline = []byte{'\n'}
