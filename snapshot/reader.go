package snapshot

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"hash/crc32"
	"io"
	"time"

	"github.com/keeldb/keel/mvcc"
)

// Reader reads and verifies a snapshot file front to back.
//
// Next returns the records one by one; each has passed the checks that can
// be made before the end (lengths, key order, the store's records
// decodable), but the file as a whole is known intact only once Next
// returned io.EOF: that is when the end record, the padding and the sha256
// trailer have been checked. A restore must therefore either verify the
// file first (Verify) or stage what it reads and commit nothing before
// io.EOF. A Reader is not safe for concurrent use.
type Reader struct {
	body    *bodyReader
	r       *bufio.Reader
	hdr     Header
	crc     hash.Hash32
	sum     *mvcc.StateSummary
	records int64
	key     []byte
	val     []byte
	info    Info
	done    bool
	err     error
}

// NewReader reads and checks the header of the file r streams.
func NewReader(r io.Reader) (*Reader, error) {
	body := newBodyReader(r)
	sr := &Reader{
		body: body,
		r:    bufio.NewReaderSize(body, 64<<10),
		crc:  crc32.New(castagnoli),
		sum:  mvcc.NewStateSummary(),
	}
	if err := sr.readHeader(); err != nil {
		return nil, err
	}
	return sr, nil
}

// Header returns the file's header.
func (sr *Reader) Header() Header { return sr.hdr }

// Info returns what the file holds; it is complete only after Next returned
// io.EOF.
func (sr *Reader) Info() Info { return sr.info }

func (sr *Reader) readHeader() error {
	m := make([]byte, len(magic)+1)
	if _, err := io.ReadFull(sr.r, m); err != nil {
		return sr.fail("reading the header", err)
	}
	if string(m[:len(magic)]) != magic {
		if isBolt(m, sr.r) {
			return fmt.Errorf("%w: this is an etcd (bbolt) snapshot or database, not a keel snapshot", ErrCorrupt)
		}
		return fmt.Errorf("%w: not a keel snapshot (it starts with %q, not %q)", ErrCorrupt, m[:len(magic)], magic)
	}
	if v := m[len(magic)]; v != FormatVersion {
		return fmt.Errorf("%w: format version %d is not one this keel reads (%d)", ErrCorrupt, v, FormatVersion)
	}
	n, err := sr.uvarint("reading the header")
	if err != nil {
		return err
	}
	if n < 32 || n > maxHeader {
		return fmt.Errorf("%w: a header of %d bytes", ErrCorrupt, n)
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(sr.r, b); err != nil {
		return sr.fail("reading the header", err)
	}
	sr.hdr = Header{
		ClusterID:      binary.BigEndian.Uint64(b),
		MemberID:       binary.BigEndian.Uint64(b[8:]),
		Applied:        binary.BigEndian.Uint64(b[16:]),
		Created:        time.Unix(0, int64(binary.BigEndian.Uint64(b[24:]))).UTC(),
		StorageVersion: string(b[32:]),
	}
	return nil
}

// isBolt reports whether the file looks like a bbolt database: its first
// meta page carries bbolt's magic at offset 16.
func isBolt(start []byte, r *bufio.Reader) bool {
	rest, _ := r.Peek(20 - len(start))
	b := append(append([]byte(nil), start...), rest...)
	return len(b) >= 20 && binary.LittleEndian.Uint32(b[16:]) == 0xED0CDAED
}

// Next returns the next record; key and value stay valid until the next
// call. At the end of a file that passed every check it returns io.EOF.
// Any other error is final and wraps ErrCorrupt, unless it is the
// underlying reader's.
func (sr *Reader) Next() (key, value []byte, err error) {
	if sr.err != nil {
		return nil, nil, sr.err
	}
	key, value, err = sr.next()
	if err != nil {
		sr.err = err
	}
	return key, value, err
}

func (sr *Reader) next() (key, value []byte, err error) {
	if sr.done {
		return nil, nil, io.EOF
	}
	rec := sr.records + 1
	tag, err := sr.r.ReadByte()
	if err != nil {
		return nil, nil, sr.fail(fmt.Sprintf("reading record %d", rec), err)
	}
	switch tag {
	case tagEnd:
		return nil, nil, sr.end()
	case tagRecord:
	default:
		return nil, nil, fmt.Errorf("%w: record %d has tag 0x%02x", ErrCorrupt, rec, tag)
	}
	klen, err := sr.uvarint(fmt.Sprintf("reading record %d", rec))
	if err != nil {
		return nil, nil, err
	}
	if klen == 0 || klen > maxKey {
		return nil, nil, fmt.Errorf("%w: record %d has a key of %d bytes", ErrCorrupt, rec, klen)
	}
	prev := sr.key
	sr.key, sr.val = sr.val, prev // reuse the buffers; prev stays intact below
	if sr.key, err = readN(sr.r, sr.key, int(klen)); err != nil {
		return nil, nil, sr.fail(fmt.Sprintf("reading the key of record %d", rec), err)
	}
	if sr.records > 0 && bytes.Compare(sr.key, prev) <= 0 {
		return nil, nil, fmt.Errorf("%w: record %d is out of key order", ErrCorrupt, rec)
	}
	vlen, err := sr.uvarint(fmt.Sprintf("reading the value of record %d", rec))
	if err != nil {
		return nil, nil, err
	}
	if vlen > maxValue {
		return nil, nil, fmt.Errorf("%w: record %d has a value of %d bytes", ErrCorrupt, rec, vlen)
	}
	if sr.val, err = readN(sr.r, sr.val, int(vlen)); err != nil {
		return nil, nil, sr.fail(fmt.Sprintf("reading the value of record %d", rec), err)
	}
	if err := sr.sum.Add(sr.key, sr.val); err != nil {
		return nil, nil, fmt.Errorf("%w: record %d: %v", ErrCorrupt, rec, err)
	}
	sr.crc.Write(sr.key)
	sr.crc.Write(sr.val)
	sr.records++
	return sr.key, sr.val, nil
}

// end checks the end record, the padding and the trailer.
func (sr *Reader) end() error {
	var f [4]int64
	for i, what := range []string{"the record count", "the key count", "the revision", "the compacted revision"} {
		var err error
		var u uint64
		if i < 2 {
			u, err = sr.uvarint("reading " + what + " of the end record")
			f[i] = int64(u)
		} else {
			f[i], err = binary.ReadVarint(sr.r)
			if err != nil {
				err = sr.fail("reading "+what+" of the end record", err)
			}
		}
		if err != nil {
			return err
		}
	}
	if f[0] != sr.records {
		return fmt.Errorf("%w: the end record counts %d records but the file has %d", ErrCorrupt, f[0], sr.records)
	}
	if f[1] != sr.sum.Keys || f[2] != sr.sum.Rev || f[3] != sr.sum.CompactRev {
		return fmt.Errorf("%w: the end record (keys %d, revision %d, compacted %d) does not match the records (keys %d, revision %d, compacted %d)",
			ErrCorrupt, f[1], f[2], f[3], sr.sum.Keys, sr.sum.Rev, sr.sum.CompactRev)
	}
	// Padding: zeros to the end of the body.
	for {
		c, err := sr.r.ReadByte()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return sr.fail("reading the padding", err)
		}
		if c != 0 {
			return fmt.Errorf("%w: data after the end record", ErrCorrupt)
		}
	}
	if sr.body.n%align != 0 {
		return fmt.Errorf("%w: truncated or extended: %d bytes before the sha256 trailer, not a multiple of %d", ErrCorrupt, sr.body.n, align)
	}
	sum := sr.body.sha.Sum(nil)
	if !bytes.Equal(sum, sr.body.tail) {
		return fmt.Errorf("%w: sha256 mismatch: the trailer says %x, the contents hash to %x", ErrCorrupt, sr.body.tail, sum)
	}
	sr.info = Info{
		Header:          sr.hdr,
		Revision:        sr.sum.Rev,
		CompactRevision: sr.sum.CompactRev,
		TotalKeys:       sr.sum.Keys,
		Records:         sr.records,
		Hash:            sr.crc.Sum32(),
		Size:            sr.body.n + trailerLen,
	}
	copy(sr.info.SHA256[:], sum)
	sr.done = true
	return io.EOF
}

