package tlsutil

import (
	"fmt"
	"io/fs"
	"syscall"
)

// fileIdentity is the device, inode and change time of fi, for the reload
// stamp.
func fileIdentity(fi fs.FileInfo) string {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return ""
	}
	return fmt.Sprintf(":%d:%d:%d.%d", st.Dev, st.Ino, st.Ctim.Sec, st.Ctim.Nsec)
}
