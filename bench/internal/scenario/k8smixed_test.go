package scenario

import (
	"strings"
	"testing"
)

func TestParseK8sMixReadsDefaultAndRoundTrips(t *testing.T) {
	m, err := ParseK8sMix(DefaultK8sMix)
	if err != nil {
		t.Fatal(err)
	}
	want := K8sMix{opCreate: 10, opUpdate: 50, opDelete: 5, opGet: 25, opList: 8, opLeaseUpdate: 2}
	if m != want {
		t.Fatalf("ParseK8sMix(%q) = %v, want %v", DefaultK8sMix, m, want)
	}
	again, err := ParseK8sMix(m.String())
	if err != nil || again != m {
		t.Fatalf("ParseK8sMix(%q) = %v, %v; want %v", m.String(), again, err, m)
	}
}

func TestParseK8sMixRejectsBadInput(t *testing.T) {
	for _, s := range []string{"", "update", "update=x", "update=-1", "scan=3", "update=1,update=2", "update=0,get=0"} {
		if _, err := ParseK8sMix(s); err == nil {
			t.Errorf("ParseK8sMix(%q) accepted", s)
		}
	}
}

func TestOpPickerIsDeterministicPerSeedAndWorker(t *testing.T) {
	mix, _ := ParseK8sMix(DefaultK8sMix)
	draw := func(seed uint64, worker int) []k8sOp {
		p := newOpPicker(mix, seed, worker)
		ops := make([]k8sOp, 1000)
		for i := range ops {
			ops[i] = p.next()
		}
		return ops
	}
	a, b := draw(1, 3), draw(1, 3)
	if !equalOps(a, b) {
		t.Fatal("the same seed and worker drew different sequences")
	}
	if equalOps(a, draw(1, 4)) || equalOps(a, draw(2, 3)) {
		t.Fatal("another worker or seed drew the same sequence")
	}
}

func equalOps(a, b []k8sOp) bool {
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return len(a) == len(b)
}

func TestOpPickerFollowsTheWeights(t *testing.T) {
	mix := K8sMix{opUpdate: 3, opGet: 1}
	p := newOpPicker(mix, 7, 0)
	const n = 40000
	var count [numK8sOps]int
	for range n {
		count[p.next()]++
	}
	if count[opCreate]+count[opDelete]+count[opList]+count[opLeaseUpdate] != 0 {
		t.Fatalf("ops with weight 0 drawn: %v", count)
	}
	if got := float64(count[opUpdate]) / n; got < 0.73 || got > 0.77 {
		t.Fatalf("update drawn %.3f of the time, want about 0.75", got)
	}
}

func TestK8sPartitionGivesEveryObjectToOneWorker(t *testing.T) {
	for _, tc := range []struct{ objects, clients int }{{2000, 20}, {20000, 100}, {7, 3}, {2, 5}, {0, 4}} {
		sum := 0
		keys := map[string]bool{}
		for w := range tc.clients {
			n := k8sPartition(tc.objects, tc.clients, w)
			sum += n
			for seq := range n {
				key := k8sObjectKey("/registry/pods/", w, seq)
				if keys[key] {
					t.Fatalf("%v: key %s owned twice", tc, key)
				}
				keys[key] = true
			}
		}
		if sum != tc.objects {
			t.Fatalf("%v: partitions sum to %d", tc, sum)
		}
	}
}

func TestK8sKeysFollowApiserverLayout(t *testing.T) {
	if got, want := k8sObjectKey("/registry/pods/", 3, 17), "/registry/pods/keelbench/w3-o17"; got != want {
		t.Fatalf("k8sObjectKey = %q, want %q", got, want)
	}
	if got := k8sLeaseKey(3, 0); got != K8sLeasePrefix+"node-3" {
		t.Fatalf("k8sLeaseKey(3, 0) = %q", got)
	}
	if k8sLeaseKey(3, 1) == k8sLeaseKey(3, 0) || !strings.HasPrefix(k8sLeaseKey(3, 1), K8sLeasePrefix) {
		t.Fatalf("a new lease generation must be another key under the lease prefix: %q", k8sLeaseKey(3, 1))
	}
}

func TestK8sObjectsSpreadOverResources(t *testing.T) {
	// With fewer objects per worker than resources, every resource
	// still gets objects.
	var per [8]int
	for w := range 100 {
		for seq := range 2 {
			per[k8sResourceOf(w, seq, len(per))]++
		}
	}
	for r, n := range per {
		if n < 20 {
			t.Fatalf("resource %d got %d of 200 objects: %v", r, n, per)
		}
	}
}

func TestK8sIsLargeHitsTheFraction(t *testing.T) {
	large := 0
	for w := range 100 {
		for seq := range 200 {
			if k8sIsLarge(1, w, seq, 0.1) {
				large++
			}
		}
	}
	if large < 1800 || large > 2200 {
		t.Fatalf("%d of 20000 objects large, want about 2000", large)
	}
	if k8sIsLarge(1, 0, 0, 0) || !k8sIsLarge(1, 0, 0, 1) {
		t.Fatal("fractions 0 and 1 must give none and all")
	}
}

func TestK8sMixedValidateRejectsOverlappingPrefixes(t *testing.T) {
	mix, _ := ParseK8sMix(DefaultK8sMix)
	s := K8sMixed{Members: 1, Clients: 10, Conns: 2, Duration: 1, Resources: DefaultK8sResources, Objects: 100,
		LargeFraction: 0.1, SmallSize: 1, LargeSize: 1, ListLimit: 500, Mix: mix}
	if err := s.Validate(); err != nil {
		t.Fatalf("defaults rejected: %v", err)
	}
	for _, res := range [][]string{
		{"/registry/pods/", "/registry/pods/x/"},
		{"/registry/leases/"},
		{"/registry/pods"},
	} {
		s.Resources = res
		if err := s.Validate(); err == nil {
			t.Errorf("resources %q accepted", res)
		}
	}
}
