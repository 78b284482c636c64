package snapshot

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"runtime/debug"
	"time"

	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"
	"go.etcd.io/etcd/api/v3/authpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/keeldb/keel/auth"
	"github.com/keeldb/keel/lease"
	"github.com/keeldb/keel/mvcc"
)

// etcd's database (bbolt) layout, as etcd 3.7 writes it (docs/etcd.md).
var (
	etcdKeyBucket       = []byte("key")
	etcdMetaBucket      = []byte("meta")
	etcdLeaseBucket     = []byte("lease")
	etcdAlarmBucket     = []byte("alarm")
	etcdClusterBucket   = []byte("cluster")
	etcdMembersBucket   = []byte("members")
	etcdRemovedBucket   = []byte("members_removed")
	etcdAuthBucket      = []byte("auth")
	etcdAuthUsersBucket = []byte("authUsers")
	etcdAuthRolesBucket = []byte("authRoles")

	etcdScheduledCompact = []byte("scheduledCompactRev")
	etcdFinishedCompact  = []byte("finishedCompactRev")
	etcdConsistentIndex  = []byte("consistent_index")
	etcdStorageVersion   = []byte("storageVersion")
	etcdAuthEnabled      = []byte("authEnabled")
	etcdAuthRevision     = []byte("authRevision")
)

const (
	// etcdRevLen is the length of a revision key in etcd's "key" bucket:
	// main (8 bytes BE) '_' sub (8 bytes BE), then 't' for a tombstone.
	etcdRevLen  = 17
	etcdRevSep  = '_'
	etcdTombTag = 't'
)

// OpenEtcd opens a database file of real etcd (bbolt, etcd 3.5 to 3.7):
// a file `etcdctl snapshot save` wrote (with the sha256 trailer), or the
// member/snap/db file of a stopped member (without it). As etcdutl: a
// trailer is checked unless skipHashCheck; a file without one needs
// skipHashCheck (ErrMissingHash). The whole file is then checked (bbolt's
// consistency check and a decoding pass) before OpenEtcd returns, so
// Records fails only on a record keel cannot take.
//
// The returned Source yields keel's state records converted from etcd's:
// the key space with its history since etcd's compaction, the MVCC
// metadata, the leases with their attached keys, and auth. Membership,
// alarms, the cluster version and Raft metadata are not carried: a restore
// makes a new cluster.
func OpenEtcd(path string, skipHashCheck bool) (Source, error) { return openEtcd(path, skipHashCheck) }

// IsEtcdFile reports whether the file at path looks like an etcd database
// (bbolt's magic in its first meta page).
func IsEtcdFile(path string) (bool, error) {
	f, err := os.Open(path)
	if err != nil {
		return false, err
	}
	defer f.Close()
	b := make([]byte, 20)
	if _, err := io.ReadFull(f, b); err != nil {
		return false, nil
	}
	return binary.LittleEndian.Uint32(b[16:]) == boltMagic, nil
}

const boltMagic = 0xED0CDAED

func openEtcd(path string, skipHashCheck bool) (Source, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	hasHash := fi.Size()%align == trailerLen
	if !hasHash && !skipHashCheck {
		return nil, ErrMissingHash
	}
	if hasHash && !skipHashCheck {
		if err := checkEtcdHash(path, fi.Size()); err != nil {
			return nil, err
		}
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	err = checkBoltPages(f, fi.Size())
	f.Close()
	if err != nil {
		return nil, err
	}
	db, err := openBolt(path)
	if err != nil {
		return nil, err
	}
	s := &etcdSource{db: db}
	if err := guard(func() error { return s.check(fi.Size()) }); err != nil {
		db.Close()
		return nil, err
	}
	return s, nil
}

// checkEtcdHash compares the sha256 of the first size-32 bytes of the file
// with its last 32 bytes.
func checkEtcdHash(path string, size int64) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.CopyN(h, f, size-trailerLen); err != nil {
		return fmt.Errorf("snapshot: read %s: %w", path, err)
	}
	want := make([]byte, trailerLen)
	if _, err := io.ReadFull(f, want); err != nil {
		return fmt.Errorf("snapshot: read %s: %w", path, err)
	}
	if got := h.Sum(nil); !bytes.Equal(got, want) {
		return fmt.Errorf("%w: expected sha256 %v, got %v", ErrCorrupt, want, got)
	}
	return nil
}

