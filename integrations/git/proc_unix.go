//go:build unix

package git

import (
	"os/exec"
	"syscall"
)

// killGroupOnCancel runs git in its own process group and kills the whole
// group on cancellation, so its helpers (ssh, remote-https, index-pack)
// end with it.
func killGroupOnCancel(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
}
