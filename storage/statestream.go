package storage

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/cockroachdb/pebble/v2"
	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"
)

// State stream
//
// The state a Raft snapshot carries to a follower is every key of the
// member's database except the Raft namespace (log, hard state, snapshot
// metadata, install marker) and the member's identity: the applied index and
// conf state, the MVCC key space and its metadata, membership, alarms and
// leases. It is encoded as
//
//	header:  "KEELSTATE" (9 bytes) | version (1 byte)
//	record:  uvarint len(key) (never 0) | key | uvarint len(value) | value
//	end:     0 (1 byte) | uvarint number of records
//
// and nothing may follow the end record. The records come in key order. The
// encoding carries no checksum of its own: the transport checksums the whole
// stream.

const (
	stateMagic   = "KEELSTATE"
	stateVersion = 1
	// maxStateKey and maxStateValue bound what a decoder allocates for one
	// record, so a corrupt length fails cleanly instead of exhausting memory.
	maxStateKey   = 64 << 20
	maxStateValue = 1 << 30
)

// ErrCorruptState marks a state stream that cannot be decoded: truncated,
// damaged or not a state stream at all.
var ErrCorruptState = errors.New("snapshot state stream is corrupt")

// ErrEngineClosed is the error a state stream fails with when the engine it
// reads from is closed under it.
var ErrEngineClosed = errors.New("storage engine closed")

var keyIdentityEnd = append(append([]byte(nil), keyIdentity...), 0)

// stateSpans are the key ranges that hold the state, in key order; end nil
// means unbounded. Between them lie the member identity key and the Raft
// namespace, which a snapshot neither carries nor replaces.
func stateSpans() [][2][]byte {
	return [][2][]byte{
		{nil, keyIdentity},
		{keyIdentityEnd, {PrefixRaft}},
		{{PrefixRaft + 1}, nil},
	}
}

// isStateKey reports whether k belongs in a state stream.
func isStateKey(k []byte) bool {
	return len(k) > 0 && k[0] != PrefixRaft && !bytes.Equal(k, keyIdentity)
}

// StateWriter encodes a state stream. It buffers: Close flushes.
type StateWriter struct {
	w   *bufio.Writer
	n   uint64
	buf []byte
}

// NewStateWriter writes the stream header to w and returns the writer for
// the records.
func NewStateWriter(w io.Writer) (*StateWriter, error) {
	sw := &StateWriter{w: bufio.NewWriterSize(w, 256<<10)}
	if _, err := sw.w.WriteString(stateMagic); err != nil {
		return nil, err
	}
	if err := sw.w.WriteByte(stateVersion); err != nil {
		return nil, err
	}
	return sw, nil
}

// Add writes one record. Keys must not be empty.
func (sw *StateWriter) Add(key, value []byte) error {
	if len(key) == 0 {
		return errors.New("state stream: empty key")
	}
	sw.buf = binary.AppendUvarint(sw.buf[:0], uint64(len(key)))
	sw.buf = append(sw.buf, key...)
	sw.buf = binary.AppendUvarint(sw.buf, uint64(len(value)))
	if _, err := sw.w.Write(sw.buf); err != nil {
		return err
	}
	if _, err := sw.w.Write(value); err != nil {
		return err
	}
	sw.n++
	return nil
}

// Close writes the end record and flushes. It does not close the
// underlying writer.
func (sw *StateWriter) Close() error {
	sw.buf = append(sw.buf[:0], 0)
	sw.buf = binary.AppendUvarint(sw.buf, sw.n)
	if _, err := sw.w.Write(sw.buf); err != nil {
		return err
	}
	return sw.w.Flush()
}

// StateReader decodes a state stream.
type StateReader struct {
	r    *bufio.Reader
	n    uint64 // records read so far
	key  []byte
	val  []byte
	done bool
}

