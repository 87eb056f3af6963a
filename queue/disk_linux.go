package queue

import "golang.org/x/sys/unix"

// fallocate allocates n bytes to the file, extending it.
func fallocate(fd uintptr, n int64) error { return unix.Fallocate(int(fd), 0, 0, n) }
