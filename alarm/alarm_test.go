package alarm

import (
	"testing"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
)

func openDB(t *testing.T) *pebble.DB {
	t.Helper()
	db, err := pebble.Open("db", &pebble.Options{FS: vfs.NewMem()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// TestReloadReplacesTheAlarms reloads a store over a database whose alarms
// were replaced (a snapshot install): it reports exactly the new ones.
func TestReloadReplacesTheAlarms(t *testing.T) {
	db := openDB(t)
	s, err := Load(db)
	if err != nil {
		t.Fatal(err)
	}
	b := db.NewBatch()
	if _, err := s.Activate(b, 1, pb.AlarmType_NOSPACE); err != nil {
		t.Fatal(err)
	}
	if err := b.Commit(pebble.Sync); err != nil {
		t.Fatal(err)
	}
	b.Close()

	// Replace the stored alarms underneath the store: member 1's NOSPACE
	// is gone, member 2's CORRUPT is raised.
	other, _ := Load(openDB(t))
	b = db.NewBatch()
	if err := b.Delete(dbKey(key{1, pb.AlarmType_NOSPACE}), nil); err != nil {
		t.Fatal(err)
	}
	if _, err := other.Activate(b, 2, pb.AlarmType_CORRUPT); err != nil {
		t.Fatal(err)
	}
	if err := b.Commit(pebble.Sync); err != nil {
		t.Fatal(err)
	}
	b.Close()

	if err := s.Reload(db); err != nil {
		t.Fatal(err)
	}
	if s.Active(pb.AlarmType_NOSPACE) {
		t.Error("NOSPACE still active after Reload")
	}
	got := s.Get(pb.AlarmType_NONE)
	if len(got) != 1 || got[0].MemberID != 2 || got[0].Alarm != pb.AlarmType_CORRUPT {
		t.Errorf("alarms after Reload: %v, want member 2's CORRUPT", got)
	}
}
