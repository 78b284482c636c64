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

	"github.com/keeldb/keel/mvcc"
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Writer writes a snapshot file. It buffers: Close completes the file and
// flushes it. A Writer is not safe for concurrent use.
type Writer struct {
	w       *bufio.Writer
	sha     hash.Hash
	crc     hash.Hash32
	sum     *mvcc.StateSummary
	n       int64 // bytes written before the trailer
	records int64
	last    []byte
	buf     []byte
	hdr     Header
	err     error // the first error; every later call returns it
}

// NewWriter writes the header h to w and returns the writer of the records.
func NewWriter(w io.Writer, h Header) (*Writer, error) {
	sw := &Writer{
		w:   bufio.NewWriterSize(w, 256<<10),
		sha: sha256.New(),
		crc: crc32.New(castagnoli),
		sum: mvcc.NewStateSummary(),
		hdr: h,
	}
	sw.write(appendHeader(nil, h))
	return sw, sw.err
}

func appendHeader(dst []byte, h Header) []byte {
	body := binary.BigEndian.AppendUint64(nil, h.ClusterID)
	body = binary.BigEndian.AppendUint64(body, h.MemberID)
	body = binary.BigEndian.AppendUint64(body, h.Applied)
	body = binary.BigEndian.AppendUint64(body, uint64(h.Created.UnixNano()))
	body = append(body, h.StorageVersion...)
	dst = append(dst, magic...)
	dst = append(dst, FormatVersion)
	dst = binary.AppendUvarint(dst, uint64(len(body)))
	return append(dst, body...)
}

func (sw *Writer) write(p []byte) {
	if sw.err != nil {
		return
	}
	sw.sha.Write(p)
	sw.n += int64(len(p))
	_, sw.err = sw.w.Write(p)
}

// Add writes one record. Keys must be non-empty and strictly increasing.
func (sw *Writer) Add(key, value []byte) error {
	if sw.err != nil {
		return sw.err
	}
	if len(key) == 0 || len(key) > maxKey || len(value) > maxValue {
		return fmt.Errorf("snapshot: record of %d+%d bytes cannot be written", len(key), len(value))
	}
	if sw.records > 0 && bytes.Compare(key, sw.last) <= 0 {
		return fmt.Errorf("snapshot: key %q does not follow %q", key, sw.last)
	}
	if err := sw.sum.Add(key, value); err != nil {
		sw.err = fmt.Errorf("snapshot: %w", err)
		return sw.err
	}
	sw.last = append(sw.last[:0], key...)
	sw.crc.Write(key)
	sw.crc.Write(value)
	sw.buf = append(sw.buf[:0], tagRecord)
	sw.buf = binary.AppendUvarint(sw.buf, uint64(len(key)))
	sw.buf = append(sw.buf, key...)
	sw.buf = binary.AppendUvarint(sw.buf, uint64(len(value)))
	sw.write(sw.buf)
	sw.write(value)
	sw.records++
	return sw.err
}

// Close writes the end record, the padding and the trailer, flushes, and
// returns what the file holds. It does not close the underlying writer.
func (sw *Writer) Close() (Info, error) {
	if sw.err != nil {
		return Info{}, sw.err
	}
	sw.buf = append(sw.buf[:0], tagEnd)
	sw.buf = appendEnd(sw.buf, sw.records, sw.sum)
	sw.write(sw.buf)
	if pad := (align - sw.n%align) % align; pad > 0 {
		sw.write(make([]byte, pad))
	}
	info := Info{
		Header:          sw.hdr,
		Revision:        sw.sum.Rev,
		CompactRevision: sw.sum.CompactRev,
		TotalKeys:       sw.sum.Keys,
		Records:         sw.records,
		Hash:            sw.crc.Sum32(),
		Size:            sw.n + trailerLen,
	}
	copy(info.SHA256[:], sw.sha.Sum(nil))
	if sw.err != nil {
		return Info{}, sw.err
	}
	if _, err := sw.w.Write(info.SHA256[:]); err != nil {
		sw.err = err
		return Info{}, err
	}
	if err := sw.w.Flush(); err != nil {
		sw.err = err
		return Info{}, err
	}
	sw.err = errors.New("snapshot: writer closed")
	return info, nil
}

func appendEnd(dst []byte, records int64, s *mvcc.StateSummary) []byte {
	dst = binary.AppendUvarint(dst, uint64(records))
	dst = binary.AppendUvarint(dst, uint64(s.Keys))
	dst = binary.AppendVarint(dst, s.Rev)
	return binary.AppendVarint(dst, s.CompactRev)
}
