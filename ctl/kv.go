package ctl

import (
	"context"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
)

func kvCommands(g *globals) []*cobra.Command {
	return []*cobra.Command{getCommand(g), putCommand(g), delCommand(g)}
}

// getOptions are get's flags; txn's get requests take them too.
type getOptions struct {
	consistency, order, sortBy                      string
	limit, rev                                      int64
	prefix, fromKey, keysOnly, countOnly, valueOnly bool
	minCreate, maxCreate, minMod, maxMod            int64
	stream                                          bool
}

func (o *getOptions) register(f *pflag.FlagSet) {
	f.StringVar(&o.consistency, "consistency", "l", "l reads through the leader (up to date), s reads the local member (may lag)")
	f.StringVar(&o.order, "order", "", "ASCEND or DESCEND; ascending when only --sort-by is given")
	f.StringVar(&o.sortBy, "sort-by", "", "sort the keys by KEY, VERSION, CREATE, MODIFY or VALUE")
	f.Int64Var(&o.limit, "limit", 0, "return at most this many keys (0: all)")
	f.BoolVar(&o.prefix, "prefix", false, "read every key that starts with <key>")
	f.BoolVar(&o.fromKey, "from-key", false, "read every key from <key> on, in byte order")
	f.Int64Var(&o.rev, "rev", 0, "read the keys as they were at this revision")
	f.BoolVar(&o.keysOnly, "keys-only", false, "leave the values out")
	f.BoolVar(&o.countOnly, "count-only", false, "print how many keys match, not the keys")
	f.BoolVar(&o.valueOnly, "print-value-only", false, "print the values alone (simple format)")
	f.Int64Var(&o.minCreate, "min-create-rev", 0, "skip keys created before this revision")
	f.Int64Var(&o.maxCreate, "max-create-rev", 0, "skip keys created after this revision")
	f.Int64Var(&o.minMod, "min-mod-rev", 0, "skip keys last changed before this revision")
	f.Int64Var(&o.maxMod, "max-mod-rev", 0, "skip keys last changed after this revision")
	f.BoolVar(&o.stream, "stream", false, "fetch the result in chunks (RangeStream)")
}

// op is the range request of get's arguments and flags.
func (o *getOptions) op(args []string) (key string, opts []clientv3.OpOption, err error) {
	if len(args) == 0 {
		return "", nil, badArgs("get command needs one argument as key and an optional argument as range_end")
	}
	if o.prefix && o.fromKey {
		return "", nil, badArgs("`--prefix` and `--from-key` cannot be set at the same time, choose one")
	}
	if opts, err = consistencyOpts(o.consistency, o.consistency); err != nil {
		return "", nil, err
	}
	key = args[0]
	if len(args) > 1 {
		if o.prefix || o.fromKey {
			return "", nil, badArgs("too many arguments, only accept one argument when `--prefix` or `--from-key` is set")
		}
		opts = append(opts, clientv3.WithRange(args[1]))
	}
	opts = append(opts, clientv3.WithLimit(o.limit), clientv3.WithRev(o.rev))
	order, err := sortOrder(o.order)
	if err != nil {
		return "", nil, err
	}
	target, err := sortTarget(o.sortBy)
	if err != nil {
		return "", nil, err
	}
	opts = append(opts, clientv3.WithSort(target, order))
	key, opts = openEnded(key, opts, o.prefix, o.fromKey)
	if o.keysOnly {
		opts = append(opts, clientv3.WithKeysOnly())
	}
	if o.countOnly {
		opts = append(opts, clientv3.WithCountOnly())
	}
	opts = append(opts,
		clientv3.WithMinCreateRev(o.minCreate), clientv3.WithMaxCreateRev(o.maxCreate),
		clientv3.WithMinModRev(o.minMod), clientv3.WithMaxModRev(o.maxMod))
	return key, opts, nil
}

