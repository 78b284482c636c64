package snapshot

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"

	bolt "go.etcd.io/bbolt"
	"google.golang.org/protobuf/proto"

	"github.com/keeldb/keel/auth"
	"github.com/keeldb/keel/lease"
	"github.com/keeldb/keel/mvcc"
)

// etcdStorageVersionValue is the storage version an exported database
// declares: etcd 3.7's, which etcd 3.6 and 3.7 read.
const etcdStorageVersionValue = "3.7.0"

// exportBatch is how many puts one bbolt transaction of an export carries.
const exportBatch = 10000

// ExportEtcd converts the keel snapshot file r streams into an etcd 3.7
// database at path, ending with etcd's sha256 trailer, as `etcdctl
// snapshot save` writes it: `etcdutl snapshot restore path ...` makes etcd
// data dirs from it. It carries the key space with its history since the
// last compaction and the compaction revision, leases (keys attach to them
// through their versions, as etcd does) and auth (flag, revision, users
// with their password hashes, roles). Membership and alarms are not
// carried: etcdutl restore makes a new cluster.
//
// The keel file is verified as it is read; on any error nothing is left
// at path. An existing path is never overwritten. It returns what etcdutl
// `snapshot status` reports for the new file.
func ExportEtcd(r io.Reader, path string) (Info, error) {
	if _, err := os.Lstat(path); err == nil {
		return Info{}, fmt.Errorf("%s already exists; choose another output file", path)
	} else if !errors.Is(err, os.ErrNotExist) {
		return Info{}, err
	}
	part := path + ".part"
	if _, err := os.Lstat(part); err == nil {
		return Info{}, fmt.Errorf("snapshot: %s exists (left by an interrupted export?); remove it first", part)
	}
	sr, err := NewReader(r)
	if err != nil {
		return Info{}, err
	}
	ok := false
	defer func() {
		if !ok {
			os.Remove(part)
		}
	}()
	db, err := bolt.Open(part, 0o600, &bolt.Options{NoSync: true})
	if err != nil {
		return Info{}, fmt.Errorf("snapshot: create %s: %w", part, err)
	}
	ex := &exporter{db: db, hdr: sr.Header()}
	err = ex.run(sr)
	var info Info
	if err == nil {
		err = db.View(func(tx *bolt.Tx) error {
			var serr error
			info, serr = etcdStatus(tx)
			return serr
		})
	}
	if err == nil {
		err = db.Sync()
	}
	if cerr := db.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return Info{}, err
	}
	sum, err := appendTrailer(part)
	if err != nil {
		return Info{}, err
	}
	// Link does not replace an existing path: a file created meanwhile is
	// not overwritten either.
	if err := os.Link(part, path); err != nil {
		return Info{}, fmt.Errorf("snapshot: %w", err)
	}
	os.Remove(part)
	ok = true
	info.SHA256 = sum
	info.Header = sr.Header()
	info.StorageVersion = etcdStorageVersionValue
	return info, nil
}

type exporter struct {
	db  *bolt.DB
	hdr Header

	tx      *bolt.Tx
	pending int

	auth auth.State
	// From the keel store's metadata.
	rev, compacted, finished int64
	hasCompact, hasFinished  bool
	// lastVersion is the main revision of the last version written.
	lastVersion int64
}

func (ex *exporter) run(sr *Reader) (err error) {
	defer func() {
		if ex.tx != nil {
			ex.tx.Rollback()
		}
	}()
	if err := ex.begin(); err != nil {
		return err
	}
	for _, name := range [][]byte{etcdKeyBucket, etcdMetaBucket, etcdLeaseBucket, etcdAlarmBucket, etcdClusterBucket,
		etcdMembersBucket, etcdRemovedBucket, etcdAuthBucket, etcdAuthUsersBucket, etcdAuthRolesBucket} {
		if _, err := ex.tx.CreateBucketIfNotExists(name); err != nil {
			return err
		}
	}
	for {
		k, v, err := sr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return err
		}
		if err := ex.add(k, v); err != nil {
			return err
		}
	}
	if err := ex.finish(); err != nil {
		return err
	}
	err = ex.tx.Commit()
	ex.tx = nil
	return err
}

func (ex *exporter) begin() error {
	tx, err := ex.db.Begin(true)
	if err != nil {
		return err
	}
	ex.tx, ex.pending = tx, 0
	return nil
}

func (ex *exporter) put(bucket, k, v []byte) error {
	if err := ex.tx.Bucket(bucket).Put(bytes.Clone(k), bytes.Clone(v)); err != nil {
		return err
	}
	ex.pending++
	if ex.pending < exportBatch {
		return nil
	}
	err := ex.tx.Commit()
	ex.tx = nil
	if err != nil {
		return err
	}
	return ex.begin()
}

