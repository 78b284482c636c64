package ctl

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/spf13/cobra"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	clientv3 "go.etcd.io/etcd/client/v3"
)

func maintenanceCommands(g *globals) []*cobra.Command {
	alarm := &cobra.Command{
		Use:     "alarm <subcommand>",
		Short:   "Shows or clears the alarms members raised",
		GroupID: groupCluster,
	}
	alarm.AddCommand(alarmDisarmCommand(g), alarmListCommand(g))
	return []*cobra.Command{alarm, defragCommand(g), moveLeaderCommand(g)}
}

func alarmListCommand(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "list",
		Short: "Prints the alarms in force",
	}
	cmd.RunE = g.run(func(cmd *cobra.Command, args []string) error {
		if len(args) != 0 {
			return badArgs("alarm list command accepts no arguments")
		}
		return alarmCall(g, func(c *clientv3.Client) (*clientv3.AlarmResponse, error) {
			ctx, cancel := g.commandContext()
			defer cancel()
			return c.AlarmList(ctx)
		})
	})
	return cmd
}

func alarmDisarmCommand(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "disarm",
		Short: "Clears every alarm",
	}
	cmd.RunE = g.run(func(cmd *cobra.Command, args []string) error {
		if len(args) != 0 {
			return badArgs("alarm disarm command accepts no arguments")
		}
		return alarmCall(g, func(c *clientv3.Client) (*clientv3.AlarmResponse, error) {
			ctx, cancel := g.commandContext()
			defer cancel()
			// An empty member and alarm: the client disarms each raised
			// alarm in turn.
			return c.AlarmDisarm(ctx, &clientv3.AlarmMember{})
		})
	})
	return cmd
}

// alarmCall connects, makes one alarm request and prints the alarms it
// returns.
func alarmCall(g *globals, call func(*clientv3.Client) (*clientv3.AlarmResponse, error)) error {
	p, c, err := g.connect()
	if err != nil {
		return err
	}
	defer c.Close()
	resp, err := call(c)
	if err != nil {
		return err
	}
	return p.alarms((*pb.AlarmResponse)(resp))
}

func (p *printer) alarms(resp *pb.AlarmResponse) error {
	switch p.format {
	case formatSimple:
		for _, a := range resp.Alarms {
			// The protobuf text form, as etcdctl prints it.
			p.println(a.String())
		}
	case formatFields:
		p.fieldsHeader(resp.Header)
		for _, a := range resp.Alarms {
			p.printf("\"MemberID\" : %s\n\"AlarmType\" : %s\n\n", p.id(a.MemberID), a.Alarm)
		}
	case formatJSON:
		return p.json(resp)
	case formatProtobuf:
		return p.protobuf(resp)
	default:
		return p.unsupported()
	}
	return nil
}

func defragCommand(g *globals) *cobra.Command {
	var cluster bool
	cmd := &cobra.Command{
		Use:     "defrag",
		Short:   "Gives the free space in each member's database file back to the disk",
		GroupID: groupCluster,
	}
	cmd.PersistentFlags().BoolVar(&cluster, "cluster", false, "act on every member the cluster lists, not only --endpoints")
	cmd.RunE = g.run(func(cmd *cobra.Command, args []string) error {
		eps, err := g.targetEndpoints(cluster)
		if err != nil {
			return withCode(ExitError, err)
		}
		failed := false
		for _, ep := range eps {
			ok, err := g.defrag(ep)
			if err != nil {
				return err
			}
			failed = failed || !ok
		}
		if failed {
			return withCode(ExitError, errSilent)
		}
		return nil
	})
	return cmd
}

// defrag defragments the member at ep and reports how long it took, on
// standard output or, when it fails, on standard error. err is only for a
// client that cannot be made.
func (g *globals) defrag(ep string) (ok bool, err error) {
	c, err := g.endpointClient(ep)
	if err != nil {
		return false, err
	}
	defer c.Close()
	ctx, cancel := g.envCommandContext()
	defer cancel()
	start := time.Now()
	_, derr := c.Defragment(ctx, ep)
	took := time.Since(start)
	if derr != nil {
		fmt.Fprintf(g.stdio.Err, "Failed to defragment etcd member[%s]. took %s. (%v)\n", ep, took, derr)
		return false, nil
	}
	fmt.Fprintf(g.stdio.Out, "Finished defragmenting etcd member[%s]. took %s\n", ep, took)
	return true, nil
}

func moveLeaderCommand(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:     "move-leader <transferee-member-id>",
		Short:   "Makes another member the Raft leader",
		GroupID: groupCluster,
	}
	cmd.RunE = g.run(func(cmd *cobra.Command, args []string) error {
		if len(args) != 1 {
			return badArgs("move-leader command needs 1 argument")
		}
		target, err := strconv.ParseUint(args[0], 16, 64)
		if err != nil {
			return withCode(ExitBadArgs, err)
		}
		p, err := g.printer()
		if err != nil {
			return err
		}
		c, err := g.client()
		if err != nil {
			return err
		}
		eps := c.Endpoints()
		c.Close()
		ctx, cancel := g.envCommandContext()
		defer cancel()
		leader, leaderID, err := g.findLeader(ctx, eps)
		if err != nil {
			return err
		}
		defer leader.Close()
		resp, err := leader.MoveLeader(ctx, target)
		if err != nil {
			return err
		}
		return p.moveLeader(leaderID, target, resp)
	})
	return cmd
}

// findLeader asks each endpoint in turn for its status and returns a client
// of the first one that is the leader, which the caller closes.
func (g *globals) findLeader(ctx context.Context, eps []string) (*clientv3.Client, uint64, error) {
	for _, ep := range eps {
		c, err := g.endpointClient(ep)
		if err != nil {
			return nil, 0, err
		}
		resp, err := c.Status(ctx, ep)
		if err != nil {
			c.Close()
			return nil, 0, err
		}
		if resp.Header.GetMemberId() == resp.Leader {
			return c, resp.Leader, nil
		}
		c.Close()
	}
	return nil, 0, badArgs("no leader endpoint given at %v", eps)
}

func (p *printer) moveLeader(leader, target uint64, resp *clientv3.MoveLeaderResponse) error {
	switch p.format {
	case formatSimple:
		p.printf("Leadership transferred from %x to %x\n", leader, target)
	case formatJSON:
		return p.json((*pb.MoveLeaderResponse)(resp))
	case formatProtobuf:
		return p.protobuf((*pb.MoveLeaderResponse)(resp))
	default:
		return p.unsupported()
	}
	return nil
}