// openBolt opens the file read-only. bbolt reads only the pages its meta
// page names, so a trailer after them is ignored. A database that a
// running etcd holds is refused after a short wait rather than blocking.
func openBolt(path string) (db *bolt.DB, err error) {
	err = guard(func() error {
		var oerr error
		db, oerr = bolt.Open(path, 0o400, &bolt.Options{ReadOnly: true, Timeout: 2 * time.Second})
		return oerr
	})
	switch {
	case errors.Is(err, bolterrors.ErrTimeout):
		return nil, fmt.Errorf("snapshot: %s is locked: is an etcd member running on it? Stop it or use a copy", path)
	case errors.Is(err, ErrCorrupt):
		return nil, err
	case err != nil:
		return nil, fmt.Errorf("%w: %s is not a readable etcd database: %v", ErrCorrupt, path, err)
	}
	return db, nil
}

// guard runs fn and turns a panic or a memory fault inside it (bbolt
// trusts the page structure it reads, and a damaged file can send it out
// of bounds) into an error wrapping ErrCorrupt.
func guard(fn func() error) (err error) {
	old := debug.SetPanicOnFault(true)
	defer func() {
		debug.SetPanicOnFault(old)
		if r := recover(); r != nil {
			err = fmt.Errorf("%w: the etcd database is damaged (%v)", ErrCorrupt, r)
		}
	}()
	return fn()
}

// etcdSource is an etcd database converted to keel's state records.
type etcdSource struct {
	db   *bolt.DB
	info Info

	// From the meta bucket.
	scheduled, finished       int64
	hasScheduled, hasFinished bool
	maxMain                   int64
}

func (s *etcdSource) Info() Info   { return s.info }
func (s *etcdSource) Close() error { return s.db.Close() }

// check makes sure the database lies within the file, then reads the
// whole file once as etcdutl's `snapshot status` does, checking that every
// record keel takes decodes, and fills in the Info. It runs under guard:
// bbolt's own Tx.Check is not used because it reads the pages on a
// goroutine of its own, where a damaged page would crash the process.
func (s *etcdSource) check(fileSize int64) error {
	return s.db.View(func(tx *bolt.Tx) error {
		if tx.Size() > fileSize {
			return fmt.Errorf("%w: truncated: the etcd database needs %d bytes, the file has %d", ErrCorrupt, tx.Size(), fileSize)
		}
		if tx.Bucket(etcdKeyBucket) == nil || tx.Bucket(etcdMetaBucket) == nil {
			return fmt.Errorf("%w: not an etcd v3 database (no %q or %q bucket)", ErrCorrupt, etcdKeyBucket, etcdMetaBucket)
		}
		st, err := etcdStatus(tx)
		if err != nil {
			return err
		}
		s.info = st
		meta := tx.Bucket(etcdMetaBucket)
		if s.scheduled, s.hasScheduled, err = etcdMetaRev(meta, etcdScheduledCompact); err != nil {
			return err
		}
		if s.finished, s.hasFinished, err = etcdMetaRev(meta, etcdFinishedCompact); err != nil {
			return err
		}
		if v := meta.Get(etcdConsistentIndex); len(v) == 8 {
			s.info.Applied = binary.BigEndian.Uint64(v)
		}
		s.info.CompactRevision = s.compacted()
		// A dry run of the conversion: every record decodes.
		return s.convert(tx, func(k, v []byte) error { return nil })
	})
}

