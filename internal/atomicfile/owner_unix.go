//go:build unix

package atomicfile

import (
	"errors"
	"io/fs"
	"os"
	"syscall"
)

// keepOwner gives tmp the owner and group of the file at path, when there
// is one and they differ from tmp's. Only root can give a file away; for
// anyone else a file they can replace is one they already own, or one in
// a folder they own, where keeping the old owner is not possible and not
// expected.
func keepOwner(tmp *os.File, path string) error {
	old, err := os.Stat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	oldSt, ok := old.Sys().(*syscall.Stat_t)
	if !ok {
		return nil
	}
	cur, err := tmp.Stat()
	if err != nil {
		return err
	}
	curSt, ok := cur.Sys().(*syscall.Stat_t)
	if !ok || (curSt.Uid == oldSt.Uid && curSt.Gid == oldSt.Gid) {
		return nil
	}
	if os.Geteuid() != 0 {
		return nil
	}
	return tmp.Chown(int(oldSt.Uid), int(oldSt.Gid))
}
