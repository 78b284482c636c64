// Package alarm keeps the cluster's alarms (NOSPACE, CORRUPT): which member
// raised which alarm. Alarms are raised and cleared through Raft, so every
// member holds the same set; they are stored in the member's database.
package alarm

import (
	"encoding/binary"
	"fmt"
	"sort"
	"sync"

	"github.com/cockroachdb/pebble/v2"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"

	"github.com/keeldb/keel/storage"
)

type key struct {
	member uint64
	typ    pb.AlarmType
}

// Store is the set of active alarms. Reads are safe from any goroutine;
// changes come from the apply loop.
type Store struct {
	mu     sync.RWMutex
	active map[key]struct{}
}

func dbKey(k key) []byte {
	b := binary.BigEndian.AppendUint64([]byte{storage.PrefixAlarms}, k.member)
	return binary.BigEndian.AppendUint32(b, uint32(k.typ))
}

// Load reads the alarms kept in db.
func Load(db pebble.Reader) (*Store, error) {
	active, err := read(db)
	if err != nil {
		return nil, err
	}
	return &Store{active: active}, nil
}

// Reload replaces the alarms with those kept in db, after the member's state
// was replaced by a Raft snapshot. Apply loop only.
func (s *Store) Reload(db pebble.Reader) error {
	active, err := read(db)
	if err != nil {
		return err
	}
	s.mu.Lock()
	s.active = active
	s.mu.Unlock()
	return nil
}

func read(db pebble.Reader) (map[key]struct{}, error) {
	active := make(map[key]struct{})
	it, err := db.NewIter(&pebble.IterOptions{LowerBound: []byte{storage.PrefixAlarms}, UpperBound: []byte{storage.PrefixAlarms + 1}})
	if err != nil {
		return nil, err
	}
	defer it.Close()
	for ok := it.First(); ok; ok = it.Next() {
		k := it.Key()
		if len(k) != 13 {
			return nil, fmt.Errorf("alarm record %x is corrupt", k)
		}
		active[key{binary.BigEndian.Uint64(k[1:]), pb.AlarmType(binary.BigEndian.Uint32(k[9:]))}] = struct{}{}
	}
	if err := it.Error(); err != nil {
		return nil, err
	}
	return active, nil
}

// Get returns the active alarms of type typ (every alarm for NONE), ordered
// by type then member.
func (s *Store) Get(typ pb.AlarmType) []*pb.AlarmMember {
	s.mu.RLock()
	defer s.mu.RUnlock()
	var out []*pb.AlarmMember
	for k := range s.active {
		if typ == pb.AlarmType_NONE || k.typ == typ {
			out = append(out, &pb.AlarmMember{MemberID: k.member, Alarm: k.typ})
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Alarm != out[j].Alarm {
			return out[i].Alarm < out[j].Alarm
		}
		return out[i].MemberID < out[j].MemberID
	})
	return out
}

// Active reports whether any member raised an alarm of type typ.
func (s *Store) Active(typ pb.AlarmType) bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	for k := range s.active {
		if k.typ == typ {
			return true
		}
	}
	return false
}

// Activate raises alarm typ for member in the apply batch b and returns it
// (also when it was already raised).
func (s *Store) Activate(b *pebble.Batch, member uint64, typ pb.AlarmType) (*pb.AlarmMember, error) {
	k := key{member, typ}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.active[k]; !ok {
		if err := b.Set(dbKey(k), nil, nil); err != nil {
			return nil, err
		}
		s.active[k] = struct{}{}
	}
	return &pb.AlarmMember{MemberID: member, Alarm: typ}, nil
}

// Deactivate clears alarm typ of member in the apply batch b and returns the
// cleared alarm, or nil if it was not raised.
func (s *Store) Deactivate(b *pebble.Batch, member uint64, typ pb.AlarmType) (*pb.AlarmMember, error) {
	k := key{member, typ}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.active[k]; !ok {
		return nil, nil
	}
	if err := b.Delete(dbKey(k), nil); err != nil {
		return nil, err
	}
	delete(s.active, k)
	return &pb.AlarmMember{MemberID: member, Alarm: typ}, nil
}
