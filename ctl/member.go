package ctl

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"

	"github.com/spf13/cobra"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/protobuf/proto"
)

func memberCommands(g *globals) []*cobra.Command {
	member := &cobra.Command{
		Use:     "member <subcommand>",
		Short:   "Adds, removes, changes and lists the cluster's members",
		GroupID: groupCluster,
	}
	member.AddCommand(memberAddCommand(g), memberRemoveCommand(g), memberUpdateCommand(g),
		memberListCommand(g), memberPromoteCommand(g))
	return []*cobra.Command{member}
}

func memberAddCommand(g *globals) *cobra.Command {
	var o struct {
		peerURLs string
		learner  bool
	}
	cmd := &cobra.Command{
		Use:   "add <memberName> [options]",
		Short: "Announces a new member to the cluster, before it starts",
	}
	cmd.Flags().StringVar(&o.peerURLs, "peer-urls", "", "where the other members reach the new one (comma separated URLs)")
	cmd.Flags().BoolVar(&o.learner, "learner", false, "join as a learner, which follows the log but does not vote")
	var urls []string
	prepare := func(args []string) error {
		if len(args) == 0 {
			return badArgs("member name not provided")
		}
		if len(args) > 1 {
			msg := "too many arguments"
			for _, a := range args {
				if strings.HasPrefix(strings.ToLower(a), "http") {
					msg += ", did you mean --peer-urls=" + a
				}
			}
			return badArgs("%s", msg)
		}
		if o.peerURLs == "" {
			return badArgs("member peer urls not provided")
		}
		urls = strings.Split(o.peerURLs, ",")
		return nil
	}
	cmd.RunE = g.call(prepare, func(ctx context.Context, p *printer, c *clientv3.Client, args []string) error {
		add := c.MemberAdd
		if o.learner {
			add = c.MemberAddAsLearner
		}
		resp, err := add(ctx, urls)
		if err != nil {
			return err
		}
		return p.memberAdd(resp, args[0], o.peerURLs)
	})
	return cmd
}

// memberIDArg is a prepare for call: it reads the one argument of remove,
// update and promote, a member ID in hexadecimal, into id.
func memberIDArg(id *uint64) func(args []string) error {
	return func(args []string) (err error) {
		if len(args) != 1 {
			return badArgs("member ID is not provided")
		}
		if *id, err = strconv.ParseUint(args[0], 16, 64); err != nil {
			return badArgs("bad member ID arg (%w), expecting ID in Hex", err)
		}
		return nil
	}
}

func memberRemoveCommand(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "remove <memberID>",
		Short: "Takes a member out of the cluster",
	}
	var id uint64
	cmd.RunE = g.call(memberIDArg(&id), func(ctx context.Context, p *printer, c *clientv3.Client, _ []string) error {
		resp, err := c.MemberRemove(ctx, id)
		if err != nil {
			return err
		}
		return p.memberChange("removed from", id, (*pb.MemberRemoveResponse)(resp), resp.Header, resp.Members)
	})
	return cmd
}

func memberUpdateCommand(g *globals) *cobra.Command {
	var peerURLs string
	cmd := &cobra.Command{
		Use:   "update <memberID> [options]",
		Short: "Changes where the other members reach a member",
	}
	cmd.Flags().StringVar(&peerURLs, "peer-urls", "", "the member's new peer addresses (comma separated URLs)")
	var id uint64
	prepare := func(args []string) error {
		if err := memberIDArg(&id)(args); err != nil {
			return err
		}
		if peerURLs == "" {
			return badArgs("member peer urls not provided")
		}
		return nil
	}
	cmd.RunE = g.call(prepare, func(ctx context.Context, p *printer, c *clientv3.Client, _ []string) error {
		resp, err := c.MemberUpdate(ctx, id, strings.Split(peerURLs, ","))
		if err != nil {
			return err
		}
		return p.memberChange("updated in", id, (*pb.MemberUpdateResponse)(resp), resp.Header, resp.Members)
	})
	return cmd
}

func memberPromoteCommand(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "promote <memberID>",
		Short: "Turns a caught-up learner into a voting member",
	}
	var id uint64
	cmd.RunE = g.call(memberIDArg(&id), func(ctx context.Context, p *printer, c *clientv3.Client, _ []string) error {
		resp, err := c.MemberPromote(ctx, id)
		if err != nil {
			return err
		}
		return p.memberChange("promoted in", id, (*pb.MemberPromoteResponse)(resp), resp.Header, resp.Members)
	})
	return cmd
}

func memberListCommand(g *globals) *cobra.Command {
	var consistency string
	cmd := &cobra.Command{
		Use:   "list",
		Short: "Prints every member of the cluster",
		Long: `Prints every member of the cluster. In the simple format each member gets
one comma-separated line: ID, started or unstarted, name, peer URLs, client
URLs, and whether it is a learner. Use -w table for a readable layout.`,
	}
	cmd.Flags().StringVar(&consistency, "consistency", "l", "l asks the leader (up to date), s the local member (may lag)")
	var opts []clientv3.OpOption
	prepare := func([]string) (err error) {
		// A bad value is reported as etcdctl does: by the value of get's
		// --consistency, always its default "l" in a member list command.
		opts, err = consistencyOpts(consistency, "l")
		return err
	}
	cmd.RunE = g.call(prepare, func(ctx context.Context, p *printer, c *clientv3.Client, _ []string) error {
		resp, err := c.MemberList(ctx, opts...)
		if err != nil {
			return err
		}
		return p.memberList(resp)
	})
	return cmd
}

