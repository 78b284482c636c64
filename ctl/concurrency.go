package ctl

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"sync"
	"syscall"

	"github.com/spf13/cobra"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
)

func concurrencyCommands(g *globals) []*cobra.Command {
	return []*cobra.Command{lockCommand(g), electCommand(g)}
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
		s, err := concurrency.NewSession(c, concurrency.WithTTL(ttl))
		if err != nil {
			return err
		}
		sig := catchStopSignals()
		defer sig.release()
		m := concurrency.NewMutex(s, args[0])
		if err := m.Lock(sig.ctx); err != nil {
			return err
		}
		hold := &holding{s: s, key: m.Key(), give: m.Unlock, expired: "session expired", needKey: true}
		if len(args) > 1 {
			return childStatus(g.underLock(sig, hold, m.Header().Revision, args[1:]))
		}
		return g.hold(sig, p, c, hold)
	})
	return cmd
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
		if listen != (len(args) == 1) {
			if listen {
				return badArgs("proposal given but -l is set")
			}
			return badArgs("no proposal argument but -l not set")
		}
		// Following the election needs no session of its own, but etcdctl
		// opens one all the same (its lease is visible): so does keelctl.
		s, err := concurrency.NewSession(c)
		if err != nil {
			return err
		}
		sig := catchStopSignals()
		defer sig.release()
		e := concurrency.NewElection(s, args[0])
		if listen {
			return followLeaders(sig.ctx, p, e)
		}
		if err := e.Campaign(sig.ctx, args[1]); err != nil {
			return err
		}
		return g.hold(sig, p, c, &holding{s: s, key: e.Key(), give: e.Resign, expired: "elect: session expired"})
	})
	return cmd
}

// followLeaders prints the leader of the election, then each new one, until
// ctx ends. The observation ending by itself is an error.
func followLeaders(ctx context.Context, p *printer, e *concurrency.Election) error {
	for leader := range e.Observe(ctx) {
		if err := p.get(leader, false); err != nil {
			return err
		}
	}
	if ctx.Err() != nil {
		return nil
	}
	return errors.New("elect: observer lost")
}

// holding is a lock or an election's lead, taken in session s under key.
type holding struct {
	s   *concurrency.Session
	key string
	// give hands it back (unlock, resign).
	give func(context.Context) error
	// expired is the error when the session ends while holding.
	expired string
	// needKey makes a key gone before it is printed an error.
	needKey bool
}

// giveBack hands h back within --command-timeout, so that an unreachable
// cluster cannot keep keelctl waiting: the session's TTL frees it then.
func (g *globals) giveBack(h *holding) error {
	ctx, cancel := g.commandContext()
	defer cancel()
	return h.give(ctx)
}

// hold prints h's key-value pair and keeps h until SIGINT or SIGTERM, then
// gives it back. Once a signal came, keelctl stops catching them: a second
// one ends it at once. A key that cannot be printed (the format) is not
// given back, as etcdctl: the session's TTL frees it.
func (g *globals) hold(sig *stopSignals, p *printer, c *clientv3.Client, h *holding) error {
	resp, err := c.Get(sig.ctx, h.key)
	if err != nil {
		return err
	}
	if h.needKey && len(resp.Kvs) == 0 {
		return errors.New("lock lost on init")
	}
	if err := p.get(resp, false); err != nil {
		return err
	}
	select {
	case <-h.s.Done():
		return errors.New(h.expired)
	case <-sig.ctx.Done():
	}
	sig.release()
	return g.giveBack(h)
}

// underLock runs argv holding h, then gives h back. The command sees the
// lock in ETCD_LOCK_KEY and ETCD_LOCK_REV and writes to keelctl's output.
// While it runs, SIGTERM is passed on to it; SIGINT is not (Ctrl-C reaches
// the command through its process group already), and keelctl keeps
// waiting for the command either way, as etcdctl does.
func (g *globals) underLock(sig *stopSignals, h *holding, rev int64, argv []string) error {
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = append([]string{"ETCD_LOCK_KEY=" + h.key, fmt.Sprintf("ETCD_LOCK_REV=%d", rev)}, os.Environ()...)
	cmd.Stdout, cmd.Stderr = g.stdio.Out, g.stdio.Err
	runErr := sig.forwardDuring(cmd, syscall.SIGTERM)
	sig.release()
	if err := g.giveBack(h); runErr == nil {
		return err
	}
	return runErr
}

// childStatus makes the exit status of a command that failed under the
// lock keelctl's own (-1, read as 255, when a signal killed it).
func childStatus(err error) error {
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return withCode(ee.ExitCode(), err)
	}
	return err
}

// stopSignals catches SIGINT and SIGTERM for a command that winds down by
// itself (unlock, resign) instead of dying at once. ctx ends at the first
// signal, unless a child command is running (see forwardDuring).
type stopSignals struct {
	ctx    context.Context
	cancel context.CancelFunc
	ch     chan os.Signal

	mu    sync.Mutex
	child *exec.Cmd      // running under forwardDuring
	pass  os.Signal      // the signal the child gets
	quit  chan struct{}  // closed by release
	wg    sync.WaitGroup // the relaying goroutine
	freed bool
}

func catchStopSignals() *stopSignals {
	s := &stopSignals{ch: make(chan os.Signal, 1), quit: make(chan struct{})}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	signal.Notify(s.ch, os.Interrupt, syscall.SIGTERM)
	s.wg.Go(s.relay)
	return s
}

// relay handles each signal until release.
func (s *stopSignals) relay() {
	for {
		select {
		case <-s.quit:
			return
		case got := <-s.ch:
			s.mu.Lock()
			switch {
			case s.child == nil:
				s.cancel()
			case got == s.pass:
				_ = s.child.Process.Signal(got) // it may have just exited
			}
			s.mu.Unlock()
		}
	}
}

// forwardDuring runs cmd to its end, passing the signal pass on to it.
func (s *stopSignals) forwardDuring(cmd *exec.Cmd, pass os.Signal) error {
	s.mu.Lock()
	defer func() {
		s.mu.Lock()
		s.child = nil
		s.mu.Unlock()
	}()
	if err := cmd.Start(); err != nil {
		s.mu.Unlock()
		return err
	}
	s.child, s.pass = cmd, pass
	s.mu.Unlock()
	return cmd.Wait()
}

// release stops catching the signals, so that the next one ends keelctl,
// and ends ctx and the relaying goroutine. It may be called more than once.
func (s *stopSignals) release() {
	s.mu.Lock()
	freed := s.freed
	s.freed = true
	s.mu.Unlock()
	if freed {
		return
	}
	signal.Stop(s.ch)
	close(s.quit)
	s.wg.Wait()
	s.cancel()
}