// NewStateReader reads and checks the stream header.
func NewStateReader(r io.Reader) (*StateReader, error) {
	sr := &StateReader{r: bufio.NewReaderSize(r, 256<<10)}
	hdr := make([]byte, len(stateMagic)+1)
	if _, err := io.ReadFull(sr.r, hdr); err != nil {
		return nil, sr.fail("reading the header", err)
	}
	if string(hdr[:len(stateMagic)]) != stateMagic {
		return nil, fmt.Errorf("%w: not a keel state stream (header %q)", ErrCorruptState, hdr)
	}
	if v := hdr[len(stateMagic)]; v != stateVersion {
		return nil, fmt.Errorf("%w: unsupported version %d (this keel reads version %d)", ErrCorruptState, v, stateVersion)
	}
	return sr, nil
}

// Next returns the next record. The slices are valid until the next call.
// After the end record it returns io.EOF, having checked the record count and
// that nothing follows; every other failure wraps ErrCorruptState (or is the
// underlying reader's error).
func (sr *StateReader) Next() (key, value []byte, err error) {
	if sr.done {
		return nil, nil, io.EOF
	}
	klen, err := sr.uvarint(fmt.Sprintf("reading record %d", sr.n+1))
	if err != nil {
		return nil, nil, err
	}
	if klen == 0 {
		return nil, nil, sr.end()
	}
	if klen > maxStateKey {
		return nil, nil, fmt.Errorf("%w: record %d has a key of %d bytes", ErrCorruptState, sr.n+1, klen)
	}
	if sr.key, err = readN(sr.r, sr.key, int(klen)); err != nil {
		return nil, nil, sr.fail(fmt.Sprintf("reading the key of record %d", sr.n+1), err)
	}
	vlen, err := sr.uvarint(fmt.Sprintf("reading the value of record %d", sr.n+1))
	if err != nil {
		return nil, nil, err
	}
	if vlen > maxStateValue {
		return nil, nil, fmt.Errorf("%w: record %d has a value of %d bytes", ErrCorruptState, sr.n+1, vlen)
	}
	if sr.val, err = readN(sr.r, sr.val, int(vlen)); err != nil {
		return nil, nil, sr.fail(fmt.Sprintf("reading the value of record %d", sr.n+1), err)
	}
	sr.n++
	return sr.key, sr.val, nil
}

// Count returns how many records have been read.
func (sr *StateReader) Count() uint64 { return sr.n }

func (sr *StateReader) end() error {
	count, err := sr.uvarint("reading the end record")
	if err != nil {
		return err
	}
	if count != sr.n {
		return fmt.Errorf("%w: the end record counts %d records but %d were read", ErrCorruptState, count, sr.n)
	}
	if _, err := sr.r.ReadByte(); err == nil {
		return fmt.Errorf("%w: data after the end record", ErrCorruptState)
	} else if !errors.Is(err, io.EOF) {
		return err
	}
	sr.done = true
	return io.EOF
}

// uvarint reads one uvarint; what says what it is for, in errors.
func (sr *StateReader) uvarint(what string) (uint64, error) {
	var x uint64
	for i := 0; i < binary.MaxVarintLen64; i++ {
		c, err := sr.r.ReadByte()
		if err != nil {
			return 0, sr.fail(what, err)
		}
		if i == binary.MaxVarintLen64-1 && c > 1 {
			break
		}
		x |= uint64(c&0x7f) << (7 * i)
		if c < 0x80 {
			return x, nil
		}
	}
	return 0, fmt.Errorf("%w: bad length while %s", ErrCorruptState, what)
}

// fail turns a read error into the stream's error: running out of input is
// corruption (a truncated stream); anything else is the reader's own.
func (sr *StateReader) fail(what string, err error) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return fmt.Errorf("%w: truncated while %s", ErrCorruptState, what)
	}
	return fmt.Errorf("state stream: %s: %w", what, err)
}

func readN(r io.Reader, buf []byte, n int) ([]byte, error) {
	if cap(buf) < n {
		buf = make([]byte, n)
	}
	buf = buf[:n]
	_, err := io.ReadFull(r, buf)
	return buf, err
}