// memberAdd prints the response of member add. The simple format adds the
// ETCD_* settings to start the new member with; name and peerURLs are the
// command's arguments.
func (p *printer) memberAdd(resp *clientv3.MemberAddResponse, name, peerURLs string) error {
	switch p.format {
	case formatSimple:
		as := " "
		if resp.Member.IsLearner {
			as = " as learner "
		}
		p.printf("Member %16x added%sto cluster %16x\n", resp.Member.ID, as, resp.Header.GetClusterId())
		var cluster []string
		for _, m := range resp.Members {
			n := m.Name
			if m.ID == resp.Member.ID {
				n = name
			}
			for _, u := range m.PeerURLs {
				cluster = append(cluster, n+"="+u)
			}
		}
		p.printf("\nETCD_NAME=%q\n", name)
		p.printf("ETCD_INITIAL_CLUSTER=%q\n", strings.Join(cluster, ","))
		p.printf("ETCD_INITIAL_ADVERTISE_PEER_URLS=%q\n", peerURLs)
		p.printf("ETCD_INITIAL_CLUSTER_STATE=\"existing\"\n")
		return nil
	case formatJSON:
		if p.hex {
			return p.json(hexMembersResponse{(*hexHeader)(resp.Header), (*hexMember)(resp.Member), hexMembers(resp.Members)})
		}
		return p.json((*pb.MemberAddResponse)(resp))
	case formatProtobuf:
		return p.protobuf((*pb.MemberAddResponse)(resp))
	}
	return p.unsupported()
}

// memberChange prints the response of member remove, update or promote: what
// says what happened to member id ("removed from", ...), msg is the response
// as a protobuf message.
func (p *printer) memberChange(what string, id uint64, msg proto.Message, h *pb.ResponseHeader, members []*pb.Member) error {
	switch p.format {
	case formatSimple:
		p.printf("Member %16x %s cluster %16x\n", id, what, h.GetClusterId())
		return nil
	case formatJSON:
		if p.hex {
			return p.json(hexMembersResponse{Header: (*hexHeader)(h), Members: hexMembers(members)})
		}
		return p.json(msg)
	case formatProtobuf:
		return p.protobuf(msg)
	}
	return p.unsupported()
}

func (p *printer) memberList(resp *clientv3.MemberListResponse) error {
	switch p.format {
	case formatSimple:
		p.rows(memberRows(resp.Members))
	case formatTable:
		return p.table([]string{"ID", "Status", "Name", "Peer Addrs", "Client Addrs", "Is Learner"}, memberRows(resp.Members))
	case formatFields:
		p.fieldsHeader(resp.Header)
		for _, m := range resp.Members {
			p.printf("\"ID\" : %s\n", p.id(m.ID))
			p.printf("\"Name\" : %q\n", m.Name)
			for _, u := range m.PeerURLs {
				p.printf("\"PeerURL\" : %q\n", u)
			}
			for _, u := range m.ClientURLs {
				p.printf("\"ClientURL\" : %q\n", u)
			}
			p.printf("\"IsLearner\" : %v\n\n", m.IsLearner)
		}
	case formatJSON:
		if p.hex {
			return p.json(hexMembersResponse{Header: (*hexHeader)(resp.Header), Members: hexMembers(resp.Members)})
		}
		return p.json((*pb.MemberListResponse)(resp))
	case formatProtobuf:
		return p.protobuf((*pb.MemberListResponse)(resp))
	}
	return nil
}

// memberRows are the rows of the member table, also printed by the simple
// format: a member without a name has not started yet.
func memberRows(members []*pb.Member) [][]string {
	var rows [][]string
	for _, m := range members {
		status := "started"
		if m.Name == "" {
			status = "unstarted"
		}
		rows = append(rows, []string{
			fmt.Sprintf("%x", m.ID), status, m.Name,
			strings.Join(m.PeerURLs, ","), strings.Join(m.ClientURLs, ","),
			strconv.FormatBool(m.IsLearner),
		})
	}
	return rows
}

// hexHeader is a response header in JSON with --hex: the IDs as hexadecimal
// strings.
type hexHeader pb.ResponseHeader

func (h *hexHeader) MarshalJSON() ([]byte, error) {
	return json.Marshal(struct {
		ClusterID string `json:"cluster_id"`
		MemberID  string `json:"member_id"`
		Revision  int64  `json:"revision,omitempty"`
		RaftTerm  uint64 `json:"raft_term,omitempty"`
	}{fmt.Sprintf("%x", h.ClusterId), fmt.Sprintf("%x", h.MemberId), h.Revision, h.RaftTerm})
}

// hexMember is a member in JSON with --hex: its ID as a hexadecimal string.
type hexMember pb.Member

func (m *hexMember) MarshalJSON() ([]byte, error) {
	return json.Marshal(struct {
		ID         string   `json:"ID"`
		Name       string   `json:"name,omitempty"`
		PeerURLs   []string `json:"peerURLs,omitempty"`
		ClientURLs []string `json:"clientURLs,omitempty"`
		IsLearner  bool     `json:"isLearner,omitempty"`
	}{fmt.Sprintf("%x", m.ID), m.Name, m.PeerURLs, m.ClientURLs, m.IsLearner})
}

func hexMembers(members []*pb.Member) []*hexMember {
	out := make([]*hexMember, len(members))
	for i, m := range members {
		out[i] = (*hexMember)(m)
	}
	return out
}

// hexMembersResponse is a membership response in JSON with --hex; Member is
// only in member add's.
type hexMembersResponse struct {
	Header  *hexHeader   `json:"header"`
	Member  *hexMember   `json:"member,omitempty"`
	Members []*hexMember `json:"members"`
}
