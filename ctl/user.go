package ctl

import (
	"context"
	"fmt"
	"strings"

	"github.com/bgentry/speakeasy"
	"github.com/spf13/cobra"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	clientv3 "go.etcd.io/etcd/client/v3"
)

func userCommands(g *globals) []*cobra.Command {
	cmd := &cobra.Command{
		Use:     "user <subcommand>",
		Short:   "Manages the users of authentication",
		GroupID: groupAuth,
	}
	cmd.AddCommand(
		userAddCommand(g),
		userDeleteCommand(g),
		userGetCommand(g),
		userListCommand(g),
		userPasswdCommand(g),
		userGrantRoleCommand(g),
		userRevokeRoleCommand(g),
	)
	return []*cobra.Command{cmd}
}

// userAddOptions are user add's flags.
type userAddOptions struct {
	interactive bool
	password    string
	noPassword  bool
}

// credentials are the new user's name and password from the argument
// ("name" or "name:password") and the flags: no password with
// --no-password, the argument whole as the name with --new-user-password,
// else the part after the first colon, else one read as readPassword does.
func (o *userAddOptions) credentials(g *globals, arg string) (name, password string, err error) {
	switch {
	case o.noPassword:
		return arg, "", nil
	case o.password != "":
		return arg, o.password, nil
	}
	name, password, colon := strings.Cut(arg, ":")
	if !colon {
		password, err = g.readPassword(arg, o.interactive)
		return arg, password, err
	}
	if name == "" {
		return "", "", badArgs("empty user name is not allowed")
	}
	return name, password, nil
}

// readPassword reads the password of user: asked twice on the terminal
// when interactive (it must be the same twice and not empty), else the
// first word of standard input, possibly empty.
func (g *globals) readPassword(user string, interactive bool) (string, error) {
	if !interactive {
		var password string
		_, _ = fmt.Fscanf(g.stdio.In, "%s", &password) // no word: empty, as etcdctl
		return password, nil
	}
	first, err := g.askPassword("Password of %s: ", user)
	if err != nil {
		return "", err
	}
	if first == "" {
		return "", badArgs("empty password")
	}
	again, err := g.askPassword("Type password of %s again for confirmation: ", user)
	if err != nil {
		return "", err
	}
	if first != again {
		return "", badArgs("given passwords are different")
	}
	return first, nil
}

// askPassword prompts on standard output and reads a line from the
// terminal (standard input) without echo.
func (g *globals) askPassword(prompt, user string) (string, error) {
	password, err := speakeasy.FAsk(g.stdio.Out, fmt.Sprintf(prompt, user))
	if err != nil {
		return "", badArgs("failed to ask password: %w", err)
	}
	return password, nil
}

func userAddCommand(g *globals) *cobra.Command {
	var o userAddOptions
	cmd := &cobra.Command{
		Use:   "add <user name or user:password> [options]",
		Short: "Creates a user",
	}
	f := cmd.Flags()
	f.BoolVar(&o.interactive, "interactive", true, "ask for the password on the terminal; false reads it from standard input")
	f.StringVar(&o.password, "new-user-password", "", "the new user's password, given here")
	f.BoolVar(&o.noPassword, "no-password", false, "create a user with no password, who logs in by TLS client certificate (CN)")
	var name, password string
	prepare := func(args []string) (err error) {
		if len(args) != 1 {
			return badArgs("user add command requires user name as its argument")
		}
		name, password, err = o.credentials(g, args[0])
		return err
	}
	cmd.RunE = g.call(prepare, func(ctx context.Context, p *printer, c *clientv3.Client, _ []string) error {
		resp, err := c.UserAddWithOptions(ctx, name, password, &clientv3.UserAddOptions{NoPassword: o.noPassword})
		if err != nil {
			return err
		}
		return p.authDone(fmt.Sprintf("User %s created", name), (*pb.AuthUserAddResponse)(resp))
	})
	return cmd
}

func userDeleteCommand(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "delete <user name>",
		Short: "Removes a user",
	}
	cmd.RunE = g.call(nArgs(1, "user delete command requires user name as its argument"), func(ctx context.Context, p *printer, c *clientv3.Client, args []string) error {
		resp, err := c.UserDelete(ctx, args[0])
		if err != nil {
			return err
		}
		return p.authDone(fmt.Sprintf("User %s deleted", args[0]), (*pb.AuthUserDeleteResponse)(resp))
	})
	return cmd
}

