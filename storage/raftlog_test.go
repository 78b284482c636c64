package storage

import (
	"errors"
	"fmt"
	"math"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"
)

func ent(index, term uint64, data string) *raftpb.Entry {
	return &raftpb.Entry{Index: new(index), Term: new(term), Type: raftpb.EntryType_EntryNormal.Enum(), Data: []byte(data)}
}

func openLog(t *testing.T, fs vfs.FS) (*Engine, *RaftLog) {
	t.Helper()
	e, err := Open("db", Options{FS: fs})
	if err != nil {
		t.Fatal(err)
	}
	l, err := OpenRaftLog(e)
	if err != nil {
		t.Fatal(err)
	}
	return e, l
}

func terms(t *testing.T, l *RaftLog, lo, hi uint64) []uint64 {
	t.Helper()
	ents, err := l.Entries(lo, hi, 1<<30)
	if err != nil {
		t.Fatalf("Entries(%d, %d): %v", lo, hi, err)
	}
	var out []uint64
	for i, e := range ents {
		if e.GetIndex() != lo+uint64(i) {
			t.Fatalf("entry %d has index %d", lo+uint64(i), e.GetIndex())
		}
		out = append(out, e.GetTerm())
	}
	return out
}

func TestRaftLogAppendOverwriteAndReopen(t *testing.T) {
	fs := vfs.NewMem()
	e, l := openLog(t, fs)
	hs := &raftpb.HardState{Term: new(uint64(2)), Vote: new(uint64(7)), Commit: new(uint64(3))}
	if err := l.Save(hs, []*raftpb.Entry{ent(1, 1, "a"), ent(2, 1, "b"), ent(3, 2, "c"), ent(4, 2, "d")}, true); err != nil {
		t.Fatal(err)
	}
	// A new leader overwrites the conflicting suffix from index 3.
	if err := l.Save(nil, []*raftpb.Entry{ent(3, 3, "x")}, true); err != nil {
		t.Fatal(err)
	}
	if last, _ := l.LastIndex(); last != 3 {
		t.Fatalf("last index %d after overwrite, want 3", last)
	}
	if got := terms(t, l, 1, 4); len(got) != 3 || got[2] != 3 {
		t.Fatalf("terms after overwrite: %v", got)
	}
	if _, err := l.Term(4); !errors.Is(err, raft.ErrUnavailable) {
		t.Fatalf("Term of a dropped entry: %v", err)
	}
	if err := l.Save(nil, []*raftpb.Entry{ent(5, 3, "gap")}, true); err == nil {
		t.Fatal("appending after a gap succeeded")
	}
	e.Close()

	e, l = openLog(t, fs)
	defer e.Close()
	gotHS, _, _ := l.InitialState()
	if !proto.Equal(gotHS, hs) {
		t.Fatalf("hard state after reopen: %v, want %v", gotHS, hs)
	}
	if last, _ := l.LastIndex(); last != 3 {
		t.Fatalf("last index after reopen: %d", last)
	}
	ents, _ := l.Entries(3, 4, 1<<30)
	if string(ents[0].Data) != "x" {
		t.Fatalf("entry 3 after reopen: %q", ents[0].Data)
	}
}

func TestRaftLogEntriesRespectsMaxSize(t *testing.T) {
	e, l := openLog(t, vfs.NewMem())
	defer e.Close()
	var ents []*raftpb.Entry
	for i := uint64(1); i <= 10; i++ {
		ents = append(ents, ent(i, 1, "0123456789"))
	}
	if err := l.Save(nil, ents, true); err != nil {
		t.Fatal(err)
	}
	one := uint64(proto.Size(ents[0]))
	got, err := l.Entries(1, 11, 3*one)
	if err != nil || len(got) != 3 {
		t.Fatalf("with room for 3: %d entries, %v", len(got), err)
	}
	got, err = l.Entries(1, 11, 0)
	if err != nil || len(got) != 1 {
		t.Fatalf("with no room: %d entries (want at least one), %v", len(got), err)
	}
}

func TestRaftLogCompactionBehindSnapshot(t *testing.T) {
	fs := vfs.NewMem()
	e, l := openLog(t, fs)
	var ents []*raftpb.Entry
	for i := uint64(1); i <= 20; i++ {
		ents = append(ents, ent(i, 1+i/10, "e"))
	}
	if err := l.Save(nil, ents, true); err != nil {
		t.Fatal(err)
	}
	cs := &raftpb.ConfState{Voters: []uint64{1}}
	if err := l.CreateSnapshot(15, 2, cs, 12); err != nil {
		t.Fatal(err)
	}
	check := func(l *RaftLog) {
		t.Helper()
		if first, _ := l.FirstIndex(); first != 13 {
			t.Fatalf("first index %d, want 13", first)
		}
		if term, err := l.Term(12); err != nil || term != 2 {
			t.Fatalf("term of the compaction point: %d, %v", term, err)
		}
		if _, err := l.Term(11); !errors.Is(err, raft.ErrCompacted) {
			t.Fatalf("term of a compacted entry: %v", err)
		}
		if _, err := l.Entries(12, 14, 1<<30); !errors.Is(err, raft.ErrCompacted) {
			t.Fatalf("entries from a compacted index: %v", err)
		}
		snap, _ := l.Snapshot()
		if snap.GetMetadata().GetIndex() != 15 || snap.GetMetadata().GetTerm() != 2 || !proto.Equal(snap.GetMetadata().GetConfState(), cs) {
			t.Fatalf("snapshot metadata: %v", snap.GetMetadata())
		}
		if got := terms(t, l, 13, 21); len(got) != 8 {
			t.Fatalf("entries left: %v", got)
		}
	}
	check(l)
	if err := l.CreateSnapshot(15, 2, cs, 16); err == nil {
		t.Fatal("compacting past the snapshot succeeded")
	}
	e.Close()
	e, l = openLog(t, fs)
	defer e.Close()
	check(l)
}