func getCommand(g *globals) *cobra.Command {
	var o getOptions
	cmd := &cobra.Command{
		Use:     "get [options] <key> [range_end]",
		Short:   "Reads a key, or the keys of a range or prefix",
		GroupID: groupKV,
	}
	o.register(cmd.Flags())
	var key string
	var opts []clientv3.OpOption
	prepare := func(args []string) (err error) {
		key, opts, err = o.op(args)
		return err
	}
	cmd.RunE = g.call(prepare, func(ctx context.Context, p *printer, c *clientv3.Client, _ []string) error {
		// Checked once connected, as in etcdctl.
		if o.countOnly && p.format != formatFields {
			return badArgs("--count-only is only for `--write-out=fields`")
		}
		if o.valueOnly && p.format != formatSimple {
			return badArgs("print-value-only is only for `--write-out=simple`")
		}
		var resp *clientv3.GetResponse
		var err error
		if o.stream {
			var stream clientv3.GetStreamChan
			if stream, err = c.GetStream(ctx, key, opts...); err == nil {
				resp, err = clientv3.GetStreamToGetResponse(stream)
			}
		} else {
			resp, err = c.Get(ctx, key, opts...)
		}
		if err != nil {
			return err
		}
		return p.get(resp, o.valueOnly)
	})
	return cmd
}

// consistencyOpts are the read options of a --consistency value: none for
// "l" (linearizable), serializable for "s". Another value is an error that
// gives shown as the flag's value.
func consistencyOpts(value, shown string) ([]clientv3.OpOption, error) {
	switch value {
	case "l":
		return nil, nil
	case "s":
		return []clientv3.OpOption{clientv3.WithSerializable()}, nil
	}
	return nil, withCode(ExitBadFeature, fmt.Errorf("unknown consistency flag %q", shown))
}

func sortOrder(s string) (clientv3.SortOrder, error) {
	switch strings.ToUpper(s) {
	case "":
		return clientv3.SortNone, nil
	case "ASCEND":
		return clientv3.SortAscend, nil
	case "DESCEND":
		return clientv3.SortDescend, nil
	}
	return 0, withCode(ExitBadFeature, fmt.Errorf("bad sort order %v", s))
}

func sortTarget(s string) (clientv3.SortTarget, error) {
	switch strings.ToUpper(s) {
	case "", "KEY":
		return clientv3.SortByKey, nil
	case "CREATE":
		return clientv3.SortByCreateRevision, nil
	case "MODIFY":
		return clientv3.SortByModRevision, nil
	case "VALUE":
		return clientv3.SortByValue, nil
	case "VERSION":
		return clientv3.SortByVersion, nil
	}
	return 0, withCode(ExitBadFeature, fmt.Errorf("bad sort target %v", s))
}

// putOptions are put's flags; txn's put requests take them too.
type putOptions struct {
	lease                            string
	prevKV, ignoreValue, ignoreLease bool
}

func (o *putOptions) register(f *pflag.FlagSet) {
	f.StringVar(&o.lease, "lease", "0", "attach the key to this lease (hexadecimal ID)")
	f.BoolVar(&o.prevKV, "prev-kv", false, "also print what the key held before")
	f.BoolVar(&o.ignoreValue, "ignore-value", false, "change the lease only, keeping the stored value")
	f.BoolVar(&o.ignoreLease, "ignore-lease", false, "change the value only, keeping the attached lease")
}

// op is the put request of put's arguments and flags; the value is read
// from in when not given.
func (o *putOptions) op(in io.Reader, args []string) (key, value string, opts []clientv3.OpOption, err error) {
	key, value, opts, err = putArgs(in, args, o.lease, o.ignoreValue, o.ignoreLease)
	if err == nil && o.prevKV {
		opts = append(opts, clientv3.WithPrevKV())
	}
	return key, value, opts, err
}

func putCommand(g *globals) *cobra.Command {
	var o putOptions
	cmd := &cobra.Command{
		Use:     "put [options] <key> [<value> | value read from standard input]",
		Short:   "Writes a value under a key",
		GroupID: groupKV,
	}
	o.register(cmd.Flags())
	var key, value string
	var opts []clientv3.OpOption
	prepare := func(args []string) (err error) {
		key, value, opts, err = o.op(g.stdio.In, args)
		return err
	}
	cmd.RunE = g.call(prepare, func(ctx context.Context, p *printer, c *clientv3.Client, _ []string) error {
		resp, err := c.Put(ctx, key, value, opts...)
		if err != nil {
			return err
		}
		return p.put(resp)
	})
	return cmd
}