func (sr *Reader) uvarint(what string) (uint64, error) {
	v, err := binary.ReadUvarint(sr.r)
	if err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return 0, sr.fail(what, err)
		}
		if sr.body.err != nil {
			return 0, sr.fail(what, err)
		}
		return 0, fmt.Errorf("%w: bad length while %s", ErrCorrupt, what)
	}
	return v, nil
}

// fail turns a read error into the file's error: running out of body is a
// truncated (or trailer-less) file; anything else is the reader's own.
func (sr *Reader) fail(what string, err error) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return fmt.Errorf("%w: truncated while %s", ErrCorrupt, what)
	}
	return fmt.Errorf("snapshot: %s: %w", what, err)
}

func readN(r io.Reader, buf []byte, n int) ([]byte, error) {
	if cap(buf) < n {
		// Grow in steps, so that a huge length in a truncated file
		// allocates no more than the file holds.
		buf = buf[:0]
		for len(buf) < n {
			step := min(n-len(buf), 1<<20)
			chunk := make([]byte, step)
			m, err := io.ReadFull(r, chunk)
			buf = append(buf, chunk[:m]...)
			if err != nil {
				return buf, err
			}
		}
		return buf, nil
	}
	buf = buf[:n]
	_, err := io.ReadFull(r, buf)
	return buf, err
}

// Verify reads the whole file r streams and checks it; it returns what the
// file holds, or an error wrapping ErrCorrupt that says what is wrong.
func Verify(r io.Reader) (Info, error) {
	sr, err := NewReader(r)
	if err != nil {
		return Info{}, err
	}
	for {
		if _, _, err := sr.Next(); errors.Is(err, io.EOF) {
			return sr.Info(), nil
		} else if err != nil {
			return Info{}, err
		}
	}
}

// bodyReader passes on everything its source streams but the last
// trailerLen bytes, hashing what it passes on; at the end those bytes are
// in tail.
type bodyReader struct {
	r    *bufio.Reader
	sha  hash.Hash
	n    int64
	tail []byte
	err  error
}

func newBodyReader(r io.Reader) *bodyReader {
	return &bodyReader{r: bufio.NewReaderSize(r, 128<<10), sha: sha256.New()}
}

func (b *bodyReader) Read(p []byte) (int, error) {
	if b.err != nil {
		return 0, b.err
	}
	want := min(len(p), b.r.Size()-trailerLen)
	buf, err := b.r.Peek(want + trailerLen)
	if len(buf) > trailerLen {
		n := copy(p, buf[:len(buf)-trailerLen])
		b.sha.Write(p[:n])
		b.n += int64(n)
		b.r.Discard(n)
		return n, nil
	}
	if err == nil || errors.Is(err, bufio.ErrBufferFull) {
		err = io.ErrNoProgress // cannot happen: Peek blocks for more
	}
	if errors.Is(err, io.EOF) {
		if len(buf) < trailerLen {
			b.err = fmt.Errorf("%w: truncated: shorter than the sha256 trailer", ErrCorrupt)
			return 0, b.err
		}
		b.tail = append([]byte(nil), buf...)
		b.err = io.EOF
		return 0, io.EOF
	}
	b.err = err
	return 0, err
}
