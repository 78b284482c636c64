package auth

import (
	"testing"

	"github.com/cockroachdb/pebble/v2"
	"go.etcd.io/etcd/api/v3/authpb"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
)

// permFixture: user "u" holds roles "key" (readwrite on key "k"), "rng"
// (read on [b, d)), "pfx" (write on prefix "p/"), "from" (read from "x"
// on) and "ovl" (read on [d, f), which joins "rng" into [b, f)); "w" holds
// "wonly" (write on [m, n)); "root" holds root; "none" holds nothing.
func permFixture(t *testing.T) *fixture {
	f := newFixture(t, Options{})
	f.addRole("key", perm(authpb.Permission_READWRITE, "k", ""))
	f.addRole("rng", perm(authpb.Permission_READ, "b", "d"))
	f.addRole("pfx", perm(authpb.Permission_WRITE, "p/", "p0"))
	f.addRole("from", perm(authpb.Permission_READ, "x", "\x00"))
	f.addRole("ovl", perm(authpb.Permission_READ, "d", "f"))
	f.addRole("wonly", perm(authpb.Permission_WRITE, "m", "n"))
	f.addUser("root", "pw", "root")
	f.addUser("u", "pw", "key", "rng", "pfx", "from", "ovl")
	f.addUser("w", "pw", "wonly")
	f.addUser("none", "pw")
	f.enable()
	return f
}

func TestPermissionShapes(t *testing.T) {
	f := permFixture(t)
	rev := f.s.Revision()
	u := &AuthInfo{Username: "u", Revision: rev}
	w := &AuthInfo{Username: "w", Revision: rev}
	denied := rpctypes.ErrGRPCPermissionDenied
	for _, tc := range []struct {
		name     string
		check    func() error
		wantDeny bool
	}{
		// a single key
		{"read the key", func() error { return f.s.IsRangePermitted(u, []byte("k"), nil) }, false},
		{"write the key", func() error { return f.s.IsPutPermitted(u, []byte("k")) }, false},
		{"delete the key", func() error { return f.s.IsDeleteRangePermitted(u, []byte("k"), nil) }, false},
		{"read a key after it", func() error { return f.s.IsRangePermitted(u, []byte("k0"), nil) }, true},
		{"read the key as a range of one", func() error { return f.s.IsRangePermitted(u, []byte("k"), []byte("k\x00")) }, false},
		{"read a range past the key", func() error { return f.s.IsRangePermitted(u, []byte("k"), []byte("k1")) }, true},
		// a range, read only
		{"read inside the range", func() error { return f.s.IsRangePermitted(u, []byte("bb"), nil) }, false},
		{"read the range end", func() error { return f.s.IsRangePermitted(u, []byte("f"), nil) }, true},
		{"read a subrange", func() error { return f.s.IsRangePermitted(u, []byte("b"), []byte("c")) }, false},
		{"write inside a read range", func() error { return f.s.IsPutPermitted(u, []byte("bb")) }, true},
		{"delete a subrange of a read range", func() error { return f.s.IsDeleteRangePermitted(u, []byte("b"), []byte("c")) }, true},
		// two roles' ranges joined: [b,d) + [d,f)
		{"read across two roles' ranges", func() error { return f.s.IsRangePermitted(u, []byte("c"), []byte("e")) }, false},
		{"read the whole joined range", func() error { return f.s.IsRangePermitted(u, []byte("b"), []byte("f")) }, false},
		{"read past the joined range", func() error { return f.s.IsRangePermitted(u, []byte("b"), []byte("f\x00")) }, true},
		{"read before the joined range", func() error { return f.s.IsRangePermitted(u, []byte("a"), []byte("c")) }, true},
		// a prefix, write only
		{"put under the prefix", func() error { return f.s.IsPutPermitted(u, []byte("p/x")) }, false},
		{"delete the prefix", func() error { return f.s.IsDeleteRangePermitted(u, []byte("p/"), []byte("p0")) }, false},
		{"delete a wider prefix", func() error { return f.s.IsDeleteRangePermitted(u, []byte("p"), []byte("q")) }, true},
		{"read under a write prefix", func() error { return f.s.IsRangePermitted(u, []byte("p/x"), nil) }, true},
		// from a key on
		{"read far past the from-key", func() error { return f.s.IsRangePermitted(u, []byte("zzz"), nil) }, false},
		{"read from the from-key on", func() error { return f.s.IsRangePermitted(u, []byte("x"), []byte("\x00")) }, false},
		{"read from before the from-key on", func() error { return f.s.IsRangePermitted(u, []byte("w"), []byte("\x00")) }, true},
		{"read everything", func() error { return f.s.IsRangePermitted(u, []byte("\x00"), []byte("\x00")) }, true},
		// another user's grants are not u's
		{"u writes w's range", func() error { return f.s.IsPutPermitted(u, []byte("m")) }, true},
		{"w writes its range", func() error { return f.s.IsPutPermitted(w, []byte("m")) }, false},
		{"w deletes its range", func() error { return f.s.IsDeleteRangePermitted(w, []byte("m"), []byte("n")) }, false},
		{"w reads its write range", func() error { return f.s.IsRangePermitted(w, []byte("m"), nil) }, true},
		{"user without roles reads", func() error {
			return f.s.IsRangePermitted(&AuthInfo{Username: "none", Revision: rev}, []byte("k"), nil)
		}, true},
		{"unknown user reads", func() error {
			return f.s.IsRangePermitted(&AuthInfo{Username: "ghost", Revision: rev}, []byte("k"), nil)
		}, true},
		// root may do anything
		{"root reads everything", func() error {
			return f.s.IsRangePermitted(&AuthInfo{Username: "root", Revision: rev}, []byte("\x00"), []byte("\x00"))
		}, false},
		{"root writes anything", func() error { return f.s.IsPutPermitted(&AuthInfo{Username: "root", Revision: rev}, []byte("zz")) }, false},
	} {
		err := tc.check()
		switch {
		case tc.wantDeny && err != denied:
			t.Errorf("%s: %v, want %v", tc.name, err, denied)
		case !tc.wantDeny && err != nil:
			t.Errorf("%s: %v, want permitted", tc.name, err)
		}
	}
}

