package ctl

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	clientv3 "go.etcd.io/etcd/client/v3"
)

func txnCommands(g *globals) []*cobra.Command {
	return []*cobra.Command{txnCommand(g), compactionCommand(g)}
}

func txnCommand(g *globals) *cobra.Command {
	var interactive bool
	cmd := &cobra.Command{
		Use:   "txn [options]",
		Short: "Applies compares and requests from standard input as one transaction",
		Long: `Reads a transaction from standard input in three blocks, each closed by an
empty line, and applies it as a whole:

  compares, one a line:          mod("key1") > "0"
  requests if all of them hold:  put key1 value1
  requests if any fails:         get key1

A compare looks at ver[sion], c[reate], m[od], val[ue] or lease of a key
with =, !=, < or >. A request is a get, put or del line taking that
command's arguments and flags.`,
		GroupID: groupKV,
	}
	cmd.Flags().BoolVarP(&interactive, "interactive", "i", false, "ask for each block of the transaction in turn")
	prepare := nArgs(0, "txn command does not accept argument")
	cmd.RunE = g.callWithin(noTimeout, prepare, func(ctx context.Context, p *printer, c *clientv3.Client, _ []string) error {
		r := &txnReader{g: g, lines: bufio.NewReader(g.stdio.In)}
		prompt := func(s string) {
			if interactive {
				fmt.Fprintln(g.stdio.Out, s)
			}
		}
		prompt("compares:")
		cmps, err := r.compares()
		if err != nil {
			return err
		}
		prompt("success requests (get, put, del):")
		then, err := r.ops()
		if err != nil {
			return err
		}
		prompt("failure requests (get, put, del):")
		els, err := r.ops()
		if err != nil {
			return err
		}
		resp, err := c.Txn(ctx).If(cmps...).Then(then...).Else(els...).Commit()
		if err != nil {
			return err
		}
		return p.txn(resp)
	})
	return cmd
}

// txnReader reads the parts of a transaction from standard input.
type txnReader struct {
	g *globals
	// lines buffers standard input. A put request without a value reads it
	// from g.stdio.In itself, so it gets what lines has not buffered, as
	// etcdctl's does.
	lines *bufio.Reader
}

// section reads lines up to an empty one, each trimmed of spaces. The input
// ending before the empty line is an error.
func (r *txnReader) section(parse func(line string) error) error {
	for {
		line, err := r.lines.ReadString('\n')
		if err != nil {
			return withCode(ExitInvalidInput, err)
		}
		line = strings.TrimSpace(line)
		if line == "" {
			return nil
		}
		if err := parse(line); err != nil {
			return invalidInput(err)
		}
	}
}

func (r *txnReader) compares() ([]clientv3.Cmp, error) {
	var cmps []clientv3.Cmp
	err := r.section(func(line string) error {
		cmp, err := parseCompare(line)
		if err == nil {
			cmps = append(cmps, cmp)
		}
		return err
	})
	return cmps, err
}

func (r *txnReader) ops() ([]clientv3.Op, error) {
	var ops []clientv3.Op
	err := r.section(func(line string) error {
		op, err := r.op(line)
		if err == nil {
			ops = append(ops, op)
		}
		return err
	})
	return ops, err
}

// compareTarget is what a compare looks at in a key, by the names a
// compare line gives it.
type compareTarget struct {
	of func(key string) clientv3.Cmp
	// revision says the value is a number (version or revision); the
	// others are compared as strings.
	revision bool
}

var compareTargets = map[string]compareTarget{
	"ver": {clientv3.Version, true}, "version": {clientv3.Version, true},
	"c": {clientv3.CreateRevision, true}, "create": {clientv3.CreateRevision, true},
	"m": {clientv3.ModRevision, true}, "mod": {clientv3.ModRevision, true},
	"val": {clientv3.Value, false}, "value": {clientv3.Value, false},
	"lease": {clientv3.LeaseValue, false},
}

