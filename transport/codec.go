package transport

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"

	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/proto"
)

// rawCodec is the gRPC codec of every peer RPC: a message is a []byte that
// goes on the wire as it is. The payloads are encoded by this package (see
// the frame functions below), so a proxy in between can forward frames
// without knowing their format.
type rawCodec struct{}

func (rawCodec) Name() string { return "keel-raw" }

func (rawCodec) Marshal(v any) (mem.BufferSlice, error) {
	switch b := v.(type) {
	case []byte:
		return mem.BufferSlice{mem.SliceBuffer(b)}, nil
	case *[]byte:
		return mem.BufferSlice{mem.SliceBuffer(*b)}, nil
	}
	return nil, fmt.Errorf("transport: cannot send %T as a raw frame", v)
}

// Unmarshal copies the frame: gRPC frees data when Unmarshal returns.
func (rawCodec) Unmarshal(data mem.BufferSlice, v any) error {
	b, ok := v.(*[]byte)
	if !ok {
		return fmt.Errorf("transport: cannot receive a raw frame into %T", v)
	}
	*b = data.Materialize()
	return nil
}

// maxFrameBytes is the size at which a Stream batch is cut and the size of a
// snapshot chunk. A batch holding one larger message is larger.
const maxFrameBytes = 1 << 20

// A Stream frame is a batch of Raft messages, each a uvarint length followed
// by the marshalled raftpb.Message, in the order they were sent.

// appendMessage appends m to the batch b.
func appendMessage(b []byte, m *raftpb.Message) ([]byte, error) {
	n := proto.Size(m)
	b = binary.AppendUvarint(b, uint64(n))
	return proto.MarshalOptions{UseCachedSize: true}.MarshalAppend(b, m)
}

var errCorruptFrame = errors.New("corrupt frame")

// decodeBatch calls fn for each message of the batch b, in order, and stops
// at the first error.
func decodeBatch(b []byte, fn func(*raftpb.Message) error) error {
	for len(b) > 0 {
		n, k := binary.Uvarint(b)
		if k <= 0 || n > uint64(len(b)-k) {
			return errCorruptFrame
		}
		m := &raftpb.Message{}
		if err := proto.Unmarshal(b[k:k+int(n)], m); err != nil {
			return fmt.Errorf("%w: %v", errCorruptFrame, err)
		}
		b = b[k+int(n):]
		if err := fn(m); err != nil {
			return err
		}
	}
	return nil
}

// A Snapshot stream is a header frame (the marshalled MsgSnap), the state in
// chunk frames of at most maxFrameBytes, and a trailer frame with the
// SHA-256 and the size of the state. The first byte of a frame says which.
const (
	snapHeader  byte = 'h'
	snapChunk   byte = 'c'
	snapTrailer byte = 't'
)

func trailerFrame(sum []byte, size int64) []byte {
	b := append([]byte{snapTrailer}, sum...)
	return binary.AppendUvarint(b, uint64(size))
}

func parseTrailer(b []byte) (sum []byte, size int64, err error) {
	if len(b) < 1+sha256.Size {
		return nil, 0, errCorruptFrame
	}
	sum = b[1 : 1+sha256.Size]
	n, k := binary.Uvarint(b[1+sha256.Size:])
	if k <= 0 || 1+sha256.Size+k != len(b) {
		return nil, 0, errCorruptFrame
	}
	return sum, int64(n), nil
}
