// Package atomicfile writes files so that a crash leaves either the old
// file or the new one, never a torn one: config.yaml (the only copy of the
// API key) and the systemd unit depend on it.
package atomicfile

import (
	"io/fs"
	"os"
	"path/filepath"
)

// Write replaces path with data: write a temporary file in the
// same folder (a rename is only atomic within one filesystem), fsync it,
// rename it over path, then fsync the folder so the rename itself survives
// a power cut. A file it replaces keeps its owner and group: root
// re-enrolling an agent whose service runs as another user (the packaged
// unit's User=courier) must not leave that user a config.yaml it cannot
// read.
func Write(path string, data []byte, perm fs.FileMode) (err error) {
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			_ = tmp.Close()
			_ = os.Remove(tmp.Name())
		}
	}()
	// CreateTemp already uses 0600; Chmod states the mode instead of relying
	// on that, and is not affected by the umask.
	if err = tmp.Chmod(perm); err != nil {
		return err
	}
	if err = keepOwner(tmp, path); err != nil {
		return err
	}
	if _, err = tmp.Write(data); err != nil {
		return err
	}
	if err = tmp.Sync(); err != nil {
		return err
	}
	if err = tmp.Close(); err != nil {
		return err
	}
	if err = os.Rename(tmp.Name(), path); err != nil {
		return err
	}
	return SyncDir(dir)
}

// SyncDir fsyncs a folder, which makes a rename or a new file in it durable.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer func() { _ = d.Close() }()
	return d.Sync()
}
