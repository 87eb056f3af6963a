//go:build !unix

package service

import "errors"

// DefaultUser is "" where there are no Unix owners (and no systemd).
func DefaultUser(root string) string { return "" }

func chownToUser(path, name string) error { return errors.New("no Unix users here") }
