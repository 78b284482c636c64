package snapshot

// Source is a state to restore a member from, whatever it was read from: a
// keel snapshot file, a copy of a stopped keel member's data dir, or a
// snapshot or database file of real etcd (imported). Open chooses.
//
// A restore reads Info, then calls Records once, staging every record; it
// keeps what it staged only if Records returned nil, so a Source must
// return an error (wrapping ErrCorrupt for damaged input) rather than stop
// early with nil.
type Source interface {
	// Info describes the state. Fields the source cannot know before its
	// records are read are zero.
	Info() Info
	// Records calls fn once for every record of the state: a keel state key
	// (storage's namespaces for the key space, leases and auth; records of
	// other namespaces may be present and are the restore's to drop) and
	// its value. Keys come in any order, each at most once. fn must not
	// keep key or value after it returns. Records returns fn's first error,
	// or the source's.
	Records(fn func(key, value []byte) error) error
	// Close releases the source.
	Close() error
}
