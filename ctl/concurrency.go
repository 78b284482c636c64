package ctl

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
)

func concurrencyCommands(g *globals) []*cobra.Command {
	return []*cobra.Command{lockCommand(g), electCommand(g)}
}

// interruptContext is cancelled by the first SIGINT or SIGTERM. Until stop is
// called, those signals no longer end keelctl: the command must wind down
// (unlock, resign) and return by itself once ctx is done.
func interruptContext() (ctx context.Context, stop context.CancelFunc) {
	return signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
}

func lockCommand(g *globals) *cobra.Command {
	var ttl int
	cmd := &cobra.Command{
		Use:     "lock [options] <lockname> [command [args...]]",
		Short:   "Holds a distributed lock while a command runs, or until interrupted",
		GroupID: groupConcurrency,
	}
	cmd.Flags().IntVar(&ttl, "ttl", 10, "seconds the lock outlives keelctl should it die holding it")
	cmd.RunE = g.run(func(cmd *cobra.Command, args []string) error {
		if len(args) == 0 {
			return badArgs("lock takes a lock name argument and an optional command to execute")
		}
		p, c, err := g.connect()
		if err != nil {
			return err
		}
		defer c.Close()
		return lockExitCode(g.lock(p, c, ttl, args[0], args[1:]))
	})
	return cmd
}

// lockExitCode ends keelctl with the exit code of the command run under the
// lock when that command failed, and with ExitError for any other failure.
func lockExitCode(err error) error {
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok {
			return withCode(ws.ExitStatus(), err)
		}
	}
	return err
}

// lock takes the lock name in a session with the TTL, then either runs argv
// holding it, or prints the lock's key and holds it until SIGINT or SIGTERM.
// It unlocks before returning, unless the session expired.
func (g *globals) lock(p *printer, c *clientv3.Client, ttl int, name string, argv []string) error {
	s, err := concurrency.NewSession(c, concurrency.WithTTL(ttl))
	if err != nil {
		return err
	}
	ctx, stop := interruptContext()
	defer stop()
	m := concurrency.NewMutex(s, name)
	if err := m.Lock(ctx); err != nil {
		return err
	}
	if len(argv) > 0 {
		err := g.runLocked(m, argv)
		uerr := m.Unlock(context.Background())
		if err != nil {
			return err
		}
		return uerr
	}
	resp, err := c.Get(ctx, m.Key())
	if err != nil {
		return err
	}
	if len(resp.Kvs) == 0 {
		return errors.New("lock lost on init")
	}
	if err := p.get(resp, false); err != nil {
		return err
	}
	select {
	case <-ctx.Done():
		return m.Unlock(context.Background())
	case <-s.Done():
		return errors.New("session expired")
	}
}

// runLocked runs argv with keelctl's standard output and error, telling it
// the lock's key and revision in ETCD_LOCK_KEY and ETCD_LOCK_REV.
func (g *globals) runLocked(m *concurrency.Mutex, argv []string) error {
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = append([]string{
		"ETCD_LOCK_KEY=" + m.Key(),
		fmt.Sprintf("ETCD_LOCK_REV=%d", m.Header().Revision),
	}, os.Environ()...)
	cmd.Stdout, cmd.Stderr = g.stdio.Out, g.stdio.Err
	return cmd.Run()
}

func electCommand(g *globals) *cobra.Command {
	var listen bool
	cmd := &cobra.Command{
		Use:     "elect <election-name> [proposal]",
		Short:   "Runs for leader of an election, or follows who leads it",
		GroupID: groupConcurrency,
	}
	cmd.Flags().BoolVarP(&listen, "listen", "l", false, "follow the election's leaders instead of running")
	cmd.RunE = g.run(func(cmd *cobra.Command, args []string) error {
		if len(args) != 1 && len(args) != 2 {
			return badArgs("elect takes one election name argument and an optional proposal argument")
		}
		p, c, err := g.connect()
		if err != nil {
			return err
		}
		defer c.Close()
		switch {
		case len(args) == 1 && !listen:
			return badArgs("no proposal argument but -l not set")
		case len(args) == 2 && listen:
			return badArgs("proposal given but -l is set")
		case listen:
			return observe(p, c, args[0])
		default:
			return campaign(p, c, args[0], args[1])
		}
	})
	return cmd
}

// observe prints the leader of the election each time it changes, until
// SIGINT or SIGTERM.
func observe(p *printer, c *clientv3.Client, name string) error {
	// As etcdctl, in a session of its own although it never campaigns.
	s, err := concurrency.NewSession(c)
	if err != nil {
		return err
	}
	ctx, stop := interruptContext()
	defer stop()
	for resp := range concurrency.NewElection(s, name).Observe(ctx) {
		if err := p.get(resp, false); err != nil {
			return err
		}
	}
	if ctx.Err() == nil {
		return errors.New("elect: observer lost")
	}
	return nil
}

// campaign waits to lead the election with the proposal, prints the leader
// key, and leads until SIGINT or SIGTERM, then resigns.
func campaign(p *printer, c *clientv3.Client, name, proposal string) error {
	s, err := concurrency.NewSession(c)
	if err != nil {
		return err
	}
	ctx, stop := interruptContext()
	defer stop()
	e := concurrency.NewElection(s, name)
	if err := e.Campaign(ctx, proposal); err != nil {
		return err
	}
	resp, err := c.Get(ctx, e.Key())
	if err != nil {
		return err
	}
	if err := p.get(resp, false); err != nil {
		return err
	}
	select {
	case <-ctx.Done():
	case <-s.Done():
		return errors.New("elect: session expired")
	}
	return e.Resign(context.Background())
}
