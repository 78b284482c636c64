package ctl

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// The environment variables that give watch its key and range end.
const (
	envWatchKey      = "ETCDCTL_WATCH_KEY"
	envWatchRangeEnd = "ETCDCTL_WATCH_RANGE_END"
)

var (
	errWatchArgs          = errors.New("bad number of arguments")
	errWatchArgsEnv       = errors.New("bad number of arguments (found conflicting environment key)")
	errWatchArgsSeparator = errors.New("bad number of arguments (found separator --, but no commands)")
)

func watchCommands(g *globals) []*cobra.Command { return []*cobra.Command{watchCommand(g)} }

// watchOptions are watch's flags; each line of watch -i has its own.
type watchOptions struct {
	interactive, prefix, prevKV, progressNotify bool
	rev                                         int64
}

func (o *watchOptions) register(f *pflag.FlagSet) {
	f.BoolVarP(&o.interactive, "interactive", "i", false, "take watch and progress commands line by line from standard input")
	f.BoolVar(&o.prefix, "prefix", false, "watch every key that starts with the key")
	f.Int64Var(&o.rev, "rev", 0, "replay the changes from this revision on")
	f.BoolVar(&o.prevKV, "prev-kv", false, "also print each key as it was before the change")
	f.BoolVar(&o.progressNotify, "progress-notify", false, "have the server report its revision now and then when nothing changes")
}

func watchCommand(g *globals) *cobra.Command {
	var o watchOptions
	cmd := &cobra.Command{
		Use:     "watch [options] [key | prefix] [range_end] [-- command [args...]]",
		Short:   "Prints the changes to a key, range or prefix as they happen",
		GroupID: groupKV,
	}
	o.register(cmd.Flags())
	run := g.run(func(cmd *cobra.Command, args []string) error {
		env := watchEnv{key: os.Getenv(envWatchKey), rangeEnd: os.Getenv(envWatchRangeEnd)}
		if env.key == "" && env.rangeEnd != "" {
			return badArgs("%s is empty but got %s=%q", envWatchKey, envWatchRangeEnd, env.rangeEnd)
		}
		if o.interactive {
			return g.watchInteractive(env)
		}
		keys, execArgs, err := env.split(args, cmd.ArgsLenAtDash())
		if err != nil {
			return withCode(ExitBadArgs, err)
		}
		p, c, err := g.connect()
		if err != nil {
			return err
		}
		ch, err := o.watch(c, keys)
		if err != nil {
			c.Close()
			return withCode(ExitBadArgs, err)
		}
		if err := g.watchOutput(p, c, execArgs).follow(ch); err != nil {
			c.Close()
			return err
		}
		if err := c.Close(); err != nil {
			return withCode(ExitBadConnection, err)
		}
		return withCode(ExitInterrupted, errors.New("watch is canceled by the server"))
	})
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		// ETCDCTL_WATCH_KEY and ETCDCTL_WATCH_RANGE_END are watch's own:
		// no warnings about unknown ETCDCTL_* variables for them.
		for _, name := range []string{"watch-key", "watch-range-end"} {
			g.flags.AddFlag(&pflag.Flag{Name: name, Value: discardValue{}})
		}
		return run(cmd, args)
	}
	return cmd
}

// discardValue is the value of a flag that only marks its ETCDCTL_* variable
// as known.
type discardValue struct{}

func (discardValue) String() string   { return "" }
func (discardValue) Set(string) error { return nil }
func (discardValue) Type() string     { return "" }

// watchEnv is the key and range end of ETCDCTL_WATCH_KEY and
// ETCDCTL_WATCH_RANGE_END, which stand in for the arguments.
type watchEnv struct{ key, rangeEnd string }

// split splits watch's arguments (dash is where "--" was, -1 if nowhere)
// into the key arguments and the command to run on each event.
func (e watchEnv) split(args []string, dash int) (keys, execArgs []string, err error) {
	if dash < 0 {
		if len(args) == 0 && e.key == "" {
			return nil, nil, errWatchArgs
		}
		if len(args) > 0 && e.key != "" {
			return nil, nil, errWatchArgsEnv
		}
		return e.keys(args), nil, nil
	}
	if dash == len(args) {
		return nil, nil, errWatchArgsSeparator
	}
	if dash > 0 && e.key != "" {
		return nil, nil, errWatchArgsEnv
	}
	return e.cut(args, args[dash:])
}

// keys puts the environment's key and range end before args.
func (e watchEnv) keys(args []string) []string {
	if e.key == "" {
		return args
	}
	keys := []string{e.key}
	if e.rangeEnd != "" {
		keys = append(keys, e.rangeEnd)
	}
	return append(keys, args...)
}

