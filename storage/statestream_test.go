package storage

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
	"go.etcd.io/raft/v3/raftpb"
)

type kv struct{ k, v string }

func encodeState(t *testing.T, recs []kv) []byte {
	t.Helper()
	var buf bytes.Buffer
	sw, err := NewStateWriter(&buf)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range recs {
		if err := sw.Add([]byte(r.k), []byte(r.v)); err != nil {
			t.Fatal(err)
		}
	}
	if err := sw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func decodeState(data []byte) ([]kv, error) {
	sr, err := NewStateReader(bytes.NewReader(data))
	if err != nil {
		return nil, err
	}
	var out []kv
	for {
		k, v, err := sr.Next()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return out, err
		}
		out = append(out, kv{string(k), string(v)})
	}
}

func TestStateStreamRoundTrips(t *testing.T) {
	recs := []kv{{"a", ""}, {"k\x00key", "value"}, {"m" + strings.Repeat("x", 300), strings.Repeat("v", 1<<17)}}
	got, err := decodeState(encodeState(t, recs))
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(got) != fmt.Sprint(recs) {
		t.Fatalf("decoded %d records, want %d: %q", len(got), len(recs), got)
	}
	if got, err := decodeState(encodeState(t, nil)); err != nil || len(got) != 0 {
		t.Fatalf("empty stream decoded to %q, %v", got, err)
	}
}

func TestStateStreamRejectsTruncatedInput(t *testing.T) {
	data := encodeState(t, []kv{{"k1", "v1"}, {"k2", "value two"}})
	for n := 0; n < len(data); n++ {
		_, err := decodeState(data[:n])
		if !errors.Is(err, ErrCorruptState) {
			t.Fatalf("stream cut to %d of %d bytes: error %v, want ErrCorruptState", n, len(data), err)
		}
	}
}

func TestStateStreamRejectsCorruptInput(t *testing.T) {
	good := encodeState(t, []kv{{"k1", "v1"}, {"k2", "v2"}})
	end := bytes.LastIndexByte(good, 0) // the end record's marker
	cases := map[string][]byte{
		"bad magic":       append([]byte("NOTKEEL!!"), good[9:]...),
		"future version":  append(append([]byte(stateMagic), stateVersion+1), good[10:]...),
		"wrong count":     append(append([]byte(nil), good[:end+1]...), 3),
		"trailing data":   append(append([]byte(nil), good...), 'x'),
		"huge key length": append(append([]byte(nil), good[:10]...), 0xff, 0xff, 0xff, 0xff, 0x7f),
		"huge value":      append(append([]byte(nil), good[:10]...), 1, 'k', 0xff, 0xff, 0xff, 0xff, 0x7f),
		"overlong length": append(append([]byte(nil), good[:10]...), 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01),
	}
	for name, data := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := decodeState(data)
			if err == nil {
				t.Fatal("decoded without error")
			}
			if !errors.Is(err, ErrCorruptState) {
				t.Fatalf("error %v does not wrap ErrCorruptState", err)
			}
			t.Logf("%v", err)
		})
	}
}

// fillEngine writes the keys of every namespace: state, identity and Raft.
func fillEngine(t *testing.T, e *Engine, tag string, n int) {
	t.Helper()
	b := e.DB().NewBatch()
	defer b.Close()
	for _, p := range []byte{PrefixKV, PrefixRevLog, PrefixMVCCMeta, PrefixMembers, PrefixAlarms, PrefixLease, PrefixMeta} {
		for i := range n {
			if err := b.Set(fmt.Appendf([]byte{p}, "%s-%03d", tag, i), fmt.Appendf(nil, "%c-%s-%d", p, tag, i), nil); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := SetApplied(b, 100); err != nil {
		t.Fatal(err)
	}
	if err := SetIdentity(b, Identity{MemberID: 1, ClusterID: 2}); err != nil {
		t.Fatal(err)
	}
	if err := setProto(b, keyConfState, &raftpb.ConfState{Voters: []uint64{1, 2, 3}}); err != nil {
		t.Fatal(err)
	}
	if err := b.Set(logKey(7), []byte("raft entry"), nil); err != nil {
		t.Fatal(err)
	}
	if err := b.Commit(pebble.Sync); err != nil {
		t.Fatal(err)
	}
}

// dump returns every key and value in r, in order.
func dump(t *testing.T, r pebble.Reader, keep func([]byte) bool) []kv {
	t.Helper()
	it, err := r.NewIter(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer it.Close()
	var out []kv
	for ok := it.First(); ok; ok = it.Next() {
		if keep(it.Key()) {
			out = append(out, kv{string(it.Key()), string(it.Value())})
		}
	}
	return out
}

func TestOpenStateStreamsEveryStateKeyButNotRaftOrIdentity(t *testing.T) {
	e, err := Open("db", Options{FS: vfs.NewMem()})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	fillEngine(t, e, "a", 50)
	st, err := e.OpenState()
	if err != nil {
		t.Fatal(err)
	}
	// Writes after the stream was opened do not show in it.
	fillEngine(t, e, "later", 1)
	data, err := io.ReadAll(st)
	if err != nil {
		t.Fatal(err)
	}
	st.Close()
	if st.Applied() != 100 {
		t.Errorf("stream reports applied index %d, want 100", st.Applied())
	}
	if cs := st.ConfState(); len(cs.Voters) != 3 {
		t.Errorf("stream reports conf state %v", cs)
	}
	got, err := decodeState(data)
	if err != nil {
		t.Fatal(err)
	}
	want := 7*50 + 2 // the namespaces, the applied index and the conf state
	if len(got) != want {
		t.Fatalf("streamed %d records, want %d", len(got), want)
	}
	for i, r := range got {
		if !isStateKey([]byte(r.k)) || strings.Contains(r.k, "later") {
			t.Errorf("streamed key %q", r.k)
		}
		if i > 0 && got[i-1].k >= r.k {
			t.Errorf("records out of order: %q then %q", got[i-1].k, r.k)
		}
	}
}

func TestClosingAStateStreamEarlyReleasesIt(t *testing.T) {
	e, err := Open("db", Options{FS: vfs.NewMem()})
	if err != nil {
		t.Fatal(err)
	}
	fillEngine(t, e, "a", 2000)
	st, err := e.OpenState()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(st, make([]byte, 100)); err != nil {
		t.Fatal(err)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	// A stream left open is ended by closing the engine.
	open, err := e.OpenState()
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Close(); err != nil {
		t.Fatalf("close engine with a stream open: %v", err)
	}
	if _, err := io.ReadAll(open); !errors.Is(err, ErrEngineClosed) {
		t.Fatalf("reading a stream after the engine closed: %v, want ErrEngineClosed", err)
	}
	open.Close()
	if _, err := e.OpenState(); !errors.Is(err, ErrEngineClosed) {
		t.Fatalf("OpenState on a closed engine: %v", err)
	}
}