// etcdStatus computes what etcdutl's `snapshot status` prints: HASH is a
// CRC-32C over every bucket's name and then its keys and values, in
// bbolt's order; REVISION the main revision of the last record of the
// "key" bucket; TOTAL KEYS the keys whose last record is not a tombstone;
// TOTAL SIZE bbolt's size of the database; VERSION the storage version.
func etcdStatus(tx *bolt.Tx) (Info, error) {
	var info Info
	h := crc32.New(castagnoli)
	live := make(map[string]struct{})
	c := tx.Cursor()
	for name, _ := c.First(); name != nil; name, _ = c.Next() {
		if int64(len(name)) > tx.Size() {
			return Info{}, fmt.Errorf("%w: a bucket name of %d bytes in a database of %d", ErrCorrupt, len(name), tx.Size())
		}
		b := tx.Bucket(name)
		if b == nil {
			return Info{}, fmt.Errorf("%w: %q is not a bucket", ErrCorrupt, name)
		}
		h.Write(name)
		isKey := bytes.Equal(name, etcdKeyBucket)
		var prev []byte
		err := b.ForEach(func(k, v []byte) error {
			// bbolt yields keys in strictly increasing order; a damaged
			// page structure that loops shows as a key out of order.
			if prev != nil && bytes.Compare(k, prev) <= 0 {
				return fmt.Errorf("%w: bucket %q: key %x out of order", ErrCorrupt, name, k)
			}
			// A record cannot be larger than the database holding it; a
			// damaged element header can claim gigabytes.
			if n := int64(len(k)) + int64(len(v)); n > tx.Size() {
				return fmt.Errorf("%w: bucket %q: a record of %d bytes in a database of %d", ErrCorrupt, name, n, tx.Size())
			}
			prev = append(prev[:0], k...)
			h.Write(k)
			h.Write(v)
			if !isKey {
				return nil
			}
			rev, tomb, err := parseEtcdRev(k)
			if err != nil {
				return err
			}
			info.Revision = rev.Main
			var kv mvccpb.KeyValue
			if err := proto.Unmarshal(v, &kv); err != nil {
				return fmt.Errorf("%w: revision %d: %v", ErrCorrupt, rev.Main, err)
			}
			if tomb {
				delete(live, string(kv.Key))
			} else {
				live[string(kv.Key)] = struct{}{}
			}
			return nil
		})
		if err != nil {
			return Info{}, err
		}
	}
	info.TotalKeys = int64(len(live))
	info.Hash = h.Sum32()
	info.Size = tx.Size()
	if meta := tx.Bucket(etcdMetaBucket); meta != nil {
		info.StorageVersion = string(meta.Get(etcdStorageVersion))
	}
	return info, nil
}

func parseEtcdRev(k []byte) (mvcc.Revision, bool, error) {
	if (len(k) != etcdRevLen && len(k) != etcdRevLen+1) || k[8] != etcdRevSep ||
		(len(k) == etcdRevLen+1 && k[etcdRevLen] != etcdTombTag) {
		return mvcc.Revision{}, false, fmt.Errorf("%w: malformed revision %x in the key bucket", ErrCorrupt, k)
	}
	r := mvcc.Revision{Main: int64(binary.BigEndian.Uint64(k)), Sub: int64(binary.BigEndian.Uint64(k[9:]))}
	if r.Main < 0 || r.Sub < 0 {
		return mvcc.Revision{}, false, fmt.Errorf("%w: revision %x out of range", ErrCorrupt, k)
	}
	return r, len(k) == etcdRevLen+1, nil
}

func etcdMetaRev(meta *bolt.Bucket, name []byte) (int64, bool, error) {
	v := meta.Get(name)
	if v == nil {
		return 0, false, nil
	}
	if len(v) < 8 {
		return 0, false, fmt.Errorf("%w: meta %s is malformed (%x)", ErrCorrupt, name, v)
	}
	return int64(binary.BigEndian.Uint64(v)), true, nil
}