// putArgs reads put's key and value (from standard input when not given) and
// its lease options.
func putArgs(in io.Reader, args []string, lease string, ignoreValue, ignoreLease bool) (key, value string, opts []clientv3.OpOption, err error) {
	if len(args) == 0 {
		return "", "", nil, badArgs("put command needs 1 argument and input from stdin or 2 arguments")
	}
	key = args[0]
	if ignoreValue && len(args) > 1 {
		return "", "", nil, badArgs("put command needs only 1 argument when 'ignore-value' is set")
	}
	switch {
	case len(args) > 1:
		value = args[1]
	case !ignoreValue:
		b, rerr := io.ReadAll(in)
		if rerr != nil || len(b) == 0 {
			return "", "", nil, badArgs("put command needs 1 argument and input from stdin or 2 arguments")
		}
		value = string(b)
	}
	id, err := parseLeaseID(lease, "lease ID")
	if err != nil {
		return "", "", nil, err
	}
	if id != 0 {
		opts = append(opts, clientv3.WithLease(id))
	}
	if ignoreValue {
		opts = append(opts, clientv3.WithIgnoreValue())
	}
	if ignoreLease {
		if id != 0 {
			return "", "", nil, badArgs("put command needs 1 argument when 'ignore-lease' is set")
		}
		opts = append(opts, clientv3.WithIgnoreLease())
	}
	return key, value, opts, nil
}

// parseLeaseID reads a lease ID written in hexadecimal, as etcdctl prints
// them. what names it in the error: "lease ID" for put's --lease, "lease ID
// arg" for the argument of the lease commands, as in etcdctl.
func parseLeaseID(s, what string) (clientv3.LeaseID, error) {
	id, err := strconv.ParseInt(s, 16, 64)
	if err != nil {
		return 0, badArgs("bad %s (%v), expecting ID in Hex", what, err)
	}
	return clientv3.LeaseID(id), nil
}

// delOptions are del's flags; txn's del requests take them too.
type delOptions struct{ prefix, prevKV, fromKey, isRange bool }

func (o *delOptions) register(f *pflag.FlagSet) {
	f.BoolVar(&o.prefix, "prefix", false, "remove every key that starts with <key>")
	f.BoolVar(&o.prevKV, "prev-kv", false, "also print the pairs that were removed")
	f.BoolVar(&o.fromKey, "from-key", false, "remove every key from <key> on, in byte order")
	f.BoolVar(&o.isRange, "range", false, "remove the keys from <key> up to, not including, range_end")
}

// op is the delete request of del's arguments and flags. A range given
// without --range is warned about on warn, and op waits 2 seconds to give
// the user time to interrupt, as etcdctl does.
func (o *delOptions) op(warn io.Writer, args []string) (key string, opts []clientv3.OpOption, err error) {
	if len(args) == 0 {
		return "", nil, badArgs("del command needs one argument as key and an optional argument as range_end")
	}
	if o.prefix && o.fromKey {
		return "", nil, badArgs("`--prefix` and `--from-key` cannot be set at the same time, choose one")
	}
	key = args[0]
	if len(args) > 1 {
		if o.prefix || o.fromKey {
			return "", nil, badArgs("too many arguments, only accept one argument when `--prefix` or `--from-key` is set")
		}
		opts = append(opts, clientv3.WithRange(args[1]))
		if !o.isRange {
			fmt.Fprintf(warn, "Warning: Keys between %q and %q will be deleted. Please interrupt the command within next 2 seconds to cancel. "+
				"You can provide `--range` flag to avoid the delay.\n", args[0], args[1])
			time.Sleep(2 * time.Second)
		}
	}
	key, opts = openEnded(key, opts, o.prefix, o.fromKey)
	if o.prevKV {
		opts = append(opts, clientv3.WithPrevKV())
	}
	return key, opts, nil
}

