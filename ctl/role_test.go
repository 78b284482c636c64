package ctl

import "testing"

// TestPermKeys checks the key and range end a permission covers for every
// combination of the key arguments and of --prefix and --from-key, as
// etcdctl's role grant-permission and revoke-permission send them.
func TestPermKeys(t *testing.T) {
	for _, c := range []struct {
		args            []string
		prefix, fromKey bool
		key, end, err   string
	}{
		{args: []string{"k"}, key: "k"},
		{args: []string{"a", "c"}, key: "a", end: "c"},
		{args: []string{"a", "c", "ignored"}, key: "a", end: "c"},
		{args: []string{"p/"}, prefix: true, key: "p/", end: "p0"},
		{args: []string{"\xff"}, prefix: true, key: "\xff", end: "\x00"},
		{args: []string{"f"}, fromKey: true, key: "f", end: "\x00"},
		{args: []string{""}, key: "\x00"},
		{args: []string{"", "z"}, key: "\x00"},
		{args: []string{""}, prefix: true, key: "\x00", end: "\x00"},
		{args: []string{""}, fromKey: true, key: "\x00", end: "\x00"},
		{args: []string{""}, prefix: true, fromKey: true, err: "--from-key and --prefix flags are mutually exclusive"},
		{args: []string{"k"}, prefix: true, fromKey: true, err: "--from-key and --prefix flags are mutually exclusive"},
		{args: []string{"a", "b"}, prefix: true, err: "unexpected endkey argument with --prefix flag"},
		{args: []string{"a", "b"}, prefix: true, fromKey: true, err: "unexpected endkey argument with --prefix flag"},
		{args: []string{"a", "b"}, fromKey: true, err: "unexpected endkey argument with --from-key flag"},
	} {
		o := permOptions{prefix: c.prefix, fromKey: c.fromKey}
		key, end, err := o.keys(c.args)
		if c.err != "" {
			if err == nil || err.Error() != c.err || exitCode(err) != ExitBadArgs {
				t.Errorf("%q prefix=%v from-key=%v: error %v (exit %d), want %q (exit %d)", c.args, c.prefix, c.fromKey, err, exitCode(err), c.err, ExitBadArgs)
			}
			continue
		}
		if err != nil || key != c.key || end != c.end {
			t.Errorf("%q prefix=%v from-key=%v: %q %q %v, want %q %q", c.args, c.prefix, c.fromKey, key, end, err, c.key, c.end)
		}
	}
}