// compacted is the compaction revision etcd starts with: the finished
// compaction, or a later scheduled one it resumes; -1 when never compacted.
func (s *etcdSource) compacted() int64 {
	c := int64(-1)
	if s.hasFinished {
		c = s.finished
	}
	if s.hasScheduled && s.scheduled > c {
		c = s.scheduled
	}
	return c
}

func (s *etcdSource) Records(fn func(key, value []byte) error) error {
	return s.db.View(func(tx *bolt.Tx) error { return s.convert(tx, fn) })
}

// convert turns the etcd database into keel's state records.
func (s *etcdSource) convert(tx *bolt.Tx, fn func(key, value []byte) error) error {
	leases, err := convertLeases(tx, fn)
	if err != nil {
		return err
	}
	if err := convertAuth(tx, fn); err != nil {
		return err
	}

	// The by-revision log is needed from the finished compaction on (keel
	// finishes a scheduled one from there), or from the start.
	compacted := s.compacted()
	logFrom := int64(0)
	if s.hasFinished {
		logFrom = s.finished
	}
	// leased holds the lease of the newest version of each key that has
	// one; etcd attaches keys to leases from the same.
	leased := make(map[string]int64)
	var prev mvcc.Revision
	first := true
	maxMain := int64(0)
	err = tx.Bucket(etcdKeyBucket).ForEach(func(k, v []byte) error {
		rev, tomb, err := parseEtcdRev(k)
		if err != nil {
			return err
		}
		if !first && (rev.Main < prev.Main || (rev.Main == prev.Main && rev.Sub <= prev.Sub)) {
			return fmt.Errorf("%w: revision %d_%d out of order", ErrCorrupt, rev.Main, rev.Sub)
		}
		first, prev, maxMain = false, rev, rev.Main
		var kv mvccpb.KeyValue
		if err := proto.Unmarshal(v, &kv); err != nil {
			return fmt.Errorf("%w: revision %d: %v", ErrCorrupt, rev.Main, err)
		}
		if len(kv.Key) == 0 {
			// A revision etcdutl restore --bump-revision wrote: it moves
			// the revision on and holds no key.
			return nil
		}
		if !tomb && kv.ModRevision != rev.Main {
			return fmt.Errorf("%w: the version at revision %d of %q says mod revision %d", ErrCorrupt, rev.Main, kv.Key, kv.ModRevision)
		}
		vk, vv := mvcc.VersionRecord(rev, &kv, tomb)
		if err := fn(vk, vv); err != nil {
			return err
		}
		if rev.Main >= logFrom {
			lk, lv := mvcc.LogRecord(rev, kv.Key, tomb)
			if err := fn(lk, lv); err != nil {
				return err
			}
		}
		if !tomb && kv.Lease != 0 {
			leased[string(kv.Key)] = kv.Lease
		} else {
			delete(leased, string(kv.Key))
		}
		return nil
	})
	if err != nil {
		return err
	}
	for key, id := range leased {
		if _, ok := leases[id]; !ok {
			continue // etcd too leaves a key whose lease is gone unattached
		}
		ak, av := lease.AttachRecord(id, []byte(key))
		if err := fn(ak, av); err != nil {
			return err
		}
	}
	rev := max(maxMain, compacted, 1)
	finished := s.finished
	if !s.hasFinished {
		finished = 0
	}
	mk, mv := mvcc.MetaRecords(rev, compacted, finished)
	for i := range mk {
		if err := fn(mk[i], mv[i]); err != nil {
			return err
		}
	}
	return nil
}

// etcd's leasepb.Lease: ID = 1, TTL = 2, RemainingTTL = 3, all int64.
const (
	leaseFieldID        = 1
	leaseFieldTTL       = 2
	leaseFieldRemaining = 3
)

