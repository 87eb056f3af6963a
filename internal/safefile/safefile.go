// Package safefile reads small files named by configuration that arrives
// from elsewhere (a backend command's params): regular files only, bounded
// in size and time, so that a FIFO, a device or a huge file is an error
// naming the key and the file, never a hang or an exhausted memory.
package safefile

import (
	"errors"
	"fmt"
	"io"
	"os"
	"syscall"
	"time"
)

// Limits of Read when the caller passes zero.
const (
	DefaultMaxBytes = 16 << 20 // far above any CA bundle (the system one is ~200 KiB)
	DefaultTimeout  = 10 * time.Second
)

// Read returns the contents of the regular file at path. key names the
// setting the path came from (such as "ca_file") for the error.
func Read(key, path string, maxBytes int64, timeout time.Duration) ([]byte, error) {
	if maxBytes <= 0 {
		maxBytes = DefaultMaxBytes
	}
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	fail := func(format string, args ...any) error {
		return fmt.Errorf("%s: %s: %s", key, path, fmt.Sprintf(format, args...))
	}
	// O_NONBLOCK: opening a FIFO for reading would otherwise wait for a
	// writer forever. It does not change reads of a regular file.
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		var pe *os.PathError
		if errors.As(err, &pe) {
			err = pe.Err
		}
		return nil, fail("%v", err)
	}
	info, err := f.Stat()
	if err != nil {
		_ = f.Close()
		return nil, fail("%v", err)
	}
	if !info.Mode().IsRegular() {
		_ = f.Close()
		return nil, fail("not a regular file (%s); name a file", info.Mode().Type())
	}
	if info.Size() > maxBytes {
		_ = f.Close()
		return nil, fail("%d bytes, more than the %d allowed", info.Size(), maxBytes)
	}
	type result struct {
		b   []byte
		err error
	}
	done := make(chan result, 1)
	go func() {
		b, err := io.ReadAll(io.LimitReader(f, maxBytes+1))
		done <- result{b, err}
	}()
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case r := <-done:
		_ = f.Close()
		if r.err != nil {
			return nil, fail("%v", r.err)
		}
		if int64(len(r.b)) > maxBytes {
			return nil, fail("more than the %d bytes allowed", maxBytes)
		}
		return r.b, nil
	case <-t.C:
		// Closing makes the pending read return, so the goroutine ends.
		_ = f.Close()
		return nil, fail("not read within %s", timeout)
	}
}
