package ctl

import (
	"context"
	"fmt"
	"strconv"

	"github.com/spf13/cobra"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/protobuf/proto"
)

func leaseCommands(g *globals) []*cobra.Command {
	cmd := &cobra.Command{
		Use:     "lease <subcommand>",
		Short:   "Manages leases, the timers that expire keys",
		GroupID: groupKV,
	}
	cmd.AddCommand(
		leaseGrantCommand(g),
		leaseRevokeCommand(g),
		leaseTimeToLiveCommand(g),
		leaseListCommand(g),
		leaseKeepAliveCommand(g),
	)
	return []*cobra.Command{cmd}
}

func leaseGrantCommand(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "grant <ttl>",
		Short: "Creates a lease that expires after <ttl> seconds",
	}
	var ttl int64
	prepare := func(args []string) (err error) {
		if len(args) != 1 {
			return badArgs("lease grant command needs TTL argument")
		}
		if ttl, err = strconv.ParseInt(args[0], 10, 64); err != nil {
			return badArgs("bad TTL (%w)", err)
		}
		return nil
	}
	cmd.RunE = g.call(prepare, func(ctx context.Context, p *printer, c *clientv3.Client, _ []string) error {
		resp, err := c.Grant(ctx, ttl)
		if err != nil {
			return fmt.Errorf("failed to grant lease (%w)", err)
		}
		return p.leaseGrant(resp)
	})
	return cmd
}

func leaseRevokeCommand(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "revoke <leaseID>",
		Short: "Ends a lease now, removing the keys attached to it",
	}
	var id clientv3.LeaseID
	cmd.RunE = g.call(leaseIDArg(&id, "lease revoke command needs 1 argument"), func(ctx context.Context, p *printer, c *clientv3.Client, _ []string) error {
		resp, err := c.Revoke(ctx, id)
		if err != nil {
			return fmt.Errorf("failed to revoke lease (%w)", err)
		}
		return p.leaseRevoke(id, resp)
	})
	return cmd
}

// The commands below make their requests without a timeout and report a
// failed one as a connection error, as etcdctl does.

func leaseTimeToLiveCommand(g *globals) *cobra.Command {
	var keys bool
	cmd := &cobra.Command{
		Use:   "timetolive <leaseID> [options]",
		Short: "Tells how long a lease has left",
	}
	cmd.Flags().BoolVar(&keys, "keys", false, "also print the keys the lease holds")
	var id clientv3.LeaseID
	prepare := leaseIDArg(&id, "lease timetolive command needs lease ID as argument")
	cmd.RunE = g.callWithin(noTimeout, prepare, func(ctx context.Context, p *printer, c *clientv3.Client, _ []string) error {
		var opts []clientv3.LeaseOption
		if keys {
			opts = append(opts, clientv3.WithAttachedKeys())
		}
		resp, err := c.TimeToLive(ctx, id, opts...)
		if err != nil {
			return withCode(ExitBadConnection, err)
		}
		return p.leaseTimeToLive(resp, keys)
	})
	return cmd
}

func leaseListCommand(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "list",
		Short: "Prints the IDs of the current leases",
	}
	cmd.RunE = g.callWithin(noTimeout, nil, func(ctx context.Context, p *printer, c *clientv3.Client, _ []string) error {
		resp, err := c.Leases(ctx)
		if err != nil {
			return withCode(ExitBadConnection, err)
		}
		return p.leaseList(resp)
	})
	return cmd
}

func leaseKeepAliveCommand(g *globals) *cobra.Command {
	var once bool
	cmd := &cobra.Command{
		Use:   "keep-alive [options] <leaseID>",
		Short: "Keeps a lease from expiring until interrupted",
	}
	cmd.Flags().BoolVar(&once, "once", false, "renew a single time, then stop")
	var id clientv3.LeaseID
	prepare := leaseIDArg(&id, "lease keep-alive command needs lease ID as argument")
	cmd.RunE = g.callWithin(noTimeout, prepare, func(ctx context.Context, p *printer, c *clientv3.Client, _ []string) error {
		if !once {
			return keepAlive(ctx, c, p, id)
		}
		resp, err := c.KeepAliveOnce(ctx, id)
		if err != nil {
			return withCode(ExitBadConnection, err)
		}
		return p.leaseKeepAlive(resp)
	})
	return cmd
}

// keepAlive renews lease id within ctx until it expires or is revoked,
// printing each renewal. It runs until then or until keelctl is stopped by
// a signal.
func keepAlive(ctx context.Context, c *clientv3.Client, p *printer, id clientv3.LeaseID) error {
	respc, err := c.KeepAlive(ctx, id)
	if err != nil {
		return withCode(ExitBadConnection, err)
	}
	for resp := range respc {
		if err := p.leaseKeepAlive(resp); err != nil {
			return err
		}
	}
	if p.format == formatSimple {
		p.printf("lease %016x expired or revoked.\n", id)
	}
	return nil
}