// cut separates the command execArgs, which ends args, from the keys before
// it. As etcdctl, it cuts at the last argument equal to the command's name.
func (e watchEnv) cut(args, execArgs []string) (keys, _ []string, err error) {
	keys = e.keys(args)
	end := len(keys) - 1
	for end >= 0 && keys[end] != execArgs[0] {
		end--
	}
	return keys[:max(end, 0)], execArgs, nil
}

// watch starts watching keys: a key and an optional range end.
func (o *watchOptions) watch(c *clientv3.Client, keys []string) (clientv3.WatchChan, error) {
	if len(keys) < 1 {
		return nil, errWatchArgs
	}
	opts := []clientv3.OpOption{clientv3.WithRev(o.rev)}
	if len(keys) == 2 {
		if o.prefix {
			return nil, errors.New("`range_end` and `--prefix` are mutually exclusive")
		}
		opts = append(opts, clientv3.WithRange(keys[1]))
	}
	if o.prefix {
		opts = append(opts, clientv3.WithPrefix())
	}
	if o.prevKV {
		opts = append(opts, clientv3.WithPrevKV())
	}
	if o.progressNotify {
		opts = append(opts, clientv3.WithProgressNotify())
	}
	return c.Watch(clientv3.WithRequireLeader(context.Background()), keys[0], opts...), nil
}

// watchInteractive reads watch and progress commands from standard input
// until it ends, which ends keelctl with ExitInvalidInput as etcdctl. Each
// watch prints its events as they come, concurrently with the others; a
// failing watch (an unsupported format, a failing command) ends keelctl.
// Every watch has ended when it returns.
func (g *globals) watchInteractive(env watchEnv) error {
	p, c, err := g.connect()
	if err != nil {
		return err
	}
	p.w = &lockedWriter{w: g.stdio.Out}
	s := &watchSession{g: g, p: p, c: c, env: env, failed: make(chan error, 1), done: make(chan struct{})}
	defer s.end()
	lines, readErr := readLines(g.stdio.In, s.done)
	for {
		select {
		case err := <-s.failed:
			return err
		case err := <-readErr:
			return withCode(ExitInvalidInput, fmt.Errorf("error reading watch request line: %w", err))
		case l := <-lines:
			if err := s.line(strings.TrimSuffix(l, "\n")); err != nil {
				return err
			}
		}
	}
}

// watchSession is a run of watch -i: the watches its lines started.
type watchSession struct {
	g   *globals
	p   *printer
	c   *clientv3.Client
	env watchEnv
	// failed gets the first error that ends a watch.
	failed  chan error
	watches sync.WaitGroup
	// done is closed when the session ends.
	done chan struct{}
}

// end closes the client, which closes every watch channel, and waits for
// the watches to end.
func (s *watchSession) end() {
	close(s.done)
	s.c.Close()
	s.watches.Wait()
}

// line runs one line of input. A line it cannot run is reported on
// standard error and skipped; the error it returns ends keelctl.
func (s *watchSession) line(l string) error {
	stderr := s.g.stdio.Err
	args, err := argify(l)
	if err != nil {
		return err
	}
	if len(args) == 0 {
		fmt.Fprintf(stderr, "Invalid command: %s (watch and progress supported)\n", l)
		return nil
	}
	switch args[0] {
	case "progress":
		return s.c.RequestProgress(clientv3.WithRequireLeader(context.Background()))
	case "watch":
	default:
		fmt.Fprintf(stderr, "Invalid command %s (only support watch)\n", l)
		return nil
	}
	if len(args) < 2 && s.env.key == "" {
		fmt.Fprintf(stderr, "Invalid command %s (command type or key is not provided)\n", l)
		return nil
	}
	o, keys, execArgs, err := s.env.parseLine(args[1:])
	if err != nil {
		return withCode(ExitBadArgs, err)
	}
	ch, err := o.watch(s.c, keys)
	if err != nil {
		fmt.Fprintf(stderr, "Invalid command %s (%v)\n", l, err)
		return nil
	}
	out := s.g.watchOutput(s.p, s.c, execArgs)
	s.watches.Go(func() {
		if err := out.follow(ch); err != nil {
			select {
			case s.failed <- err:
			default: // another watch failed first
			}
		}
	})
	return nil
}

// readLines sends each line of r, with its newline, on lines, then the
// error that ended the reading (io.EOF at the end) on errc. Once quit is
// closed it sends nothing more and stops after the read in progress,
// which only r's end or an input line can finish.
func readLines(r io.Reader, quit <-chan struct{}) (lines <-chan string, errc <-chan error) {
	lc, ec := make(chan string), make(chan error, 1)
	go func() {
		br := bufio.NewReader(r)
		for {
			l, err := br.ReadString('\n')
			if err != nil {
				ec <- err
				return
			}
			select {
			case lc <- l:
			case <-quit:
				return
			}
		}
	}()
	return lc, ec
}

