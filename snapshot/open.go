package snapshot

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/keeldb/keel/storage"
)

// ErrMissingHash is the error of Open and OpenEtcd for a source that
// carries no hash to check (a copy of a keel data dir, or etcd's
// member/snap/db, which lacks the trailer `etcdctl snapshot save` appends)
// when the hash check is not skipped. The message is etcdutl's for the same
// case.
var ErrMissingHash = errors.New("snapshot missing hash but --skip-hash-check=false")

// Open opens what path names as a Source to restore from:
//
//   - a keel snapshot file (`snapshot save`): its records, with the file's
//     structure and sha256 trailer checked as they are read; Records fails
//     with an error wrapping ErrCorrupt on a damaged or truncated file. The
//     trailer is checked even with skipHashCheck: a keel file always has one.
//   - a directory: a copy of a stopped keel member's data dir (the one that
//     holds member/db) or of its Pebble database directory itself. It has no
//     hash, so it is refused with ErrMissingHash unless skipHashCheck. It
//     is opened read-only and stays byte-identical.
//   - a database or snapshot file of real etcd (bbolt), imported.
func Open(path string, skipHashCheck bool) (Source, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if fi.IsDir() {
		return openDir(path, skipHashCheck)
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	br := bufio.NewReader(f)
	start, _ := br.Peek(len(magic))
	f.Close()
	if string(start) == magic {
		return openFile(path)
	}
	if isBolt(nil, br) {
		return openEtcd(path, skipHashCheck)
	}
	if len(start) < len(magic) {
		return nil, fmt.Errorf("%s: %w: %d bytes, too short for a snapshot", path, ErrCorrupt, fi.Size())
	}
	return nil, fmt.Errorf("%s: %w: neither a keel snapshot (it starts with %q, not %q) nor an etcd database", path, ErrCorrupt, start, magic)
}

// fileSource is a keel snapshot file.
type fileSource struct {
	path string
	f    *os.File
	hdr  Header
	info Info
	read bool
}

func openFile(path string) (*fileSource, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	sr, err := NewReader(f)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &fileSource{path: path, f: f, hdr: sr.Header(), info: Info{Header: sr.Header()}}, nil
}

func (s *fileSource) Info() Info { return s.info }

func (s *fileSource) Records(fn func(key, value []byte) error) error {
	if s.read {
		return errors.New("snapshot: the records of a file source can be read once")
	}
	s.read = true
	if _, err := s.f.Seek(0, io.SeekStart); err != nil {
		return err
	}
	sr, err := NewReader(s.f)
	if err != nil {
		return fmt.Errorf("%s: %w", s.path, err)
	}
	for {
		k, v, err := sr.Next()
		if errors.Is(err, io.EOF) {
			s.info = sr.Info()
			return nil
		}
		if err != nil {
			return fmt.Errorf("%s: %w", s.path, err)
		}
		if err := fn(k, v); err != nil {
			return err
		}
	}
}

func (s *fileSource) Close() error { return s.f.Close() }

// dirSource is a copy of a stopped member's data dir.
type dirSource struct {
	e    *storage.Engine
	info Info
}

func openDir(path string, skipHashCheck bool) (*dirSource, error) {
	dbDir := path
	if _, err := os.Stat(storage.DBDir(path)); err == nil {
		dbDir = storage.DBDir(path)
	} else if m, _ := filepath.Glob(filepath.Join(path, "MANIFEST-*")); len(m) == 0 {
		return nil, fmt.Errorf("%s is a directory but neither a keel data dir (no member/db in it) nor a keel database (no MANIFEST file)", path)
	}
	if !skipHashCheck {
		return nil, ErrMissingHash
	}
	e, err := storage.OpenReadOnly(dbDir, storage.Options{})
	if err != nil {
		if errors.Is(err, storage.ErrInstallPending) {
			return nil, err
		}
		return nil, fmt.Errorf("%w (restore from a copy of a stopped member's data dir; a running member's data dir is locked)", err)
	}
	s := &dirSource{e: e}
	if id, ok, err := e.Identity(); err == nil && ok {
		s.info.ClusterID, s.info.MemberID = id.ClusterID, id.MemberID
	}
	if applied, err := e.Applied(); err == nil {
		s.info.Applied = applied
	}
	return s, nil
}

func (s *dirSource) Info() Info { return s.info }

func (s *dirSource) Records(fn func(key, value []byte) error) error { return s.e.EachState(fn) }

func (s *dirSource) Close() error { return s.e.Close() }
