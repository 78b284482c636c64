package compat

import (
	"bytes"
	stdcmp "cmp"
	"fmt"
	"slices"
	"strings"

	"github.com/google/go-cmp/cmp"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/prototext"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/testing/protocmp"
)

// result is one side's answer to an op, ready to compare: the response with
// the member-specific header fields cleared, or the gRPC status.
type result struct {
	resp proto.Message // nil on error
	err  error
}

// newResult clears cluster_id and member_id in every response header of resp
// (the top-level one and those nested in txn responses): they identify the
// member, not the state, and legitimately differ between two clusters.
func newResult(resp proto.Message, err error) result {
	if err != nil {
		return result{err: err}
	}
	resp = proto.Clone(resp)
	clearMemberIDs(resp.ProtoReflect())
	return result{resp: resp}
}

var headerName = (&pb.ResponseHeader{}).ProtoReflect().Descriptor().FullName()

func clearMemberIDs(m protoreflect.Message) {
	if m.Descriptor().FullName() == headerName {
		h := m.Interface().(*pb.ResponseHeader)
		h.ClusterId, h.MemberId = 0, 0
		return
	}
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		if fd.Kind() != protoreflect.MessageKind {
			return true
		}
		switch {
		case fd.IsList():
			l := v.List()
			for i := range l.Len() {
				clearMemberIDs(l.Get(i).Message())
			}
		case fd.IsMap():
		default:
			clearMemberIDs(v.Message())
		}
		return true
	})
}

// equal reports whether two results are the same answer: equal messages, or
// errors with the same gRPC code and message.
func (r result) equal(o result) bool {
	if (r.err == nil) != (o.err == nil) {
		return false
	}
	if r.err != nil {
		a, b := status.Convert(r.err), status.Convert(o.err)
		return a.Code() == b.Code() && a.Message() == b.Message()
	}
	return proto.Equal(r.resp, o.resp)
}

func (r result) String() string {
	if r.err != nil {
		s := status.Convert(r.err)
		return fmt.Sprintf("error code=%s message=%q", s.Code(), s.Message())
	}
	return formatMsg(r.resp)
}

// outcome is a one-line classification of a result, for the coverage summary.
func (r result) outcome() string {
	if r.err != nil {
		return "error: " + status.Convert(r.err).Message()
	}
	if t, ok := r.resp.(*pb.TxnResponse); ok {
		if t.Succeeded {
			return "ok (success branch)"
		}
		return "ok (failure branch)"
	}
	return "ok"
}

// diff is a readable difference between two results.
func diff(a, b result) string {
	if a.err != nil || b.err != nil {
		return fmt.Sprintf("- %v\n+ %v", a, b)
	}
	return cmp.Diff(shorten(a.resp), shorten(b.resp), protocmp.Transform())
}

// formatMsg prints a message as text, with long byte strings shortened.
func formatMsg(m proto.Message) string {
	if m == nil {
		return "<nil>"
	}
	s := prototext.MarshalOptions{Multiline: true, Indent: "  "}.Format(shorten(m))
	return strings.TrimSpace(s)
}

// shorten returns a copy of m whose byte fields longer than 64 bytes are cut
// down to their first bytes and their length, so that failures of the big
// requests stay readable.
func shorten(m proto.Message) proto.Message {
	c := proto.Clone(m)
	shortenReflect(c.ProtoReflect())
	return c
}

func shortenReflect(m protoreflect.Message) {
	type set struct {
		fd protoreflect.FieldDescriptor
		v  protoreflect.Value
	}
	var sets []set
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		switch {
		case fd.IsMap():
		case fd.IsList():
			l := v.List()
			for i := range l.Len() {
				switch fd.Kind() {
				case protoreflect.MessageKind:
					shortenReflect(l.Get(i).Message())
				case protoreflect.BytesKind:
					l.Set(i, protoreflect.ValueOfBytes(shortBytes(l.Get(i).Bytes())))
				}
			}
		case fd.Kind() == protoreflect.MessageKind:
			shortenReflect(v.Message())
		case fd.Kind() == protoreflect.BytesKind && len(v.Bytes()) > 64:
			sets = append(sets, set{fd, protoreflect.ValueOfBytes(shortBytes(v.Bytes()))})
		}
		return true
	})
	for _, s := range sets {
		m.Set(s.fd, s.v)
	}
}

func shortBytes(b []byte) []byte {
	if len(b) <= 64 {
		return b
	}
	return fmt.Appendf(append([]byte{}, b[:16]...), "...(%d bytes)", len(b))
}

// sameUpToTies reports whether two Range results differ only in the order of
// kvs whose sort keys are equal. etcd sorts with sort.Sort, which is not
// stable beyond 12 elements, so the order of ties is etcd's implementation;
// a failure of this kind is reported as such.
func sameUpToTies(o op, a, b result) bool {
	if o.rng == nil || a.err != nil || b.err != nil {
		return false
	}
	ra, okA := a.resp.(*pb.RangeResponse)
	rb, okB := b.resp.(*pb.RangeResponse)
	if !okA || !okB || len(ra.Kvs) != len(rb.Kvs) ||
		!sortedBy(o.rng, ra.Kvs) || !sortedBy(o.rng, rb.Kvs) {
		return false
	}
	canon := func(r *pb.RangeResponse) *pb.RangeResponse {
		c := proto.Clone(r).(*pb.RangeResponse)
		slices.SortStableFunc(c.Kvs, func(x, y *mvccpb.KeyValue) int {
			return bytes.Compare(x.Key, y.Key)
		})
		return c
	}
	return proto.Equal(canon(ra), canon(rb))
}

// sortedBy reports whether kvs are in the order r asks for, ties allowed. It
// is false for requests that do not sort (the order is then the key order,
// which has no ties).
func sortedBy(r *pb.RangeRequest, kvs []*mvccpb.KeyValue) bool {
	order := r.SortOrder
	if r.SortTarget != pb.RangeRequest_KEY && order == pb.RangeRequest_NONE {
		order = pb.RangeRequest_ASCEND
	}
	var cmpKV func(x, y *mvccpb.KeyValue) int
	switch r.SortTarget {
	case pb.RangeRequest_VERSION:
		cmpKV = func(x, y *mvccpb.KeyValue) int { return stdcmp.Compare(x.Version, y.Version) }
	case pb.RangeRequest_CREATE:
		cmpKV = func(x, y *mvccpb.KeyValue) int { return stdcmp.Compare(x.CreateRevision, y.CreateRevision) }
	case pb.RangeRequest_MOD:
		cmpKV = func(x, y *mvccpb.KeyValue) int { return stdcmp.Compare(x.ModRevision, y.ModRevision) }
	case pb.RangeRequest_VALUE:
		cmpKV = func(x, y *mvccpb.KeyValue) int { return bytes.Compare(x.Value, y.Value) }
	default:
		return false
	}
	for i := 1; i < len(kvs); i++ {
		c := cmpKV(kvs[i-1], kvs[i])
		if (order == pb.RangeRequest_ASCEND && c > 0) || (order == pb.RangeRequest_DESCEND && c < 0) {
			return false
		}
	}
	return order == pb.RangeRequest_ASCEND || order == pb.RangeRequest_DESCEND
}