func userGetCommand(g *globals) *cobra.Command {
	var detail bool
	cmd := &cobra.Command{
		Use:   "get <user name> [options]",
		Short: "Prints a user's roles",
	}
	cmd.Flags().BoolVar(&detail, "detail", false, "also print the permissions of each role")
	cmd.RunE = g.call(nArgs(1, "user get command requires user name as its argument"), func(ctx context.Context, p *printer, c *clientv3.Client, args []string) error {
		name := args[0]
		resp, err := c.UserGet(ctx, name)
		if err != nil {
			return err
		}
		if !detail {
			return p.userGet(name, resp)
		}
		// As etcdctl: the name as a plain line whatever the format, then
		// each role as role get prints it, after an empty line.
		p.printf("User: %s\n", name)
		for _, role := range resp.Roles {
			p.println()
			rr, err := c.RoleGet(ctx, role)
			if err != nil {
				return err
			}
			if err := p.roleGet(role, rr); err != nil {
				return err
			}
		}
		return nil
	})
	return cmd
}

func (p *printer) userGet(name string, resp *clientv3.AuthUserGetResponse) error {
	if p.format != formatSimple {
		return p.response((*pb.AuthUserGetResponse)(resp))
	}
	p.printf("User: %s\nRoles:", name)
	for _, role := range resp.Roles {
		p.printf(" %s", role)
	}
	p.println()
	return nil
}

func userListCommand(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "list",
		Short: "Prints the names of the users",
	}
	cmd.RunE = g.call(nArgs(0, "user list command requires no arguments"), func(ctx context.Context, p *printer, c *clientv3.Client, args []string) error {
		resp, err := c.UserList(ctx)
		if err != nil {
			return err
		}
		if p.format != formatSimple {
			return p.response((*pb.AuthUserListResponse)(resp))
		}
		for _, u := range resp.Users {
			p.println(u)
		}
		return nil
	})
	return cmd
}

func userPasswdCommand(g *globals) *cobra.Command {
	var interactive bool
	cmd := &cobra.Command{
		Use:   "passwd <user name> [options]",
		Short: "Changes a user's password",
	}
	cmd.Flags().BoolVar(&interactive, "interactive", true, "ask for the password on the terminal; false reads it from standard input")
	var password string
	prepare := func(args []string) (err error) {
		if len(args) != 1 {
			return badArgs("user passwd command requires user name as its argument")
		}
		password, err = g.readPassword(args[0], interactive)
		return err
	}
	cmd.RunE = g.call(prepare, func(ctx context.Context, p *printer, c *clientv3.Client, args []string) error {
		resp, err := c.UserChangePassword(ctx, args[0], password)
		if err != nil {
			return err
		}
		return p.authDone("Password updated", (*pb.AuthUserChangePasswordResponse)(resp))
	})
	return cmd
}

func userGrantRoleCommand(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "grant-role <user name> <role name>",
		Short: "Gives a user a role",
	}
	cmd.RunE = g.call(nArgs(2, "user grant command requires user name and role name as its argument"), func(ctx context.Context, p *printer, c *clientv3.Client, args []string) error {
		resp, err := c.UserGrantRole(ctx, args[0], args[1])
		if err != nil {
			return err
		}
		return p.authDone(fmt.Sprintf("Role %s is granted to user %s", args[1], args[0]), (*pb.AuthUserGrantRoleResponse)(resp))
	})
	return cmd
}

func userRevokeRoleCommand(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "revoke-role <user name> <role name>",
		Short: "Takes a role away from a user",
	}
	cmd.RunE = g.call(nArgs(2, "user revoke-role requires user name and role name as its argument"), func(ctx context.Context, p *printer, c *clientv3.Client, args []string) error {
		resp, err := c.UserRevokeRole(ctx, args[0], args[1])
		if err != nil {
			return err
		}
		return p.authDone(fmt.Sprintf("Role %s is revoked from user %s", args[1], args[0]), (*pb.AuthUserRevokeRoleResponse)(resp))
	})
	return cmd
}
