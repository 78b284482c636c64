package integration

import (
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// streamChunks reads a whole RangeStream through the raw stub.
func streamChunks(t *testing.T, kvc pb.KVClient, req *pb.RangeRequest) ([]*pb.RangeResponse, error) {
	t.Helper()
	stream, err := kvc.RangeStream(ctx(t), req)
	if err != nil {
		return nil, err
	}
	var out []*pb.RangeResponse
	for range 10000 {
		resp, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return out, err
		}
		out = append(out, resp.RangeResponse)
	}
	t.Fatal("RangeStream sent more than 10000 chunks")
	return nil, nil
}

// seedStreamData writes n keys s/000.. with values of valueSize bytes.
func seedStreamData(t *testing.T, cli *clientv3.Client, n, valueSize int) {
	t.Helper()
	for i := range n {
		put(t, cli, fmt.Sprintf("s/%03d", i), fmt.Sprintf("%0*d", valueSize, i))
	}
}

// TestRangeStreamMatchesRange checks that the chunks of a RangeStream
// concatenate to the Range answer, that only the last chunk carries the
// header, more and count, and the chunk sizes (10 keys first, then doubling
// while chunks are small).
func TestRangeStreamMatchesRange(t *testing.T) {
	t.Parallel()
	m := startMember(t)
	cli := m.cli()
	seedStreamData(t, cli, 250, 8)
	put(t, cli, "t", "after") // rev 252
	put(t, cli, "s/000", "x") // rev 253: s/000 version 2
	kvc := m.kv()
	s := memberStatus(t, m)
	tests := []struct {
		name   string
		req    *pb.RangeRequest
		chunks []int // keys per chunk
	}{
		{"prefix", &pb.RangeRequest{Key: []byte("s/"), RangeEnd: []byte("s0")}, []int{10, 20, 40, 80, 100}},
		{"every key", &pb.RangeRequest{Key: []byte{0}, RangeEnd: []byte{0}}, []int{10, 20, 40, 80, 101}},
		{"from key", &pb.RangeRequest{Key: []byte("s/200"), RangeEnd: []byte{0}}, []int{10, 20, 21}},
		{"limit", &pb.RangeRequest{Key: []byte("s/"), RangeEnd: []byte("s0"), Limit: 25}, []int{10, 15}},
		{"limit of a chunk", &pb.RangeRequest{Key: []byte("s/"), RangeEnd: []byte("s0"), Limit: 10}, []int{10}},
		{"limit under a chunk", &pb.RangeRequest{Key: []byte("s/"), RangeEnd: []byte("s0"), Limit: 3}, []int{3}},
		{"limit of every key", &pb.RangeRequest{Key: []byte("s/"), RangeEnd: []byte("s0"), Limit: 250}, []int{10, 20, 40, 80, 100}},
		{"limit above every key", &pb.RangeRequest{Key: []byte("s/"), RangeEnd: []byte("s0"), Limit: 1000}, []int{10, 20, 40, 80, 100}},
		// etcd only reads a limit of 0 as "no limit": a negative limit becomes
		// the chunk limit, which the range reads as unlimited, so the whole
		// range comes in one chunk.
		{"negative limit", &pb.RangeRequest{Key: []byte("s/"), RangeEnd: []byte("s0"), Limit: -1}, []int{250}},
		{"old revision", &pb.RangeRequest{Key: []byte("s/"), RangeEnd: []byte("s0"), Revision: 100}, []int{10, 20, 40, 29}},
		{"old revision with limit", &pb.RangeRequest{Key: []byte("s/"), RangeEnd: []byte("s0"), Revision: 100, Limit: 50}, []int{10, 20, 20}},
		{"keys only", &pb.RangeRequest{Key: []byte("s/"), RangeEnd: []byte("s0"), KeysOnly: true}, []int{10, 20, 40, 80, 100}},
		{"serializable", &pb.RangeRequest{Key: []byte("s/"), RangeEnd: []byte("s0"), Serializable: true}, []int{10, 20, 40, 80, 100}},
		{"count only", &pb.RangeRequest{Key: []byte("s/"), RangeEnd: []byte("s0"), CountOnly: true}, []int{0}},
		{"count only with limit", &pb.RangeRequest{Key: []byte("s/"), RangeEnd: []byte("s0"), CountOnly: true, Limit: 5}, []int{0}},
		{"single key", &pb.RangeRequest{Key: []byte("s/007")}, []int{1}},
		{"missing key", &pb.RangeRequest{Key: []byte("s/999")}, []int{0}},
		{"empty range", &pb.RangeRequest{Key: []byte("x"), RangeEnd: []byte("y")}, []int{0}},
		{"inverted range", &pb.RangeRequest{Key: []byte("s0"), RangeEnd: []byte("s/")}, []int{0}},
		{"explicit key order", &pb.RangeRequest{Key: []byte("s/"), RangeEnd: []byte("s0"), SortTarget: pb.RangeRequest_KEY, SortOrder: pb.RangeRequest_ASCEND}, []int{10, 20, 40, 80, 100}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			chunks, err := streamChunks(t, kvc, tt.req)
			if err != nil {
				t.Fatal(err)
			}
			want, err := kvc.Range(ctx(t), tt.req)
			if err != nil {
				t.Fatal(err)
			}
			sizes := make([]int, len(chunks))
			var kvs []string
			for i, c := range chunks {
				sizes[i] = len(c.Kvs)
				for _, kv := range c.Kvs {
					kvs = append(kvs, kvString(kv))
				}
				if i == len(chunks)-1 {
					continue
				}
				if c.Header != nil || c.More || c.Count != 0 {
					t.Errorf("chunk %d of %d: header %v more %v count %d, want none on all but the last", i, len(chunks), c.Header, c.More, c.Count)
				}
			}
			if fmt.Sprint(sizes) != fmt.Sprint(tt.chunks) {
				t.Errorf("chunk sizes %v, want %v", sizes, tt.chunks)
			}
			var wantKVs []string
			for _, kv := range want.Kvs {
				wantKVs = append(wantKVs, kvString(kv))
			}
			if strings.Join(kvs, ", ") != strings.Join(wantKVs, ", ") {
				t.Errorf("stream kvs\n  %v\nrange kvs\n  %v", kvs, wantKVs)
			}
			if len(chunks) == 0 {
				t.Fatal("no chunk at all")
			}
			last := chunks[len(chunks)-1]
			if last.More != want.More || last.Count != want.Count {
				t.Errorf("last chunk: more %v count %d; range: more %v count %d", last.More, last.Count, want.More, want.Count)
			}
			h := last.Header
			if h == nil || h.Revision != 253 || h.ClusterId != s.Header.ClusterId || h.MemberId != s.Header.MemberId || h.RaftTerm != s.RaftTerm {
				t.Errorf("last chunk header %v, want revision 253 cluster %x member %x term %d", h, s.Header.ClusterId, s.Header.MemberId, s.RaftTerm)
			}
		})
	}

	// The high-level client merges the chunks into the Range answer.
	ch, err := cli.GetStream(ctx(t), "s/", clientv3.WithPrefix(), clientv3.WithLimit(120))
	if err != nil {
		t.Fatal(err)
	}
	merged, err := clientv3.GetStreamToGetResponse(ch)
	if err != nil {
		t.Fatal(err)
	}
	direct := get(t, cli, "s/", clientv3.WithPrefix(), clientv3.WithLimit(120))
	if kvsString(merged.Kvs) != kvsString(direct.Kvs) || merged.Count != direct.Count || merged.More != direct.More || merged.Header.Revision != direct.Header.Revision {
		t.Fatalf("GetStream: %d kvs count %d more %v rev %d; Get: %d kvs count %d more %v rev %d",
			len(merged.Kvs), merged.Count, merged.More, merged.Header.Revision, len(direct.Kvs), direct.Count, direct.More, direct.Header.Revision)
	}
}

