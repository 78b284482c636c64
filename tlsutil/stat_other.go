//go:build !linux

package tlsutil

import "io/fs"

// fileIdentity is empty where the inode and change time are not read: the
// reload stamp is then the modification time and size only.
func fileIdentity(fs.FileInfo) string { return "" }
