//go:build !unix

package git

import "os/exec"

// killGroupOnCancel keeps os/exec's default: kill git itself.
func killGroupOnCancel(*exec.Cmd) {}