// TestRangeStreamChunksFollowMaxRequestBytes checks that chunk sizes adapt
// to --max-request-bytes: a chunk far above it halves the next one.
func TestRangeStreamChunksFollowMaxRequestBytes(t *testing.T) {
	t.Parallel()
	m := startMember(t, withMaxRequestBytes(2048))
	seedStreamData(t, m.cli(), 40, 1000)
	chunks, err := streamChunks(t, m.kv(), &pb.RangeRequest{Key: []byte("s/"), RangeEnd: []byte("s0")})
	if err != nil {
		t.Fatal(err)
	}
	sizes := make([]int, len(chunks))
	total := 0
	for i, c := range chunks {
		sizes[i] = len(c.Kvs)
		total += len(c.Kvs)
	}
	if want := "[10 5 2 2 2 2 2 2 2 2 2 2 2 2 1]"; fmt.Sprint(sizes) != want {
		t.Errorf("chunk sizes %v, want %s", sizes, want)
	}
	if last := chunks[len(chunks)-1]; total != 40 || last.Count != 40 || last.More {
		t.Errorf("%d keys streamed, last chunk count %d more %v; want 40, 40, false", total, last.Count, last.More)
	}
}

// TestRangeStreamInvalidRequestsFail covers RangeStream's errors: Range's
// request errors, and Unimplemented for sorting and revision filters.
func TestRangeStreamInvalidRequestsFail(t *testing.T) {
	t.Parallel()
	m := startMember(t)
	seedStreamData(t, m.cli(), 3, 1) // up to rev 4
	kvc := m.kv()
	unimplementedSort := status.Error(codes.Unimplemented, "RangeStream does not support custom sort orders")
	unimplementedFilter := status.Error(codes.Unimplemented, "RangeStream does not support revision filters")
	key, end := []byte("s/"), []byte("s0")
	tests := []struct {
		name string
		req  *pb.RangeRequest
		want error
	}{
		{"empty key", &pb.RangeRequest{}, rpctypes.ErrGRPCEmptyKey},
		{"invalid sort order", &pb.RangeRequest{Key: key, SortOrder: 7}, rpctypes.ErrGRPCInvalidSortOption},
		{"invalid sort target", &pb.RangeRequest{Key: key, SortTarget: 9}, rpctypes.ErrGRPCInvalidSortOption},
		{"future revision", &pb.RangeRequest{Key: key, RangeEnd: end, Revision: 5}, rpctypes.ErrGRPCFutureRev},
		{"future revision count only", &pb.RangeRequest{Key: key, RangeEnd: end, Revision: 5, CountOnly: true}, rpctypes.ErrGRPCFutureRev},
		{"descending keys", &pb.RangeRequest{Key: key, RangeEnd: end, SortOrder: pb.RangeRequest_DESCEND}, unimplementedSort},
		{"ascending values", &pb.RangeRequest{Key: key, RangeEnd: end, SortTarget: pb.RangeRequest_VALUE, SortOrder: pb.RangeRequest_ASCEND}, unimplementedSort},
		{"ascending mod revisions", &pb.RangeRequest{Key: key, RangeEnd: end, SortTarget: pb.RangeRequest_MOD, SortOrder: pb.RangeRequest_ASCEND}, unimplementedSort},
		{"descending create revisions", &pb.RangeRequest{Key: key, RangeEnd: end, SortTarget: pb.RangeRequest_CREATE, SortOrder: pb.RangeRequest_DESCEND}, unimplementedSort},
		{"descending versions", &pb.RangeRequest{Key: key, RangeEnd: end, SortTarget: pb.RangeRequest_VERSION, SortOrder: pb.RangeRequest_DESCEND}, unimplementedSort},
		{"min mod revision", &pb.RangeRequest{Key: key, RangeEnd: end, MinModRevision: 2}, unimplementedFilter},
		{"max mod revision", &pb.RangeRequest{Key: key, RangeEnd: end, MaxModRevision: 2}, unimplementedFilter},
		{"min create revision", &pb.RangeRequest{Key: key, RangeEnd: end, MinCreateRevision: 2}, unimplementedFilter},
		{"max create revision", &pb.RangeRequest{Key: key, RangeEnd: end, MaxCreateRevision: 2}, unimplementedFilter},
		{"sort and filter", &pb.RangeRequest{Key: key, RangeEnd: end, SortOrder: pb.RangeRequest_DESCEND, MaxCreateRevision: 2}, unimplementedSort},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			chunks, err := streamChunks(t, kvc, tt.req)
			if len(chunks) != 0 {
				t.Errorf("%d chunks before the error, want none", len(chunks))
			}
			wantErr(t, err, tt.want)
		})
	}
	// Through the high-level client, the error ends the channel.
	ch, err := m.cli().GetStream(ctx(t), "s/", clientv3.WithPrefix(), clientv3.WithSort(clientv3.SortByValue, clientv3.SortDescend))
	if err == nil {
		_, err = clientv3.GetStreamToGetResponse(ch)
	}
	wantErr(t, err, unimplementedSort)
}