// WriteState encodes every state key of r to w (see "State stream").
func WriteState(r pebble.Reader, w io.Writer) error {
	sw, err := NewStateWriter(w)
	if err != nil {
		return err
	}
	if err := eachState(r, sw.Add); err != nil {
		return err
	}
	return sw.Close()
}

// eachState calls fn for every state key of r and its value, in key
// order, and returns fn's first error. fn must not keep key or value.
func eachState(r pebble.Reader, fn func(key, value []byte) error) error {
	for _, sp := range stateSpans() {
		it, err := r.NewIter(&pebble.IterOptions{LowerBound: sp[0], UpperBound: sp[1]})
		if err != nil {
			return err
		}
		for ok := it.First(); ok; ok = it.Next() {
			v, err := it.ValueAndErr()
			if err == nil {
				err = fn(it.Key(), v)
			}
			if err != nil {
				it.Close()
				return err
			}
		}
		if err := it.Error(); err != nil {
			it.Close()
			return err
		}
		if err := it.Close(); err != nil {
			return err
		}
	}
	return nil
}

// OpenState returns the member's state, as a state stream, at this moment:
// it reads from a Pebble snapshot, so writes go on while it is read and do
// not show in it. The stream is produced as it is read, so it never holds the
// whole state in memory.
//
// The caller must Close the stream; closing it early is how a reader gives
// up. Closing the engine ends every stream still open with ErrEngineClosed
// (after which Close must still be called).
func (e *Engine) OpenState() (*StateStream, error) {
	e.streamsMu.Lock()
	defer e.streamsMu.Unlock()
	if e.closed {
		return nil, ErrEngineClosed
	}
	snap := e.db.NewSnapshot()
	s := &StateStream{e: e, done: make(chan struct{}), confState: &raftpb.ConfState{}}
	err := func() error {
		v, ok, err := get(snap, keyApplied)
		if err != nil {
			return err
		}
		if ok {
			if len(v) != 8 {
				return fmt.Errorf("applied index is corrupt: %d bytes", len(v))
			}
			s.applied = binary.BigEndian.Uint64(v)
		}
		return getProto(snap, keyConfState, s.confState)
	}()
	if err != nil {
		snap.Close()
		return nil, fmt.Errorf("open the state to stream: %w", err)
	}
	pr, pw := io.Pipe()
	s.pr = pr
	e.streams[s] = struct{}{}
	go func() {
		defer close(s.done)
		err := WriteState(snap, pw)
		snap.Close()
		pw.CloseWithError(err) // nil: the reader sees io.EOF
	}()
	return s, nil
}

// StateStream is a state stream being produced from a Pebble snapshot of
// the engine (OpenState).
type StateStream struct {
	e         *Engine
	pr        *io.PipeReader
	done      chan struct{} // closed once the producer released its snapshot
	once      sync.Once
	abortErr  error // set by abort, before the pipe is closed
	applied   uint64
	confState *raftpb.ConfState
}

// Applied returns the applied index of the streamed state.
func (s *StateStream) Applied() uint64 { return s.applied }

// ConfState returns the conf state recorded with the streamed state's
// applied index.
func (s *StateStream) ConfState() *raftpb.ConfState {
	return proto.Clone(s.confState).(*raftpb.ConfState)
}

// Read reads the stream.
func (s *StateStream) Read(p []byte) (int, error) {
	n, err := s.pr.Read(p)
	if errors.Is(err, io.ErrClosedPipe) {
		s.e.streamsMu.Lock() // orders the read of abortErr after abort's write
		err = s.abortErr
		s.e.streamsMu.Unlock()
	}
	return n, err
}

// Close stops the producer and waits until it released its Pebble snapshot.
func (s *StateStream) Close() error {
	s.abort(errors.New("state stream closed by its reader"))
	<-s.done
	s.e.streamsMu.Lock()
	delete(s.e.streams, s)
	s.e.streamsMu.Unlock()
	return nil
}

func (s *StateStream) abort(err error) {
	s.once.Do(func() {
		s.e.streamsMu.Lock()
		s.abortErr = err
		s.e.streamsMu.Unlock()
		s.pr.CloseWithError(err)
	})
}