func delCommand(g *globals) *cobra.Command {
	var o delOptions
	cmd := &cobra.Command{
		Use:     "del [options] <key> [range_end]",
		Short:   "Removes a key, or the keys of a range or prefix",
		GroupID: groupKV,
	}
	o.register(cmd.Flags())
	var key string
	var opts []clientv3.OpOption
	prepare := func(args []string) (err error) {
		key, opts, err = o.op(g.stdio.Err, args)
		return err
	}
	cmd.RunE = g.call(prepare, func(ctx context.Context, p *printer, c *clientv3.Client, _ []string) error {
		resp, err := c.Delete(ctx, key, opts...)
		if err != nil {
			return err
		}
		return p.del(resp)
	})
	return cmd
}

// header prints a response header in the fields format.
func (p *printer) fieldsHeader(h *pb.ResponseHeader) {
	p.printf("\"ClusterID\" : %s\n", p.id(h.GetClusterId()))
	p.printf("\"MemberID\" : %s\n", p.id(h.GetMemberId()))
	// As etcdctl: responses outside the key space (member list, a
	// compacted watch's cancel, ...) carry no revision.
	if h.GetRevision() > 0 {
		p.printf("\"Revision\" : %d\n", h.GetRevision())
	}
	p.printf("\"RaftTerm\" : %d\n", h.GetRaftTerm())
}

// fieldsKV prints a key-value pair in the fields format, each name with
// prefix ("" or "Prev").
func (p *printer) fieldsKV(prefix string, kv *mvccpb.KeyValue) {
	p.printf("\"%sKey\" : %q\n", prefix, kv.Key)
	p.printf("\"%sCreateRevision\" : %d\n", prefix, kv.CreateRevision)
	p.printf("\"%sModRevision\" : %d\n", prefix, kv.ModRevision)
	p.printf("\"%sVersion\" : %d\n", prefix, kv.Version)
	p.printf("\"%sValue\" : %q\n", prefix, kv.Value)
	p.printf("\"%sLease\" : %s\n", prefix, p.lease(kv.Lease))
}

// simpleKV prints a key line and a value line, as get does.
func (p *printer) simpleKV(kv *mvccpb.KeyValue) {
	p.println(p.str(kv.Key))
	p.println(p.str(kv.Value))
}

func (p *printer) get(resp *clientv3.GetResponse, valueOnly bool) error {
	switch p.format {
	case formatSimple:
		for _, kv := range resp.Kvs {
			if !valueOnly {
				p.println(p.str(kv.Key))
			}
			p.println(p.str(kv.Value))
		}
	case formatFields:
		p.fieldsHeader(resp.Header)
		for _, kv := range resp.Kvs {
			p.fieldsKV("", kv)
		}
		p.printf("\"More\" : %v\n", resp.More)
		p.printf("\"Count\" : %d\n", resp.Count)
	default:
		return p.response((*pb.RangeResponse)(resp))
	}
	return nil
}

func (p *printer) put(resp *clientv3.PutResponse) error {
	switch p.format {
	case formatSimple:
		p.println("OK")
		if resp.PrevKv != nil {
			p.simpleKV(resp.PrevKv)
		}
	case formatFields:
		p.fieldsHeader(resp.Header)
		if resp.PrevKv != nil {
			p.fieldsKV("Prev", resp.PrevKv)
		}
	default:
		return p.response((*pb.PutResponse)(resp))
	}
	return nil
}

func (p *printer) del(resp *clientv3.DeleteResponse) error {
	switch p.format {
	case formatSimple:
		p.println(resp.Deleted)
		for _, kv := range resp.PrevKvs {
			p.simpleKV(kv)
		}
	case formatFields:
		p.fieldsHeader(resp.Header)
		p.printf("\"Deleted\" : %d\n", resp.Deleted)
		for _, kv := range resp.PrevKvs {
			p.fieldsKV("Prev", kv)
		}
	default:
		return p.response((*pb.DeleteRangeResponse)(resp))
	}
	return nil
}

// openEnded applies --prefix or --from-key to key: the empty key with either
// means every key (from "\x00"), as in etcdctl.
func openEnded(key string, opts []clientv3.OpOption, prefix, fromKey bool) (string, []clientv3.OpOption) {
	switch {
	case (prefix || fromKey) && key == "":
		return "\x00", append(opts, clientv3.WithFromKey())
	case prefix:
		return key, append(opts, clientv3.WithPrefix())
	case fromKey:
		return key, append(opts, clientv3.WithFromKey())
	}
	return key, opts
}
