// Package version holds keel's version and the etcd versions it reports.
package version

// Version is keel's own version. It is overridden at build time with
// -ldflags "-X github.com/keeldb/keel/version.Version=...".
var Version = "0.1.0-dev"

// GitSHA is the commit keel was built from, set at build time.
var GitSHA = "Not provided (use make build)"

const (
	// Etcd is the etcd server version whose API keel implements and reports
	// wherever etcd reports its own version (Maintenance.Status, /version),
	// so that clients which check versions treat keel as that etcd.
	Etcd = "3.7.3"
	// Cluster is the cluster version reported under /version.
	Cluster = "3.7.0"
	// Storage is the storage schema version etcd reports; keel reports the
	// one of the etcd version it implements.
	Storage = "3.7.0"
)
