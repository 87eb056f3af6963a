package queue

import (
	"sync"
	"syscall"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// smallFS is a filesystem of a fixed capacity over Pebble's MemFS: a write
// that would take it past the capacity fails with ENOSPC, as a real full
// disk does, and statfs (GetDiskUsage) reports what is left. It counts
// file sizes, so removing or truncating a file gives its space back.
type smallFS struct {
	vfs.FS
	mu    sync.Mutex
	cap   int64
	used  int64
	sizes map[string]int64
}

func newSmallFS(capacity int64) *smallFS {
	return &smallFS{FS: vfs.NewMem(), cap: capacity, sizes: map[string]int64{}}
}

// setCapacity changes the capacity: an operator freeing space elsewhere on
// the filesystem, or filling it.
func (s *smallFS) setCapacity(n int64) {
	s.mu.Lock()
	s.cap = n
	s.mu.Unlock()
}

func (s *smallFS) free() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cap - s.used
}

func (s *smallFS) GetDiskUsage(string) (vfs.DiskUsage, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	avail := max(s.cap-s.used, 0)
	return vfs.DiskUsage{AvailBytes: uint64(avail), TotalBytes: uint64(s.cap), UsedBytes: uint64(s.used)}, nil
}

func (s *smallFS) setSize(name string, n int64) {
	s.used += n - s.sizes[name]
	s.sizes[name] = n
}

func (s *smallFS) Create(name string, c vfs.DiskWriteCategory) (vfs.File, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f, err := s.FS.Create(name, c)
	if err != nil {
		return nil, err
	}
	s.setSize(name, 0)
	return &smallFile{File: f, fs: s, name: name}, nil
}

func (s *smallFS) OpenReadWrite(name string, c vfs.DiskWriteCategory, opts ...vfs.OpenOption) (vfs.File, error) {
	f, err := s.FS.OpenReadWrite(name, c, opts...)
	if err != nil {
		return nil, err
	}
	return &smallFile{File: f, fs: s, name: name}, nil
}

func (s *smallFS) ReuseForWrite(oldname, newname string, c vfs.DiskWriteCategory) (vfs.File, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f, err := s.FS.ReuseForWrite(oldname, newname, c)
	if err != nil {
		return nil, err
	}
	s.moved(oldname, newname)
	return &smallFile{File: f, fs: s, name: newname}, nil
}

func (s *smallFS) Remove(name string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.FS.Remove(name); err != nil {
		return err
	}
	s.setSize(name, 0)
	delete(s.sizes, name)
	return nil
}

func (s *smallFS) Rename(oldname, newname string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.FS.Rename(oldname, newname); err != nil {
		return err
	}
	s.moved(oldname, newname)
	return nil
}

func (s *smallFS) moved(oldname, newname string) {
	n := s.sizes[oldname]
	s.setSize(oldname, 0)
	delete(s.sizes, oldname)
	s.setSize(newname, n)
}

type smallFile struct {
	vfs.File
	fs   *smallFS
	name string
}

func (f *smallFile) write(n int, do func() (int, error)) (int, error) {
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	if f.fs.used+int64(n) > f.fs.cap {
		return 0, syscall.ENOSPC
	}
	w, err := do()
	if st, serr := f.File.Stat(); serr == nil && st.Size() > f.fs.sizes[f.name] {
		f.fs.setSize(f.name, st.Size())
	}
	return w, err
}

func (f *smallFile) Write(p []byte) (int, error) {
	return f.write(len(p), func() (int, error) { return f.File.Write(p) })
}

func (f *smallFile) WriteAt(p []byte, off int64) (int, error) {
	return f.write(len(p), func() (int, error) { return f.File.WriteAt(p, off) })
}