func convertLeases(tx *bolt.Tx, fn func(key, value []byte) error) (map[int64]struct{}, error) {
	ids := make(map[int64]struct{})
	b := tx.Bucket(etcdLeaseBucket)
	if b == nil {
		return ids, nil
	}
	err := b.ForEach(func(k, v []byte) error {
		id, ttl, remaining, err := decodeEtcdLease(v)
		if err != nil {
			return fmt.Errorf("%w: lease %x: %v", ErrCorrupt, k, err)
		}
		if len(k) != 8 || int64(binary.BigEndian.Uint64(k)) != id {
			return fmt.Errorf("%w: lease record %x holds lease %x", ErrCorrupt, k, id)
		}
		ids[id] = struct{}{}
		lk, lv := lease.LeaseRecord(id, ttl, remaining)
		return fn(lk, lv)
	})
	return ids, err
}

func decodeEtcdLease(b []byte) (id, ttl, remaining int64, err error) {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return 0, 0, 0, protowire.ParseError(n)
		}
		b = b[n:]
		if typ != protowire.VarintType {
			n = protowire.ConsumeFieldValue(num, typ, b)
			if n < 0 {
				return 0, 0, 0, protowire.ParseError(n)
			}
			b = b[n:]
			continue
		}
		v, n := protowire.ConsumeVarint(b)
		if n < 0 {
			return 0, 0, 0, protowire.ParseError(n)
		}
		b = b[n:]
		switch num {
		case leaseFieldID:
			id = int64(v)
		case leaseFieldTTL:
			ttl = int64(v)
		case leaseFieldRemaining:
			remaining = int64(v)
		}
	}
	return id, ttl, remaining, nil
}

func encodeEtcdLease(id, ttl, remaining int64) []byte {
	var b []byte
	for _, f := range []struct {
		num protowire.Number
		v   int64
	}{{leaseFieldID, id}, {leaseFieldTTL, ttl}, {leaseFieldRemaining, remaining}} {
		if f.v != 0 {
			b = protowire.AppendTag(b, f.num, protowire.VarintType)
			b = protowire.AppendVarint(b, uint64(f.v))
		}
	}
	return b
}

func convertAuth(tx *bolt.Tx, fn func(key, value []byte) error) error {
	if b := tx.Bucket(etcdAuthBucket); b != nil {
		if v := b.Get(etcdAuthEnabled); v != nil {
			k, val := auth.EnabledRecord(len(v) == 1 && v[0] == 1)
			if err := fn(k, val); err != nil {
				return err
			}
		}
		if v := b.Get(etcdAuthRevision); v != nil {
			if len(v) != 8 {
				return fmt.Errorf("%w: auth revision %x is malformed", ErrCorrupt, v)
			}
			k, val := auth.RevisionRecord(binary.BigEndian.Uint64(v))
			if err := fn(k, val); err != nil {
				return err
			}
		}
	}
	if b := tx.Bucket(etcdAuthUsersBucket); b != nil {
		err := b.ForEach(func(k, v []byte) error {
			u := &authpb.User{}
			if err := proto.Unmarshal(v, u); err != nil {
				return fmt.Errorf("%w: user %q: %v", ErrCorrupt, k, err)
			}
			if !bytes.Equal(u.Name, k) {
				return fmt.Errorf("%w: user record %q holds user %q", ErrCorrupt, k, u.Name)
			}
			uk, uv, err := auth.UserRecord(u)
			if err != nil {
				return err
			}
			return fn(uk, uv)
		})
		if err != nil {
			return err
		}
	}
	if b := tx.Bucket(etcdAuthRolesBucket); b != nil {
		err := b.ForEach(func(k, v []byte) error {
			r := &authpb.Role{}
			if err := proto.Unmarshal(v, r); err != nil {
				return fmt.Errorf("%w: role %q: %v", ErrCorrupt, k, err)
			}
			if !bytes.Equal(r.Name, k) {
				return fmt.Errorf("%w: role record %q holds role %q", ErrCorrupt, k, r.Name)
			}
			rk, rv, err := auth.RoleRecord(r)
			if err != nil {
				return err
			}
			return fn(rk, rv)
		})
		if err != nil {
			return err
		}
	}
	return nil
}