func TestPermissionErrorsBeforeTheCheck(t *testing.T) {
	f := permFixture(t)
	rev := f.s.Revision()
	if err := f.s.IsRangePermitted(nil, []byte("k"), nil); err != rpctypes.ErrGRPCUserEmpty {
		t.Errorf("nil auth info: %v", err)
	}
	if err := f.s.IsPutPermitted(&AuthInfo{}, []byte("k")); err != rpctypes.ErrGRPCUserEmpty {
		t.Errorf("no user: %v", err)
	}
	if err := f.s.IsPutPermitted(&AuthInfo{Username: "root", Revision: rev - 1}, []byte("k")); err != rpctypes.ErrGRPCAuthOldRevision {
		t.Errorf("old revision, even for root: %v", err)
	}
	if err := f.s.IsAdminPermitted(&AuthInfo{Username: "root", Revision: rev - 1}); err != nil {
		t.Errorf("admin at an old revision (etcd does not compare): %v", err)
	}
	if err := f.s.IsAdminPermitted(&AuthInfo{Username: "u", Revision: rev}); err != rpctypes.ErrGRPCPermissionDenied {
		t.Errorf("admin check of a non-root user: %v", err)
	}
	if err := f.s.IsAdminPermitted(&AuthInfo{Username: "ghost", Revision: rev}); err != rpctypes.ErrGRPCUserNotFound {
		t.Errorf("admin check of an unknown user: %v", err)
	}
	if err := f.s.IsAdminPermitted(nil); err != rpctypes.ErrGRPCUserEmpty {
		t.Errorf("admin check without user: %v", err)
	}
}

func TestPermissionChangesApplyAtOnce(t *testing.T) {
	f := permFixture(t)
	f.must(func(b *pebble.Batch) error {
		_, err := f.s.RoleRevokePermission(b, &pb.AuthRoleRevokePermissionRequest{Role: "key", Key: []byte("k")})
		return err
	})
	u := &AuthInfo{Username: "u", Revision: f.s.Revision()}
	if err := f.s.IsRangePermitted(u, []byte("k"), nil); err != rpctypes.ErrGRPCPermissionDenied {
		t.Errorf("read after revoke: %v", err)
	}
	f.must(func(b *pebble.Batch) error {
		_, err := f.s.UserRevokeRole(b, &pb.AuthUserRevokeRoleRequest{Name: "u", Role: "ovl"})
		return err
	})
	u.Revision = f.s.Revision()
	if err := f.s.IsRangePermitted(u, []byte("c"), []byte("e")); err != rpctypes.ErrGRPCPermissionDenied {
		t.Errorf("read across after the joining role was revoked: %v", err)
	}
	if err := f.s.IsRangePermitted(u, []byte("b"), []byte("d")); err != nil {
		t.Errorf("read the remaining range: %v", err)
	}
}

