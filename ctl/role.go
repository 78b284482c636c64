package ctl

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"
	"go.etcd.io/etcd/api/v3/authpb"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	clientv3 "go.etcd.io/etcd/client/v3"
)

func roleCommands(g *globals) []*cobra.Command {
	cmd := &cobra.Command{
		Use:     "role <subcommand>",
		Short:   "Manages the roles of authentication and their permissions",
		GroupID: groupAuth,
	}
	cmd.AddCommand(
		roleAddCommand(g),
		roleDeleteCommand(g),
		roleGetCommand(g),
		roleListCommand(g),
		roleGrantPermissionCommand(g),
		roleRevokePermissionCommand(g),
	)
	return []*cobra.Command{cmd}
}

func roleAddCommand(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "add <role name>",
		Short: "Creates a role",
	}
	cmd.RunE = g.call(nArgs(1, "role add command requires role name as its argument"), func(ctx context.Context, p *printer, c *clientv3.Client, args []string) error {
		resp, err := c.RoleAdd(ctx, args[0])
		if err != nil {
			return err
		}
		return p.authDone(fmt.Sprintf("Role %s created", args[0]), (*pb.AuthRoleAddResponse)(resp))
	})
	return cmd
}

func roleDeleteCommand(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "delete <role name>",
		Short: "Removes a role",
	}
	cmd.RunE = g.call(nArgs(1, "role delete command requires role name as its argument"), func(ctx context.Context, p *printer, c *clientv3.Client, args []string) error {
		resp, err := c.RoleDelete(ctx, args[0])
		if err != nil {
			return err
		}
		return p.authDone(fmt.Sprintf("Role %s deleted", args[0]), (*pb.AuthRoleDeleteResponse)(resp))
	})
	return cmd
}

func roleGetCommand(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "get <role name>",
		Short: "Prints a role's permissions",
	}
	cmd.RunE = g.call(nArgs(1, "role get command requires role name as its argument"), func(ctx context.Context, p *printer, c *clientv3.Client, args []string) error {
		resp, err := c.RoleGet(ctx, args[0])
		if err != nil {
			return err
		}
		return p.roleGet(args[0], resp)
	})
	return cmd
}

func roleListCommand(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "list",
		Short: "Prints the names of the roles",
	}
	cmd.RunE = g.call(nArgs(0, "role list command requires no arguments"), func(ctx context.Context, p *printer, c *clientv3.Client, args []string) error {
		resp, err := c.RoleList(ctx)
		if err != nil {
			return err
		}
		return p.roleList(resp)
	})
	return cmd
}

// permOptions are the flags of grant-permission and revoke-permission,
// which say how the key argument names the keys.
type permOptions struct{ prefix, fromKey bool }

func (o *permOptions) register(cmd *cobra.Command, verb string) {
	cmd.Flags().BoolVar(&o.prefix, "prefix", false, verb+" the keys that start with <key>")
	cmd.Flags().BoolVar(&o.fromKey, "from-key", false, verb+" the keys from <key> on, in byte order")
}

// keys is the key and range end a permission covers, from the key
// arguments (<key> [endkey]) and the flags. As etcdctl: an empty key stands
// for the whole key space with --prefix or --from-key and for the key "\x00"
// without (an endkey is then ignored), an endkey with either flag is an
// error, and arguments after endkey are ignored.
func (o *permOptions) keys(args []string) (key, end string, err error) {
	key = args[0]
	switch {
	case key == "" && o.prefix && o.fromKey, key != "" && len(args) == 1 && o.prefix && o.fromKey:
		return "", "", badArgs("--from-key and --prefix flags are mutually exclusive")
	case key == "" && (o.prefix || o.fromKey):
		return "\x00", "\x00", nil
	case key == "":
		return "\x00", "", nil
	case len(args) == 1 && o.prefix:
		return key, clientv3.GetPrefixRangeEnd(key), nil
	case len(args) == 1 && o.fromKey:
		return key, "\x00", nil
	case len(args) == 1:
		return key, "", nil
	case o.prefix:
		return "", "", badArgs("unexpected endkey argument with --prefix flag")
	case o.fromKey:
		return "", "", badArgs("unexpected endkey argument with --from-key flag")
	}
	return key, args[1], nil
}