// parseLine reads the arguments of a "watch" line of watch -i: its own
// flags, keys and command after "--".
func (e watchEnv) parseLine(args []string) (o *watchOptions, keys, execArgs []string, err error) {
	dash := -1
	for i, a := range args {
		if a == "--" {
			dash = i
			break
		}
	}
	if dash == len(args)-1 {
		return nil, nil, nil, errWatchArgsSeparator
	}
	o = &watchOptions{}
	fs := pflag.NewFlagSet("watch", pflag.ContinueOnError)
	fs.SetOutput(io.Discard)
	o.register(fs)
	if err := fs.Parse(args); err != nil {
		return nil, nil, nil, err
	}
	rest := fs.Args()
	if dash < 0 {
		if len(rest) == 0 && e.key == "" {
			return nil, nil, nil, errWatchArgs
		}
		if len(rest) > 0 && e.key != "" {
			return nil, nil, nil, errWatchArgsEnv
		}
		return o, e.keys(rest), nil, nil
	}
	keys, execArgs, err = e.cut(rest, args[dash+1:])
	return o, keys, execArgs, err
}

// watchOutput is where one watch's responses go: printed with p, and each
// event handed to the command, if any.
type watchOutput struct {
	p       *printer
	stderr  io.Writer
	command []string
	// ctx ends a running command when the client closes.
	ctx context.Context
}

func (g *globals) watchOutput(p *printer, c *clientv3.Client, command []string) *watchOutput {
	return &watchOutput{p: p, stderr: g.stdio.Err, command: command, ctx: c.Ctx()}
}

// follow handles the responses of ch until it is closed. It returns the
// error of an unsupported format or of a failing command.
func (w *watchOutput) follow(ch clientv3.WatchChan) error {
	for resp := range ch {
		if err := w.handle(&resp); err != nil {
			return err
		}
	}
	return nil
}

func (w *watchOutput) handle(resp *clientv3.WatchResponse) error {
	if resp.Canceled {
		fmt.Fprintf(w.stderr, "watch was canceled (%v)\n", resp.Err())
	}
	if err := w.p.watch(resp); err != nil {
		return err
	}
	if len(w.command) == 0 {
		return nil
	}
	for _, ev := range resp.Events {
		if err := w.runCommand(eventEnv(resp.Header.Revision, ev)); err != nil {
			return err
		}
	}
	return nil
}

// runCommand runs the watch's command with env added to keelctl's
// environment. Its failure is reported on standard error and ends keelctl
// with ExitError.
func (w *watchOutput) runCommand(env []string) error {
	cmd := exec.CommandContext(w.ctx, w.command[0], w.command[1:]...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = w.p.w, w.stderr
	if err := cmd.Run(); err != nil {
		fmt.Fprintf(w.stderr, "command %q error (%v)\n", w.command, err)
		return withCode(ExitError, errSilent)
	}
	return nil
}

// eventEnv describes an event to the watch's command: the revision of its
// response, and its type, key and value, each Go-quoted.
func eventEnv(rev int64, ev *clientv3.Event) []string {
	return []string{
		"ETCD_WATCH_REVISION=" + strconv.FormatInt(rev, 10),
		"ETCD_WATCH_EVENT_TYPE=" + strconv.Quote(ev.Type.String()),
		"ETCD_WATCH_KEY=" + strconv.Quote(string(ev.Kv.Key)),
		"ETCD_WATCH_VALUE=" + strconv.Quote(string(ev.Kv.Value)),
	}
}

// watch prints one watch response, all at once so that concurrent watches
// do not interleave.
func (p *printer) watch(resp *clientv3.WatchResponse) error {
	var buf bytes.Buffer
	q := *p
	q.w = &buf
	if resp.IsProgressNotify() {
		q.printf("progress notify: %d\n", resp.Header.GetRevision())
	}
	var err error
	switch p.format {
	case formatSimple:
		for _, ev := range resp.Events {
			q.println(ev.Type)
			if ev.PrevKv != nil {
				q.simpleKV(ev.PrevKv)
			}
			q.simpleKV(ev.Kv)
		}
	case formatFields:
		q.fieldsHeader(resp.Header)
		for _, ev := range resp.Events {
			q.printf("\"Type\" : %v\n", ev.Type)
			if ev.PrevKv != nil {
				q.fieldsKV("Prev", ev.PrevKv)
			}
			q.fieldsKV("", ev.Kv)
		}
	case formatJSON:
		err = q.json(resp)
	case formatProtobuf:
		err = q.protobuf(&pb.WatchResponse{
			Header:          resp.Header,
			Events:          resp.Events,
			CompactRevision: resp.CompactRevision,
			Canceled:        resp.Canceled,
			Created:         resp.Created,
		})
	default:
		err = p.unsupported()
	}
	_, werr := p.w.Write(buf.Bytes())
	if err != nil {
		return err
	}
	return werr
}

// lockedWriter serialises the writes of concurrent watches.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(b)
}
