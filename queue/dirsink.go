package queue

import (
	"bufio"
	"context"
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
		if len(m.Payload) < 2 || m.Payload[0] != '{' {
			_ = tmp.Close()
			return Permanent(fmt.Errorf("record %d of %s is not a JSON object", m.Seq, key))
		}
		w.WriteString(`{"seq":`)
		w.WriteString(strconv.FormatUint(m.Seq, 10))
		if m.Payload[1] != '}' {
			w.WriteByte(',')
		}
		w.Write(m.Payload[1:])
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
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