func (ex *exporter) add(k, v []byte) error {
	d, err := mvcc.DecodeRecord(k, v)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrCorrupt, err)
	}
	switch d.Kind {
	case mvcc.VersionKind:
		ex.lastVersion = max(ex.lastVersion, d.Rev.Main)
		ek := etcdRevKey(d.Rev, d.Tombstone)
		ev, err := proto.MarshalOptions{Deterministic: true}.Marshal(d.KV)
		if err != nil {
			return err
		}
		return ex.put(etcdKeyBucket, ek, ev)
	case mvcc.CurrentRevKind:
		ex.rev = d.Int
		return nil
	case mvcc.CompactRevKind:
		ex.compacted, ex.hasCompact = d.Int, true
		return nil
	case mvcc.FinishedCompactKind:
		ex.finished, ex.hasFinished = d.Int, true
		return nil
	case mvcc.LogKind:
		return nil // etcd finds changes by revision in its key bucket
	}
	lr, isLease, err := lease.DecodeRecord(k, v)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrCorrupt, err)
	}
	if isLease {
		if lr.Attached != nil {
			return nil // etcd attaches keys from their versions' lease
		}
		id := binary.BigEndian.AppendUint64(nil, uint64(lr.ID))
		return ex.put(etcdLeaseBucket, id, encodeEtcdLease(lr.ID, lr.TTL, lr.Remaining))
	}
	if err := ex.auth.Add(k, v); err != nil {
		return fmt.Errorf("%w: %v", ErrCorrupt, err)
	}
	return nil // membership, alarms and the member's metadata stay behind
}

// finish writes the metadata and auth.
func (ex *exporter) finish() error {
	// etcd takes its revision from the last record of its key bucket (or
	// the compaction, if later); a store whose revision is past both gets
	// an empty record at it, as etcdutl's --bump-revision writes, so that
	// the etcd cluster does not hand out a revision twice.
	if ex.rev > ex.lastVersion && ex.rev > ex.compacted {
		if err := ex.put(etcdKeyBucket, etcdRevKey(mvcc.Revision{Main: ex.rev}, false), []byte{}); err != nil {
			return err
		}
	}
	meta := func(k, v []byte) error { return ex.put(etcdMetaBucket, k, v) }
	if ex.hasCompact && ex.compacted > 0 {
		finished := ex.compacted
		if ex.hasFinished {
			finished = min(ex.finished, ex.compacted)
		}
		if err := meta(etcdScheduledCompact, etcdRevKey(mvcc.Revision{Main: ex.compacted}, false)); err != nil {
			return err
		}
		// etcd resumes a compaction scheduled beyond the finished one.
		if finished > 0 {
			if err := meta(etcdFinishedCompact, etcdRevKey(mvcc.Revision{Main: finished}, false)); err != nil {
				return err
			}
		}
	}
	if err := meta(etcdStorageVersion, []byte(etcdStorageVersionValue)); err != nil {
		return err
	}
	// No consistent index or term: they belong to the Raft log of the new
	// cluster, and etcdutl restore writes them.
	enabled := []byte{0}
	if ex.auth.Enabled {
		enabled = []byte{1}
	}
	if err := ex.put(etcdAuthBucket, etcdAuthEnabled, enabled); err != nil {
		return err
	}
	if ex.auth.Revision > 0 {
		if err := ex.put(etcdAuthBucket, etcdAuthRevision, binary.BigEndian.AppendUint64(nil, ex.auth.Revision)); err != nil {
			return err
		}
	}
	for _, u := range ex.auth.Users {
		if err := ex.putProto(etcdAuthUsersBucket, u.Name, u); err != nil {
			return err
		}
	}
	for _, r := range ex.auth.Roles {
		if err := ex.putProto(etcdAuthRolesBucket, r.Name, r); err != nil {
			return err
		}
	}
	return nil
}

func (ex *exporter) putProto(bucket, name []byte, m proto.Message) error {
	v, err := proto.MarshalOptions{Deterministic: true}.Marshal(m)
	if err != nil {
		return err
	}
	return ex.put(bucket, name, v)
}

// etcdRevKey is a revision as etcd's key bucket and meta store it.
func etcdRevKey(r mvcc.Revision, tombstone bool) []byte {
	b := make([]byte, 0, etcdRevLen+1)
	b = binary.BigEndian.AppendUint64(b, uint64(r.Main))
	b = append(b, etcdRevSep)
	b = binary.BigEndian.AppendUint64(b, uint64(r.Sub))
	if tombstone {
		b = append(b, etcdTombTag)
	}
	return b
}

// appendTrailer appends the sha256 of the file to it and syncs it, so that
// its length modulo 512 is 32 as etcd expects (bbolt's pages are multiples
// of 512 bytes).
func appendTrailer(path string) ([32]byte, error) {
	var sum [32]byte
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return sum, err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return sum, err
	}
	if n%align != 0 {
		return sum, fmt.Errorf("snapshot: the etcd database is %d bytes, not a multiple of %d", n, align)
	}
	copy(sum[:], h.Sum(nil))
	if _, err := f.Write(sum[:]); err != nil {
		return sum, err
	}
	if err := f.Sync(); err != nil {
		return sum, err
	}
	return sum, f.Close()
}
