package proc

import (
	"os"
	"path/filepath"
)

// ApparentSize is the total length of the regular files under dir (du
// --apparent-size), beside DiskUsage's allocated blocks: a file preallocated
// with fallocate counts in full in DiskUsage but only up to its length here,
// a sparse file the other way round.
func ApparentSize(dir string) (int64, error) {
	return sumFiles(dir, func(info os.FileInfo) int64 { return info.Size() })
}

// sumFiles adds up size over the regular files under dir.
func sumFiles(dir string, size func(os.FileInfo) int64) (int64, error) {
	var total int64
	err := filepath.WalkDir(dir, func(_ string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type().IsRegular() {
			info, err := d.Info()
			if err != nil {
				return err
			}
			total += size(info)
		}
		return nil
	})
	return total, err
}
