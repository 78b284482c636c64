package integration

import (
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// TestExpiredLeaseKeysAreDeletedWhileAuthIsEnabled: the member revokes an
// expired lease as root, as etcd does, so its keys go even though the
// revocation carries no client's token.
func TestExpiredLeaseKeysAreDeletedWhileAuthIsEnabled(t *testing.T) {
	t.Parallel()
	m := startMember(t)
	root := enableAuth(t, m.cli(), memberClient(t, m))
	l, err := root.Grant(ctx(t), 1)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := root.Put(ctx(t), "k", "v", clientv3.WithLease(l.ID)); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(time.Duration(l.TTL)*time.Second + 30*time.Second)
	for attempt := 0; ; attempt++ {
		resp, err := root.Get(ctx(t), "k")
		if err != nil {
			t.Fatal(err)
		}
		if resp.Count == 0 {
			return
		}
		if time.Now().After(deadline) || attempt > 1000 {
			t.Fatalf("key of lease %x (TTL %d s) still there", l.ID, l.TTL)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestWriteWithoutUserRefusedWhileAuthIsEnabled: a put without a token is
// refused with etcd's "user name is empty" and writes nothing.
func TestWriteWithoutUserRefusedWhileAuthIsEnabled(t *testing.T) {
	t.Parallel()
	m := startMember(t)
	root := enableAuth(t, m.cli(), memberClient(t, m))
	_, err := m.cli().Put(ctx(t), "k", "v")
	wantErr(t, err, rpctypes.ErrGRPCUserEmpty)
	resp, err := root.Get(ctx(t), "k")
	if err != nil {
		t.Fatal(err)
	}
	if resp.Count != 0 {
		t.Fatalf("refused put wrote %v", resp.Kvs)
	}
}
