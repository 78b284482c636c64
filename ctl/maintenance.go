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
	cmd.RunE = g.call(nArgs(0, "alarm list command accepts no arguments"), func(ctx context.Context, p *printer, c *clientv3.Client, _ []string) error {
		resp, err := c.AlarmList(ctx)
		if err != nil {
			return err
		}
		return p.alarms((*pb.AlarmResponse)(resp))
	})
	return cmd
}

func alarmDisarmCommand(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "disarm",
		Short: "Clears every alarm",
	}
	cmd.RunE = g.call(nArgs(0, "alarm disarm command accepts no arguments"), func(ctx context.Context, p *printer, c *clientv3.Client, _ []string) error {
		// An empty member and alarm: the client disarms each raised alarm
		// in turn.
		resp, err := c.AlarmDisarm(ctx, &clientv3.AlarmMember{})
		if err != nil {
			return err
		}
		return p.alarms((*pb.AlarmResponse)(resp))
	})
	return cmd
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
	default:
		return p.response(resp)
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
		set, err := g.targets(cluster)
		if err != nil {
			return err
		}
		failed := false
		err = set.visit(func(c *clientv3.Client, ep string) (bool, error) {
			if !g.defrag(c, ep) {
				failed = true
			}
			return false, nil
		})
		if err == nil && failed {
			err = withCode(ExitError, errSilent)
		}
		return err
	})
	return cmd
}

// defrag defragments the member at ep through c and reports how long it
// took, on standard output or, when it fails, on standard error.
func (g *globals) defrag(c *clientv3.Client, ep string) (ok bool) {
	ctx, cancel := g.envCommandContext()
	defer cancel()
	start := time.Now()
	_, err := c.Defragment(ctx, ep)
	took := time.Since(start)
	if err != nil {
		fmt.Fprintf(g.stdio.Err, "Failed to defragment etcd member[%s]. took %s. (%v)\n", ep, took, err)
		return false
	}
	fmt.Fprintf(g.stdio.Out, "Finished defragmenting etcd member[%s]. took %s\n", ep, took)
	return true
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
		transferee, err := strconv.ParseUint(args[0], 16, 64)
		if err != nil {
			return withCode(ExitBadArgs, err)
		}
		p, c, err := g.connect()
		if err != nil {
			return err
		}
		eps := c.Endpoints()
		c.Close()
		set, err := g.endpointSet(eps)
		if err != nil {
			return err
		}
		ctx, cancel := g.envCommandContext()
		defer cancel()
		moved, err := set.moveLeader(ctx, transferee)
		if err != nil {
			return err
		}
		if moved == nil {
			return badArgs("no leader endpoint given at %v", eps)
		}
		return p.moveLeader(moved.from, transferee, moved.resp)
	})
	return cmd
}

// leaderMove is a leadership transfer done: from the leader it left.
type leaderMove struct {
	from uint64
	resp *clientv3.MoveLeaderResponse
}

// moveLeader asks the endpoints in turn for their status until one is the
// leader, and has that one hand its leadership to transferee. The result is
// nil when no endpoint is the leader; an endpoint whose status cannot be
// read stops the search with its error.
func (set endpointSet) moveLeader(ctx context.Context, transferee uint64) (*leaderMove, error) {
	var moved *leaderMove
	err := set.visit(func(c *clientv3.Client, ep string) (bool, error) {
		st, err := c.Status(ctx, ep)
		if err != nil {
			return true, err
		}
		if st.Leader != st.Header.GetMemberId() {
			return false, nil
		}
		resp, err := c.MoveLeader(ctx, transferee)
		if err == nil {
			moved = &leaderMove{from: st.Leader, resp: resp}
		}
		return true, err
	})
	return moved, err
}

func (p *printer) moveLeader(leader, target uint64, resp *clientv3.MoveLeaderResponse) error {
	switch p.format {
	case formatSimple:
		p.printf("Leadership transferred from %x to %x\n", leader, target)
	default:
		return p.response((*pb.MoveLeaderResponse)(resp))
	}
	return nil
}