// fieldsLeaseID prints a lease ID in the fields format: decimal, or 16
// hexadecimal digits with --hex.
func (p *printer) fieldsLeaseID(id clientv3.LeaseID) {
	p.printf("\"ID\" : %s\n", p.lease(int64(id)))
}

// leaseRPC prints a lease response as etcdctl does in the json and protobuf
// formats: the client's response struct as it is. The client's structs embed
// the response header, so in protobuf only the header is encoded, and a
// struct without it cannot be encoded at all.
func (p *printer) leaseRPC(resp any) error {
	switch p.format {
	case formatJSON:
		return p.json(resp)
	case formatProtobuf:
		if m, ok := resp.(proto.Message); ok {
			return p.protobuf(m)
		}
		return withCode(ExitBadFeature, fmt.Errorf("marshal unsupported for type %T (%v)", resp, resp))
	}
	return p.unsupported()
}

func (p *printer) leaseGrant(resp *clientv3.LeaseGrantResponse) error {
	switch p.format {
	case formatSimple:
		p.printf("lease %016x granted with TTL(%ds)\n", resp.ID, resp.TTL)
	case formatFields:
		p.fieldsLeaseTTL(resp.ResponseHeader, resp.ID, resp.TTL)
	default:
		return p.leaseRPC(resp)
	}
	return nil
}

// fieldsLeaseTTL prints a lease and its TTL in the fields format, as lease
// grant and keep-alive do.
func (p *printer) fieldsLeaseTTL(h *pb.ResponseHeader, id clientv3.LeaseID, ttl int64) {
	p.fieldsHeader(h)
	p.fieldsLeaseID(id)
	p.printf("\"TTL\" : %d\n", ttl)
}

func (p *printer) leaseRevoke(id clientv3.LeaseID, resp *clientv3.LeaseRevokeResponse) error {
	switch p.format {
	case formatSimple:
		p.printf("lease %016x revoked\n", id)
	case formatFields:
		p.fieldsHeader((*pb.LeaseRevokeResponse)(resp).GetHeader())
	default:
		return p.leaseRPC(resp)
	}
	return nil
}

func (p *printer) leaseKeepAlive(resp *clientv3.LeaseKeepAliveResponse) error {
	switch p.format {
	case formatSimple:
		p.printf("lease %016x keepalived with TTL(%d)\n", resp.ID, resp.TTL)
	case formatFields:
		p.fieldsLeaseTTL(resp.ResponseHeader, resp.ID, resp.TTL)
	default:
		return p.leaseRPC(resp)
	}
	return nil
}

func (p *printer) leaseTimeToLive(resp *clientv3.LeaseTimeToLiveResponse, keys bool) error {
	switch p.format {
	case formatSimple:
		if resp.GrantedTTL == 0 && resp.TTL == -1 {
			p.printf("lease %016x already expired\n", resp.ID)
			return nil
		}
		p.printf("lease %016x granted with TTL(%ds), remaining(%ds)", resp.ID, resp.GrantedTTL, resp.TTL)
		if keys {
			names := make([]string, len(resp.Keys))
			for i, k := range resp.Keys {
				names[i] = string(k)
			}
			p.printf(", attached keys(%v)", names)
		}
		p.println()
	case formatFields:
		p.fieldsHeader(resp.ResponseHeader)
		p.fieldsLeaseID(resp.ID)
		p.printf("\"TTL\" : %d\n", resp.TTL)
		p.printf("\"GrantedTTL\" : %d\n", resp.GrantedTTL)
		for _, k := range resp.Keys {
			p.printf("\"Key\" : %q\n", k)
		}
	default:
		return p.leaseRPC(resp)
	}
	return nil
}

func (p *printer) leaseList(resp *clientv3.LeaseLeasesResponse) error {
	switch p.format {
	case formatSimple:
		p.printf("found %d leases\n", len(resp.Leases))
		for _, l := range resp.Leases {
			p.printf("%016x\n", l.ID)
		}
	case formatFields:
		p.fieldsHeader(resp.ResponseHeader)
		for _, l := range resp.Leases {
			p.fieldsLeaseID(l.ID)
		}
	default:
		return p.leaseRPC(resp)
	}
	return nil
}

// leaseIDArg is a prepare for call: it reads the one lease ID argument of
// revoke, timetolive and keep-alive into id; need is the command's message
// when there is not exactly one.
func leaseIDArg(id *clientv3.LeaseID, need string) func(args []string) error {
	return func(args []string) (err error) {
		if len(args) != 1 {
			return badArgs("%s", need)
		}
		*id, err = parseLeaseID(args[0], "lease ID arg")
		return err
	}
}
