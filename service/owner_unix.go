//go:build unix

package service

import (
	"os"
	"os/user"
	"strconv"
	"syscall"
)

// DefaultUser is the user the service should run as for root: the owner of
// the root folder when that is not root (a root under a home folder, made
// by `courier enroll` as that user), because the unit keeps no capability
// with which root could read another user's private files. It is "" (run
// as root) when the folder does not exist, belongs to root, or its owner
// has no name.
func DefaultUser(root string) string {
	fi, err := os.Stat(root)
	if err != nil {
		return ""
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok || st.Uid == 0 {
		return ""
	}
	u, err := user.LookupId(strconv.FormatUint(uint64(st.Uid), 10))
	if err != nil || !userName.MatchString(u.Username) {
		return ""
	}
	return u.Username
}

// chownToUser gives path to name and its primary group.
func chownToUser(path, name string) error {
	u, err := user.Lookup(name)
	if err != nil {
		return err
	}
	uid, err := strconv.Atoi(u.Uid)
	if err != nil {
		return err
	}
	gid, err := strconv.Atoi(u.Gid)
	if err != nil {
		return err
	}
	return os.Chown(path, uid, gid)
}