// TestEntriesFromTheTailMatchPebble reads every range of a log that was
// appended to, overwritten and compacted, and checks that entries served
// from the in-memory tail equal those read back from Pebble, and that a
// slice handed out earlier is not changed by later saves.
func TestEntriesFromTheTailMatchPebble(t *testing.T) {
	e, err := Open("db", Options{FS: vfs.NewMem()})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	l, err := OpenRaftLog(e)
	if err != nil {
		t.Fatal(err)
	}
	ent := func(i, term uint64) *raftpb.Entry {
		return &raftpb.Entry{Index: new(i), Term: new(term), Type: raftpb.EntryType_EntryNormal.Enum(), Data: []byte(fmt.Sprintf("e%d.%d", i, term))}
	}
	save := func(from, to, term uint64) {
		t.Helper()
		var ents []*raftpb.Entry
		for i := from; i <= to; i++ {
			ents = append(ents, ent(i, term))
		}
		if err := l.Save(&raftpb.HardState{Term: new(term), Commit: new(uint64(0))}, ents, true); err != nil {
			t.Fatal(err)
		}
	}
	check := func() {
		t.Helper()
		first, _ := l.FirstIndex()
		last, _ := l.LastIndex()
		fresh, err := OpenRaftLog(e) // no tail: reads Pebble
		if err != nil {
			t.Fatal(err)
		}
		for lo := first; lo <= last; lo++ {
			for hi := lo + 1; hi <= last+1; hi++ {
				got, err := l.Entries(lo, hi, math.MaxUint64)
				if err != nil {
					t.Fatal(err)
				}
				want, err := fresh.Entries(lo, hi, math.MaxUint64)
				if err != nil {
					t.Fatal(err)
				}
				if len(got) != len(want) {
					t.Fatalf("[%d, %d): %d entries, want %d", lo, hi, len(got), len(want))
				}
				for i := range got {
					if !proto.Equal(got[i], want[i]) {
						t.Fatalf("[%d, %d) entry %d: %v, want %v", lo, hi, i, got[i], want[i])
					}
				}
				gt, _ := l.Term(lo)
				wt, _ := fresh.Term(lo)
				if gt != wt {
					t.Fatalf("term of %d: %d, want %d", lo, gt, wt)
				}
			}
		}
	}
	save(1, 10, 1)
	check()
	held, err := l.Entries(5, 11, math.MaxUint64)
	if err != nil {
		t.Fatal(err)
	}
	save(8, 9, 2) // overwrite a suffix, in place in the tail's array
	check()
	if held[3].GetTerm() != 1 || held[3].GetIndex() != 8 {
		t.Fatalf("a slice returned before the overwrite changed: entry %d term %d", held[3].GetIndex(), held[3].GetTerm())
	}
	for i := uint64(10); i < 10+tailEntries; i += 1000 {
		save(i, i+999, 2) // more than the tail holds
	}
	if err := l.CreateSnapshot(tailEntries/2, 2, &raftpb.ConfState{}, tailEntries/2); err != nil {
		t.Fatal(err)
	}
	got, err := l.Entries(tailEntries/2+1, tailEntries/2+3, 1)
	if err != nil || len(got) != 1 {
		t.Fatalf("size-limited read: %d entries, %v; want 1", len(got), err)
	}
	if _, err := l.Entries(tailEntries/2, tailEntries/2+1, math.MaxUint64); err != raft.ErrCompacted {
		t.Fatalf("read below the compaction point: %v, want ErrCompacted", err)
	}
}

// TestEntrySizeIsTheEncodedSize checks the reflection-free size against
// proto.Size.
func TestEntrySizeIsTheEncodedSize(t *testing.T) {
	for _, e := range []*raftpb.Entry{
		{},
		{Index: new(uint64(1)), Term: new(uint64(1)), Type: raftpb.EntryType_EntryNormal.Enum()},
		{Index: new(uint64(1 << 40)), Term: new(uint64(300)), Type: raftpb.EntryType_EntryConfChangeV2.Enum(), Data: []byte{}},
		{Index: new(uint64(7)), Term: new(uint64(2)), Type: raftpb.EntryType_EntryNormal.Enum(), Data: make([]byte, 200)},
		{Index: new(uint64(7)), Data: make([]byte, 1<<20)},
	} {
		if got, want := entrySize(e), uint64(proto.Size(e)); got != want {
			t.Errorf("entrySize(%v) = %d, want %d", e, got, want)
		}
	}
}