// parseCompare reads a compare line: target("key") op "value", with a
// target of compareTargets and op one of = != < >. As in etcdctl,
// clientv3.Compare panics on any other op, and on a lease compare, whose
// value stays a string.
func parseCompare(line string) (clientv3.Cmp, error) {
	name, rest, ok := strings.Cut(line, "(")
	if !ok {
		return clientv3.Cmp{}, fmt.Errorf("malformed comparison: %s", line)
	}
	var key, op, value string
	switch n, err := fmt.Sscanf(rest, "%q) %s %q", &key, &op, &value); {
	case n != 3:
		return clientv3.Cmp{}, fmt.Errorf("malformed comparison: %s; got %s(%q) %s %q", line, name, key, op, value)
	case err != nil:
		return clientv3.Cmp{}, fmt.Errorf("malformed comparison: %s (%w)", line, err)
	}
	target, ok := compareTargets[name]
	if !ok {
		return clientv3.Cmp{}, fmt.Errorf("malformed comparison: %s (unknown target %s)", line, name)
	}
	if !target.revision {
		return clientv3.Compare(target.of(key), op, value), nil
	}
	n, err := strconv.ParseInt(value, 10, 64)
	if err != nil {
		return clientv3.Cmp{}, fmt.Errorf("invalid txn compare request: %s", line)
	}
	return clientv3.Compare(target.of(key), op, n), nil
}

// op reads a request line: get, put or del with the arguments and flags of
// the command of that name. An error of the request's arguments (a missing
// key, a bad lease) keeps its own message and exit code; a line the commands
// cannot parse at all is "invalid txn request".
func (r *txnReader) op(line string) (clientv3.Op, error) {
	args, err := argify(line)
	if err != nil {
		return clientv3.Op{}, err
	}
	if len(args) < 2 {
		return clientv3.Op{}, fmt.Errorf("invalid txn compare request: %s", line)
	}
	var op *clientv3.Op
	var opErr error
	var get getOptions
	var put putOptions
	var del delOptions
	root := &cobra.Command{Use: "txn", SilenceErrors: true}
	root.SetOut(r.g.stdio.Err) // cobra prints the usage of a bad request there
	root.SetErr(r.g.stdio.Err)
	root.AddCommand(
		requestCommand("get", get.register, func(args []string) {
			key, opts, err := get.op(args)
			o := clientv3.OpGet(key, opts...)
			op, opErr = &o, err
		}),
		requestCommand("put", put.register, func(args []string) {
			key, value, opts, err := put.op(r.g.stdio.In, args)
			o := clientv3.OpPut(key, value, opts...)
			op, opErr = &o, err
		}),
		requestCommand("del", del.register, func(args []string) {
			key, opts, err := del.op(r.g.stdio.Err, args)
			o := clientv3.OpDelete(key, opts...)
			op, opErr = &o, err
		}),
	)
	root.SetArgs(args)
	if err := root.Execute(); err != nil || op == nil {
		// op is nil after cobra's own help command.
		return clientv3.Op{}, fmt.Errorf("invalid txn request: %s", line)
	}
	return *op, opErr
}

// invalidInput gives err ExitInvalidInput unless it carries its own exit
// code (a request's bad arguments).
func invalidInput(err error) error {
	var e *exitError
	if errors.As(err, &e) {
		return err
	}
	return withCode(ExitInvalidInput, err)
}

// requestCommand is a txn request command: its flags and what it does with
// its arguments.
func requestCommand(name string, register func(*pflag.FlagSet), run func(args []string)) *cobra.Command {
	cmd := &cobra.Command{Use: name, Run: func(_ *cobra.Command, args []string) { run(args) }}
	register(cmd.Flags())
	return cmd
}

// argify splits a request line into its arguments. Arguments are separated
// by white space; one starting with a double quote runs to the next
// unescaped double quote and is unquoted as a Go string literal, one
// starting with a single quote runs to the next single quote and is taken
// as is between the quotes; a quote never closed is skipped. A bad escape
// in a double-quoted argument is ExitInvalidInput.
func argify(line string) ([]string, error) {
	var args []string
	for i := 0; i < len(line); {
		switch c := line[i]; {
		case isArgSpace(c):
			i++
		case c == '"' || c == '\'':
			end := closingQuote(line, i)
			if end < 0 {
				i++
				continue
			}
			arg := line[i+1 : end]
			if c == '"' {
				var err error
				if arg, err = strconv.Unquote(line[i : end+1]); err != nil {
					return nil, withCode(ExitInvalidInput, err)
				}
			}
			args = append(args, arg)
			i = end + 1
		default:
			end := i + 1
			for end < len(line) && !isArgSpace(line[end]) {
				end++
			}
			args = append(args, line[i:end])
			i = end
		}
	}
	return args, nil
}

// isArgSpace says whether c separates arguments.
func isArgSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f'
}

// closingQuote is the index of the quote that closes the one at
// line[open], or -1. In double quotes a backslash escapes the character
// after it (not a line end).
func closingQuote(line string, open int) int {
	quote := line[open]
	for j := open + 1; j < len(line); j++ {
		switch {
		case line[j] == quote:
			return j
		case quote == '"' && line[j] == '\\':
			if j+1 == len(line) || line[j+1] == '\n' {
				return -1
			}
			j++
		}
	}
	return -1
}

