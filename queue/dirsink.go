package queue

import (
	"bufio"
	"bytes"
	"context"
	"courier/internal/atomicfile"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// DirSink is the local sink: it writes each batch of a key to its own
// NDJSON file under Dir, named by the batch's first and last seq, so that a
// batch delivered again after a crash overwrites its own file rather than
// adding a second copy. Each line is the stored record with "seq" put in
// front, which is the upload envelope of PROTOCOL.md §1.
//
// Files go to Dir/<key without its "export/" prefix>/.
type DirSink struct {
	Dir string
}

// Deliver writes the batch to a temporary file, syncs it and renames it
// into place, so a reader never sees half a batch.
func (s DirSink) Deliver(_ context.Context, key string, batch []Message) error {
	name := strings.TrimPrefix(key, "export/")
	if name == "" || name == "." || name == ".." || strings.ContainsAny(name, `/\`) {
		return Permanent(fmt.Errorf("routing key %q does not name a folder under %s", key, s.Dir))
	}
	dir := filepath.Join(s.Dir, name)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	final := filepath.Join(dir, fmt.Sprintf("%020d-%020d.ndjson", batch[0].Seq, batch[len(batch)-1].Seq))
	tmp, err := os.CreateTemp(dir, ".batch-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	w := bufio.NewWriterSize(tmp, 64<<10)
	for _, m := range batch {
		line, err := WithSeq(m.Seq, m.Payload)
		if err != nil {
			_ = tmp.Close()
			return Permanent(fmt.Errorf("record %d of %s: %w", m.Seq, key, err))
		}
		w.Write(line)
		w.WriteByte('\n')
	}
	if err := w.Flush(); err != nil {
		_ = tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		_ = tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), final); err != nil {
		return err
	}
	// The batch is settled (deleted from the queue) once this returns, so
	// the rename itself must be on disk first.
	return atomicfile.SyncDir(dir)
}

// WithSeq puts "seq":N in front of a stored record, which makes the upload
// envelope of PROTOCOL.md §1 that every sink writes: `{"a":1}` becomes
// `{"seq":7,"a":1}` and `{}` or `{ }` become `{"seq":7}`. A payload holding
// a newline (indented JSON) is compacted first: a record must be one
// NDJSON line.
func WithSeq(seq uint64, payload []byte) ([]byte, error) {
	if bytes.IndexByte(payload, '\n') >= 0 {
		var buf bytes.Buffer
		if err := json.Compact(&buf, payload); err != nil {
			return nil, fmt.Errorf("not JSON: %w", err)
		}
		payload = buf.Bytes()
	}
	if len(payload) < 2 || payload[0] != '{' {
		return nil, errors.New("not a JSON object")
	}
	line := make([]byte, 0, len(payload)+28)
	line = append(line, `{"seq":`...)
	line = strconv.AppendUint(line, seq, 10)
	rest := payload[1:]
	if trimmed := bytes.TrimLeft(rest, " \t\r"); len(trimmed) > 0 && trimmed[0] == '}' {
		rest = trimmed
	} else {
		line = append(line, ',')
	}
	return append(line, rest...), nil
}
