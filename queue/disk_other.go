//go:build !linux

package queue

import "errors"

// fallocate is Linux's; elsewhere the reserve is written out.
func fallocate(uintptr, int64) error { return errors.ErrUnsupported }