func TestEverythingIsPermittedWhileDisabled(t *testing.T) {
	f := newFixture(t, Options{})
	if err := f.s.IsPutPermitted(nil, []byte("k")); err != nil {
		t.Error(err)
	}
	if err := f.s.IsRangePermitted(&AuthInfo{}, []byte("a"), []byte("\x00")); err != nil {
		t.Error(err)
	}
	if err := f.s.IsAdminPermitted(nil); err != nil {
		t.Error(err)
	}
}

// TestPermissionIntervalsMerge: a user's grants over all their roles are
// kept as their sorted union, touching intervals joined as etcd's interval
// tree joins them; checks on the union answer as on the grants.
func TestPermissionIntervalsMerge(t *testing.T) {
	f := newFixture(t, Options{})
	f.addRole("r1", perm(authpb.Permission_READ, "a", "c"), perm(authpb.Permission_READ, "h", "j"),
		perm(authpb.Permission_READ, "k", ""), perm(authpb.Permission_READ, "x", "\x00"))
	f.addRole("r2", perm(authpb.Permission_READ, "c", "e"), perm(authpb.Permission_READ, "b", "bb"),
		perm(authpb.Permission_READWRITE, "d", "g"), perm(authpb.Permission_READ, "k\x00", ""))
	f.addUser("root", "pw", "root")
	f.addUser("m", "pw", "r1", "r2")
	f.enable()

	want := "[a,g) [h,j) [k,k\x00\x00) [x,)"
	if got := f.s.perms["m"].read.union.String(); got != want {
		t.Errorf("merged read intervals %q, want %q", got, want)
	}
	if got := f.s.perms["m"].write.union.String(); got != "[d,g)" {
		t.Errorf("merged write intervals %q, want [d,g)", got)
	}

	m := &AuthInfo{Username: "m", Revision: f.s.Revision()}
	read := func(key, end string) func() error {
		return func() error {
			var e []byte
			if end != "" {
				e = []byte(end)
			}
			return f.s.IsRangePermitted(m, []byte(key), e)
		}
	}
	for _, tc := range []struct {
		name     string
		check    func() error
		wantDeny bool
	}{
		{"across touching grants", read("b", "d"), false},
		{"across touching and overlapping grants", read("a", "g"), false},
		{"one past the union", read("a", "g\x00"), true},
		{"inside a grant nested in another", read("b", "ba"), false},
		{"across a gap", read("f", "i"), true},
		{"the gap's key", read("g", ""), true},
		{"before every grant", read("0", ""), true},
		{"a range starting before the union", read("0", "b"), true},
		{"inside the gapped grant", read("i", ""), false},
		{"two touching single keys as a range", read("k", "k\x00\x00"), false},
		{"the second single key", read("k\x00", ""), false},
		{"past the single keys", read("k\x01", ""), true},
		{"from the open grant on", read("x", "\x00"), false},
		{"far past the open grant", read("zzzz", ""), false},
		{"from before the open grant on", read("w", "\x00"), true},
		// etcd permits an empty or inverted range when one grant overlaps it
		{"an inverted range inside one grant", read("bb", "b"), false},
		{"an inverted range over touching grants", read("f", "b"), true},
		{"an empty range inside one grant", read("i", "i"), false},
		{"an empty range at a grant's begin", read("h", "h"), true},
		{"write in the write grant", func() error { return f.s.IsPutPermitted(m, []byte("f")) }, false},
		{"write in a read grant", func() error { return f.s.IsPutPermitted(m, []byte("c")) }, true},
		{"delete across the write grant's end", func() error { return f.s.IsDeleteRangePermitted(m, []byte("e"), []byte("h")) }, true},
	} {
		err := tc.check()
		switch {
		case tc.wantDeny && err != rpctypes.ErrGRPCPermissionDenied:
			t.Errorf("%s: %v, want %v", tc.name, err, rpctypes.ErrGRPCPermissionDenied)
		case !tc.wantDeny && err != nil:
			t.Errorf("%s: %v, want permitted", tc.name, err)
		}
	}
}