func (p *printer) txn(resp *clientv3.TxnResponse) error {
	r := (*pb.TxnResponse)(resp)
	switch p.format {
	case formatSimple:
		if r.Succeeded {
			p.println("SUCCESS")
		} else {
			p.println("FAILURE")
		}
		for _, op := range r.Responses {
			p.println()
			if err := p.txnResponse(op); err != nil {
				return err
			}
		}
	case formatFields:
		p.fieldsHeader(r.Header)
		p.printf("\"Succeeded\" : %v\n", r.Succeeded)
		for _, op := range r.Responses {
			if err := p.txnResponse(op); err != nil {
				return err
			}
		}
	case formatJSON:
		return p.json(txnJSON(r))
	case formatProtobuf:
		return p.protobuf(r)
	default:
		return p.unsupported()
	}
	return nil
}

// txnResponse prints one response of a transaction as the command of its
// kind prints it (simple and fields formats).
func (p *printer) txnResponse(op *pb.ResponseOp) error {
	switch v := op.Response.(type) {
	case *pb.ResponseOp_ResponseRange:
		return p.get((*clientv3.GetResponse)(v.ResponseRange), false)
	case *pb.ResponseOp_ResponsePut:
		return p.put((*clientv3.PutResponse)(v.ResponsePut))
	case *pb.ResponseOp_ResponseDeleteRange:
		return p.del((*clientv3.DeleteResponse)(v.ResponseDeleteRange))
	}
	if p.format == formatFields {
		p.printf("\"Unknown\" : %q\n", fmt.Sprintf("%+v", op.Response))
	} else {
		p.printf("unexpected response %+v\n", op)
	}
	return nil
}

// txnResponseJSON is a transaction response as etcdctl prints it in JSON:
// each response under "Response", named by its kind.
type txnResponseJSON struct {
	Header    *pb.ResponseHeader `json:"header,omitempty"`
	Succeeded bool               `json:"succeeded,omitempty"`
	Responses []responseOpJSON   `json:"responses,omitempty"`
}

type responseOpJSON struct {
	Response struct {
		Range       *pb.RangeResponse       `json:"response_range,omitempty"`
		Put         *pb.PutResponse         `json:"response_put,omitempty"`
		DeleteRange *pb.DeleteRangeResponse `json:"response_delete_range,omitempty"`
		Txn         *txnResponseJSON        `json:"response_txn,omitempty"`
	} `json:"Response"`
}

func txnJSON(r *pb.TxnResponse) *txnResponseJSON {
	out := &txnResponseJSON{Header: r.Header, Succeeded: r.Succeeded}
	for _, op := range r.Responses {
		var j responseOpJSON
		switch v := op.Response.(type) {
		case *pb.ResponseOp_ResponseRange:
			j.Response.Range = v.ResponseRange
		case *pb.ResponseOp_ResponsePut:
			j.Response.Put = v.ResponsePut
		case *pb.ResponseOp_ResponseDeleteRange:
			j.Response.DeleteRange = v.ResponseDeleteRange
		case *pb.ResponseOp_ResponseTxn:
			j.Response.Txn = txnJSON(v.ResponseTxn)
		}
		out.Responses = append(out.Responses, j)
	}
	return out
}

func compactionCommand(g *globals) *cobra.Command {
	var physical bool
	cmd := &cobra.Command{
		Use:     "compaction [options] <revision>",
		Short:   "Drops the key history older than a revision",
		GroupID: groupKV,
	}
	cmd.Flags().BoolVar(&physical, "physical", false, "return only once the old revisions are gone from disk")
	var rev int64
	prepare := func(args []string) (err error) {
		if len(args) != 1 {
			return badArgs("compaction command needs 1 argument")
		}
		rev, err = strconv.ParseInt(args[0], 10, 64)
		return err
	}
	cmd.RunE = g.callWithin(g.envCommandContext, prepare, func(ctx context.Context, _ *printer, c *clientv3.Client, _ []string) error {
		var opts []clientv3.CompactOption
		if physical {
			opts = append(opts, clientv3.WithCompactPhysical())
		}
		if _, err := c.Compact(ctx, rev, opts...); err != nil {
			return err
		}
		fmt.Fprintln(g.stdio.Out, "compacted revision", rev)
		return nil
	})
	return cmd
}