func roleGrantPermissionCommand(g *globals) *cobra.Command {
	var o permOptions
	cmd := &cobra.Command{
		Use:   "grant-permission [options] <role name> <permission type> <key> [endkey]",
		Short: "Lets a role read, write or both a key, a range or a prefix",
	}
	o.register(cmd, "grant a permission on")
	var perm clientv3.PermissionType
	var key, end string
	prepare := func(args []string) (err error) {
		if len(args) < 3 {
			return badArgs("role grant command requires role name, permission type, and key [endkey] as its argument")
		}
		if perm, err = clientv3.StrToPermissionType(args[1]); err != nil {
			return withCode(ExitBadArgs, err)
		}
		key, end, err = o.keys(args[2:])
		return err
	}
	cmd.RunE = g.call(prepare, func(ctx context.Context, p *printer, c *clientv3.Client, args []string) error {
		resp, err := c.RoleGrantPermission(ctx, args[0], key, end, perm)
		if err != nil {
			return err
		}
		return p.authDone(fmt.Sprintf("Role %s updated", args[0]), (*pb.AuthRoleGrantPermissionResponse)(resp))
	})
	return cmd
}

func roleRevokePermissionCommand(g *globals) *cobra.Command {
	var o permOptions
	cmd := &cobra.Command{
		Use:   "revoke-permission <role name> <key> [endkey]",
		Short: "Takes a role's permission on a key, a range or a prefix away",
	}
	o.register(cmd, "revoke the permission on")
	var key, end string
	prepare := func(args []string) (err error) {
		if len(args) < 2 {
			return badArgs("role revoke-permission command requires role name and key [endkey] as its argument")
		}
		key, end, err = o.keys(args[1:])
		return err
	}
	cmd.RunE = g.call(prepare, func(ctx context.Context, p *printer, c *clientv3.Client, args []string) error {
		resp, err := c.RoleRevokePermission(ctx, args[0], key, end)
		if err != nil {
			return err
		}
		// The key as given, not as sent: an empty one stays empty.
		return p.authDone(revokedLine(args[0], args[1], end), (*pb.AuthRoleRevokePermissionResponse)(resp))
	})
	return cmd
}

// revokedLine is revoke-permission's line in the simple format.
func revokedLine(role, key, end string) string {
	switch end {
	case "":
		return fmt.Sprintf("Permission of key %s is revoked from role %s", key, role)
	case "\x00":
		return fmt.Sprintf("Permission of range [%s, <open ended> is revoked from role %s", key, role)
	}
	return fmt.Sprintf("Permission of range [%s, %s) is revoked from role %s", key, end, role)
}

func (p *printer) roleList(resp *clientv3.AuthRoleListResponse) error {
	switch p.format {
	case formatSimple:
		for _, r := range resp.Roles {
			p.println(r)
		}
	case formatFields:
		p.fieldsHeader(resp.Header)
		p.printf(`"Roles" :`)
		for _, r := range resp.Roles {
			p.printf(" %q", r)
		}
		p.println()
	default:
		return p.response((*pb.AuthRoleListResponse)(resp))
	}
	return nil
}

func (p *printer) roleGet(role string, resp *clientv3.AuthRoleGetResponse) error {
	switch p.format {
	case formatSimple:
		p.simpleRoleGet(role, resp.Perm)
	case formatFields:
		p.fieldsHeader(resp.Header)
		for _, perm := range resp.Perm {
			// Two spaces after the colon, as etcdctl prints it.
			p.printf("\"PermType\" :  %s\n", perm.PermType)
			p.printf("\"Key\" : %q\n", perm.Key)
			p.printf("\"RangeEnd\" : %q\n", perm.RangeEnd)
		}
	default:
		return p.response((*pb.AuthRoleGetResponse)(resp))
	}
	return nil
}

// simpleRoleGet prints a role's permissions in two lists, the keys it may
// read and the keys it may write. The root role with no permission of its
// own may read and write everything.
func (p *printer) simpleRoleGet(role string, perms []*authpb.Permission) {
	p.printf("Role %s\n", role)
	if role == rootName && perms == nil {
		p.println("KV Read:\n\t[, <open ended>\nKV Write:\n\t[, <open ended>")
		return
	}
	p.println("KV Read:")
	p.permLines(perms, authpb.Permission_READ)
	p.println("KV Write:")
	p.permLines(perms, authpb.Permission_WRITE)
}

// permLines prints, one a line, the keys of the permissions that include
// the type t.
func (p *printer) permLines(perms []*authpb.Permission, t authpb.Permission_Type) {
	for _, perm := range perms {
		if perm.PermType != t && perm.PermType != authpb.Permission_READWRITE {
			continue
		}
		key, end := string(perm.Key), string(perm.RangeEnd)
		switch end {
		case "":
			p.printf("\t%s\n", key)
			continue
		case "\x00":
			p.printf("\t[%s, <open ended>", key)
		default:
			p.printf("\t[%s, %s)", key, end)
		}
		if key != "" && clientv3.GetPrefixRangeEnd(key) == end {
			p.printf(" (prefix %s)", key)
		}
		p.println()
	}
}
