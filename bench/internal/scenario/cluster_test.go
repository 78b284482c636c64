package scenario

import (
	"slices"
	"testing"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/keeldb/keel/bench/internal/proc"
	"github.com/keeldb/keel/bench/internal/report"
)

func testCluster(n, leader int) *benchCluster {
	c := &proc.Cluster{}
	for i := range n {
		c.Members = append(c.Members, &proc.Member{Name: string(rune('a' + i)), Endpoint: "http://m" + string(rune('a'+i))})
	}
	return &benchCluster{Cluster: c, leader: c.Members[leader]}
}

func TestLeaderFirstPutsTheLeaderFirstAndKeepsTheFollowersInOrder(t *testing.T) {
	for leader, want := range [][]string{
		{"http://ma", "http://mb", "http://mc"},
		{"http://mb", "http://ma", "http://mc"},
		{"http://mc", "http://ma", "http://mb"},
	} {
		if got := testCluster(3, leader).leaderFirst(); !slices.Equal(got, want) {
			t.Errorf("leader %d: leaderFirst = %v, want %v", leader, got, want)
		}
	}
}

func TestLeaderShareIsTheConnectionsOnTheFirstEndpoint(t *testing.T) {
	for _, tc := range []struct {
		conns, members int
		onLeader       bool
		want           float64
	}{
		{1, 3, false, 1},
		{3, 3, false, 1.0 / 3},
		{10, 3, false, 4.0 / 10},
		{100, 3, false, 34.0 / 100},
		{10, 3, true, 1},
	} {
		var run report.Run
		testCluster(tc.members, 1).addLeaderShare(&run, tc.conns, tc.onLeader)
		if len(run.Figures) != 1 || run.Figures[0].Value != tc.want {
			t.Errorf("%d conns on %d members (on leader %v): %+v, want one figure of %v", tc.conns, tc.members, tc.onLeader, run.Figures, tc.want)
		}
	}
	var run report.Run
	testCluster(1, 0).addLeaderShare(&run, 10, false)
	if len(run.Figures) != 0 {
		t.Errorf("one member: %+v, want no figure", run.Figures)
	}
}

func TestWatchChecksThePreviousValueOfEveryEvent(t *testing.T) {
	kv := func(key string, create, mod, version int64) *mvccpb.KeyValue {
		return &mvccpb.KeyValue{Key: []byte(key), CreateRevision: create, ModRevision: mod, Version: version}
	}
	put := func(cur, prev *mvccpb.KeyValue) *clientv3.Event {
		return &clientv3.Event{Type: mvccpb.PUT, Kv: cur, PrevKv: prev}
	}
	del := func(key string, rev int64, prev *mvccpb.KeyValue) *clientv3.Event {
		return &clientv3.Event{Type: mvccpb.DELETE, Kv: &mvccpb.KeyValue{Key: []byte(key), ModRevision: rev}, PrevKv: prev}
	}
	wt := &k8sWatch{revs: map[string]int64{"/p/a": 5}}
	good := []*clientv3.Event{
		put(kv("/p/a", 5, 10, 2), kv("/p/a", 5, 5, 1)),    // update of a setup object
		put(kv("/p/b", 11, 11, 1), nil),                   // create
		put(kv("/p/b", 11, 12, 2), kv("/p/b", 11, 11, 1)), // update
		del("/p/a", 13, kv("/p/a", 5, 10, 2)),             // delete
		put(kv("/p/a", 14, 14, 1), nil),                   // created again
	}
	for _, ev := range good {
		wt.checkPrev(ev)
	}
	if wt.badPrev != 0 {
		t.Fatalf("%d bad previous values in a good history; the first: %s", wt.badPrev, wt.firstBadPrev)
	}
	bad := []*clientv3.Event{
		put(kv("/p/b", 11, 20, 3), nil),                   // update without its previous value
		put(kv("/p/b", 11, 21, 4), kv("/p/b", 11, 11, 1)), // stale previous value (last write at 20)
		put(kv("/p/b", 11, 22, 5), kv("/p/x", 11, 21, 4)), // another key's previous value
		del("/p/zz", 23, kv("/p/zz", 3, 3, 1)),            // a key that did not exist
		put(kv("/p/c", 24, 24, 1), kv("/p/c", 1, 1, 1)),   // a create with a previous value
	}
	for _, ev := range bad {
		wt.checkPrev(ev)
	}
	if wt.badPrev != int64(len(bad)) {
		t.Fatalf("%d bad previous values found, want %d", wt.badPrev, len(bad))
	}
}
