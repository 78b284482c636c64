// Package ctl is keelctl: etcdctl's commands, flags, ETCDCTL_* variables,
// output formats and exit codes, on the official Go client. Each command
// family lives in its own file with its printers; global.go holds the global
// flags and the client, output.go the generic parts of the output formats.
package ctl

import (
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"
)

// Stdio are the streams keelctl reads and writes.
type Stdio struct {
	In       io.Reader
	Out, Err io.Writer
}

// Command groups, as IDs and in the order of etcdctl's help (groups).
const (
	groupKV          = "kv"
	groupCluster     = "cluster"
	groupConcurrency = "concurrency"
	groupAuth        = "auth"
	groupUtility     = "utility"
)

// groups are the command groups of the help, in order.
var groups = []cobra.Group{
	{ID: groupKV, Title: "Keys and values"},
	{ID: groupCluster, Title: "Running the cluster"},
	{ID: groupConcurrency, Title: "Locks and elections"},
	{ID: groupAuth, Title: "Users and roles"},
	{ID: groupUtility, Title: "Tools"},
}

// addUsedGroups adds to root the groups its commands belong to, so that the
// help shows no empty group.
// Call it after adding the commands.
func addUsedGroups(root *cobra.Command) {
	used := map[string]bool{}
	for _, c := range root.Commands() {
		used[c.GroupID] = true
	}
	for _, grp := range groups {
		if used[grp.ID] {
			root.AddGroup(&grp)
		}
	}
}

// Main runs keelctl with args (the program name excluded) and returns its
// exit code. An error is printed as "Error: <message>" on standard error.
func Main(args []string, stdio Stdio) int {
	root, g := newRoot(stdio)
	root.SetArgs(args)
	cmd, err := root.ExecuteC()
	if err == nil {
		return ExitSuccess
	}
	err = g.explainFailure(err) // tlsdiag.go
	var fe *flagError
	switch {
	case errors.Is(err, errSilent):
	case errors.As(err, &fe):
		// As etcdctl (through cobra): the error, then the command's usage.
		fmt.Fprintf(stdio.Err, "Error: %v\n%s\n", err, cmd.UsageString())
	case cmd == root && strings.HasPrefix(err.Error(), "unknown command"):
		fmt.Fprintf(stdio.Err, "Error: %v\nRun '%s --help' for usage.\n", err, root.CommandPath())
	default:
		fmt.Fprintf(stdio.Err, "Error: %v\n", err)
	}
	return exitCode(err)
}

// flagError is an error cobra found in the flags of a command line.
type flagError struct{ error }

func (e *flagError) Unwrap() error { return e.error }

func newRoot(stdio Stdio) (*cobra.Command, *globals) {
	g := &globals{stdio: stdio}
	root := &cobra.Command{
		Use:           "keelctl",
		Short:         "keelctl talks to a keel or etcd v3 cluster: keys, leases, members, maintenance.",
		SilenceErrors: true,
		SilenceUsage:  true,
	}
	root.SetIn(stdio.In)
	root.SetOut(stdio.Out)
	root.SetErr(stdio.Err)
	g.register(root.PersistentFlags())
	for _, add := range commandFamilies {
		for _, c := range add(g) {
			root.AddCommand(c)
		}
	}
	addUsedGroups(root)
	// cobra's own errors (unknown command, unknown flag, bad flag value)
	// end keelctl as etcdctl's do.
	root.SetFlagErrorFunc(func(cmd *cobra.Command, err error) error {
		return &flagError{err}
	})
	return root, g
}

// commandFamilies builds the commands, one function per family file.
var commandFamilies = []func(g *globals) []*cobra.Command{
	kvCommands,          // kv.go: get, put, del
	txnCommands,         // txn.go: txn, compaction
	watchCommands,       // watch.go: watch
	leaseCommands,       // lease.go: lease grant|revoke|timetolive|list|keep-alive
	memberCommands,      // member.go: member add|remove|update|list|promote
	endpointCommands,    // endpoint.go: endpoint health|status|hashkv
	maintenanceCommands, // maintenance.go: alarm, defrag, move-leader
	snapshotCommands,    // snapshot.go: snapshot save|status
	concurrencyCommands, // concurrency.go: lock, elect
	authCommands,        // auth.go: auth enable|disable|status
	userCommands,        // user.go: user add|delete|get|list|passwd|grant-role|revoke-role
	roleCommands,        // role.go: role add|delete|get|list|grant-permission|revoke-permission
	utilityCommands,     // utility.go: check perf|datascale, make-mirror, version
	pkiCommands,         // pki.go: pki create|inspect (keel's own)
}
