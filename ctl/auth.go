package ctl

import (
	"context"
	"errors"

	"github.com/spf13/cobra"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/protobuf/proto"
)

// rootName is the name of the user and of the role that hold every right
// once authentication is on.
const rootName = "root"

func authCommands(g *globals) []*cobra.Command {
	cmd := &cobra.Command{
		Use:     "auth <enable or disable>",
		Short:   "Turns authentication on or off, or tells whether it is on",
		GroupID: groupAuth,
	}
	cmd.AddCommand(authEnableCommand(g), authDisableCommand(g), authStatusCommand(g))
	return []*cobra.Command{cmd}
}

func authEnableCommand(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "enable",
		Short: "Turns authentication on (the root user must exist)",
	}
	cmd.RunE = g.call(nArgs(0, "auth enable command does not accept any arguments"),
		func(ctx context.Context, p *printer, c *clientv3.Client, _ []string) error {
			if err := enableAuth(ctx, c); err != nil {
				return err
			}
			p.println("Authentication Enabled") // whatever the format, as etcdctl
			return nil
		})
	return cmd
}

// enableAuth turns authentication on. As etcdctl, when the server refuses
// because the root role is missing, it creates the role, grants it to the
// root user and tries again; a missing root user is the server's error.
// The loop ends: a second RoleAdd of root fails.
func enableAuth(ctx context.Context, c *clientv3.Client) error {
	for {
		_, err := c.AuthEnable(ctx)
		if !errors.Is(err, rpctypes.ErrRootRoleNotExist) {
			return err
		}
		if _, err := c.RoleAdd(ctx, rootName); err != nil {
			return err
		}
		if _, err := c.UserGrantRole(ctx, rootName, rootName); err != nil {
			return err
		}
	}
}

func authDisableCommand(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "disable",
		Short: "Turns authentication off (root only)",
	}
	cmd.RunE = g.call(nArgs(0, "auth disable command does not accept any arguments"),
		func(ctx context.Context, p *printer, c *clientv3.Client, _ []string) error {
			if _, err := c.AuthDisable(ctx); err != nil {
				return err
			}
			p.println("Authentication Disabled") // whatever the format, as etcdctl
			return nil
		})
	return cmd
}

func authStatusCommand(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Tells whether authentication is on, and the auth revision",
	}
	cmd.RunE = g.call(nArgs(0, "auth status command does not accept any arguments"),
		func(ctx context.Context, p *printer, c *clientv3.Client, _ []string) error {
			resp, err := c.AuthStatus(ctx)
			if err != nil {
				return err
			}
			return p.authStatus(resp)
		})
	return cmd
}

func (p *printer) authStatus(resp *clientv3.AuthStatusResponse) error {
	if p.format == formatSimple {
		p.printf("Authentication Status: %v\n", resp.Enabled)
		p.printf("AuthRevision: %d\n", resp.AuthRevision)
		return nil
	}
	return p.response((*pb.AuthStatusResponse)(resp))
}

// headedResponse is a response message that carries etcd's response header,
// as all of them do.
type headedResponse interface {
	proto.Message
	GetHeader() *pb.ResponseHeader
}

// authDone prints the result of a user or role change: the line done in
// the simple format, the header alone in the fields format, the response in
// json and protobuf.
func (p *printer) authDone(done string, resp headedResponse) error {
	switch p.format {
	case formatSimple:
		p.println(done)
	case formatFields:
		p.fieldsHeader(resp.GetHeader())
	default:
		return p.response(resp)
	}
	return nil
}
