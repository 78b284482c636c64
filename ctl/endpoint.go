package ctl

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/dustin/go-humanize"
	"github.com/spf13/cobra"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

func endpointCommands(g *globals) []*cobra.Command {
	var cluster bool
	ep := &cobra.Command{
		Use:     "endpoint <subcommand>",
		Short:   "Looks at each endpoint: health, status, hash",
		GroupID: groupCluster,
	}
	ep.PersistentFlags().BoolVar(&cluster, "cluster", false, "act on every member the cluster lists, not only --endpoints")
	ep.AddCommand(endpointHealthCommand(g, &cluster), endpointStatusCommand(g, &cluster), endpointHashKVCommand(g, &cluster))
	return []*cobra.Command{ep}
}

// endpointSet is what the per-endpoint commands (endpoint health, status
// and hashkv, defrag, move-leader) work through: one client configuration
// per endpoint, all made from the command's connection settings, so that a
// password is asked for once.
type endpointSet []clientv3.Config

// targets is the endpoint set of endpoint health/status/hashkv and defrag:
// the endpoints of --endpoints as given (as in etcdctl, not those
// --discovery-srv finds), or with cluster (--cluster) the client URLs of
// every member (memberEndpoints). The command's settings are built first,
// as in etcdctl.
func (g *globals) targets(cluster bool) (endpointSet, error) {
	if _, err := g.clientSpec(); err != nil {
		return nil, err
	}
	eps := g.endpoints
	if cluster {
		var err error
		if eps, err = g.memberEndpoints(); err != nil {
			return nil, err
		}
	}
	return g.endpointSet(eps)
}

// endpointSet is the endpoint set of eps, with the command's settings. A
// TLS file that cannot be read is a usage error here (128).
func (g *globals) endpointSet(eps []string) (endpointSet, error) {
	spec, err := g.clientSpec()
	if err != nil {
		return nil, err
	}
	set := make(endpointSet, len(eps))
	for i, ep := range eps {
		if set[i], err = g.specConfig(spec, []string{ep}); err != nil {
			return nil, withCode(ExitBadArgs, err)
		}
	}
	return set, nil
}

// memberEndpoints are the client URLs of every member, from the member list
// read through the command's endpoints. As etcdctl, it builds connection
// settings of its own, so --user without a password prompts a second time,
// and without the message size limits; the errors after those settings all
// end keelctl with ExitError.
func (g *globals) memberEndpoints() ([]string, error) {
	spec, err := g.newSpec()
	if err != nil {
		return nil, err
	}
	spec.MaxCallSendMsgSize, spec.MaxCallRecvMsgSize = 0, 0
	cfg, err := g.specConfig(spec, spec.Endpoints)
	if err != nil {
		return nil, err
	}
	c, err := clientv3.New(cfg)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	ctx, cancel := g.envCommandContext()
	defer cancel()
	resp, err := c.MemberList(ctx)
	if err != nil {
		return nil, fmt.Errorf("failed to fetch endpoints from etcd cluster member list: %w", err)
	}
	var urls []string
	for _, m := range resp.Members {
		urls = append(urls, m.ClientURLs...)
	}
	return urls, nil
}

// visit connects to each endpoint in turn, in order, and calls fn with the
// client, which it closes when fn returns. It stops with the error of a
// client that cannot be made (ExitBadConnection) or of fn, or early and
// without error when fn returns done.
func (set endpointSet) visit(fn func(c *clientv3.Client, ep string) (done bool, err error)) error {
	for _, cfg := range set {
		c, err := newClient(cfg)
		if err != nil {
			return err
		}
		done, err := fn(c, cfg.Endpoints[0])
		c.Close()
		if done || err != nil {
			return err
		}
	}
	return nil
}

// queryEndpoints is the body of endpoint status and hashkv. It asks each
// endpoint of the command (targets) for its <what> (its "status", its
// "hash") with get, each within --command-timeout (envCommandContext), and
// prints the answers with print. An endpoint get fails on is reported on
// standard error and left out; the last such failure is returned as failed.
// err stops the command before anything is printed (the settings, the
// endpoints, a client that cannot be made), or is print's.
func queryEndpoints[R any](g *globals, cluster bool, what string,
	get func(ctx context.Context, c *clientv3.Client, ep string) (R, error),
	print func(*printer, []R) error,
) (failed, err error) {
	p, err := g.printer()
	if err != nil {
		return nil, err
	}
	set, err := g.targets(cluster)
	if err != nil {
		return nil, err
	}
	var list []R
	err = set.visit(func(c *clientv3.Client, ep string) (bool, error) {
		ctx, cancel := g.envCommandContext()
		defer cancel()
		if r, gerr := get(ctx, c, ep); gerr != nil {
			fmt.Fprintf(g.stdio.Err, "Failed to get the %s of endpoint %s (%v)\n", what, ep, gerr)
			failed = gerr
		} else {
			list = append(list, r)
		}
		return false, nil
	})
	if err != nil {
		return nil, err
	}
	return failed, print(p, list)
}

// epHealth is the health of one endpoint, as endpoint health prints it.
type epHealth struct {
	Ep     string `json:"endpoint"`
	Health bool   `json:"health"`
	Took   string `json:"took"`
	Error  string `json:"error,omitempty"`
}

func endpointHealthCommand(g *globals, cluster *bool) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "health",
		Short: "Tells whether each endpoint answers reads and is free of alarms",
	}
	cmd.RunE = g.run(func(cmd *cobra.Command, args []string) error {
		p, err := g.printer()
		if err != nil {
			return err
		}
		set, err := g.targets(*cluster)
		if err != nil {
			return err
		}
		hs := set.health(g)
		if err := p.endpointHealth(hs, g.stdio.Err); err != nil {
			return err
		}
		for _, h := range hs {
			if !h.Health {
				return errors.New("unhealthy cluster")
			}
		}
		return nil
	})
	return cmd
}

// health checks all the endpoints at the same time, each with a client of
// its own, and returns their health in the order the checks end.
func (set endpointSet) health(g *globals) []epHealth {
	results := make(chan epHealth, len(set))
	var wg sync.WaitGroup
	for _, cfg := range set {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results <- g.checkEndpoint(cfg)
		}()
	}
	wg.Wait()
	close(results)
	hs := make([]epHealth, 0, len(set))
	for h := range results {
		hs = append(hs, h)
	}
	return hs
}

// checkEndpoint is the health of the one endpoint of cfg. It is healthy
// when a linearizable read goes through (a refusal for lack of permission
// counts: it went through consensus too) and no alarm is raised. Took is the
// time of the read.
func (g *globals) checkEndpoint(cfg clientv3.Config) epHealth {
	h := epHealth{Ep: cfg.Endpoints[0]}
	c, err := clientv3.New(cfg)
	if err != nil {
		h.Error = err.Error()
		return h
	}
	defer c.Close()
	ctx, cancel := g.envCommandContext()
	defer cancel()
	start := time.Now()
	_, err = c.Get(ctx, "health")
	h.Took = time.Since(start).String()
	if err != nil && !errors.Is(err, rpctypes.ErrPermissionDenied) {
		h.Error = err.Error()
		return h
	}
	h.Error = raisedAlarms(ctx, c)
	h.Health = h.Error == ""
	return h
}

// raisedAlarms describes the alarms raised in c's cluster for endpoint
// health, "" when there are none: "Active Alarm(s): " and one word with a
// space after it per alarm.
func raisedAlarms(ctx context.Context, c *clientv3.Client) string {
	resp, err := c.AlarmList(ctx)
	if err != nil {
		return "Unable to fetch the alarm list"
	}
	if len(resp.Alarms) == 0 {
		return ""
	}
	var b strings.Builder
	b.WriteString("Active Alarm(s): ")
	for _, a := range resp.Alarms {
		word := "UNKNOWN"
		if a.Alarm == pb.AlarmType_NOSPACE || a.Alarm == pb.AlarmType_CORRUPT {
			word = a.Alarm.String()
		}
		b.WriteString(word + " ")
	}
	return b.String()
}

// endpointHealth prints the health of endpoints; the simple format reports
// an unhealthy one on errw.
func (p *printer) endpointHealth(hs []epHealth, errw io.Writer) error {
	rows := make([][]string, len(hs))
	for i, h := range hs {
		rows[i] = []string{h.Ep, strconv.FormatBool(h.Health), h.Took, h.Error}
	}
	switch p.format {
	case formatSimple:
		for _, h := range hs {
			if h.Error == "" {
				p.printf("%s is healthy: successfully committed proposal: took = %s\n", h.Ep, h.Took)
			} else {
				fmt.Fprintf(errw, "%s is unhealthy: failed to commit proposal: %s\n", h.Ep, h.Error)
			}
		}
	case formatTable:
		return p.table([]string{"endpoint", "health", "took", "error"}, rows)
	case formatFields:
		for _, h := range hs {
			p.printf("\"Endpoint\" : %q\n\"Health\" : %v\n\"Took\" : %s\n\"Error\" : %s\n\n", h.Ep, h.Health, h.Took, h.Error)
		}
	case formatJSON:
		return p.json(hs)
	default:
		return p.unsupported()
	}
	return nil
}

// epStatus is the status of one endpoint, as endpoint status prints it.
type epStatus struct {
	Ep   string                   `json:"Endpoint"`
	Resp *clientv3.StatusResponse `json:"Status"`
}

func endpointStatusCommand(g *globals, cluster *bool) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Reports version, size, leadership and Raft position of each endpoint",
		Long: `Reports on each endpoint's member. In the simple format each endpoint gets
one comma-separated line: address, member ID, server and storage versions,
database size, bytes in use and the free share, quota, whether it leads,
whether it is a learner, Raft term, Raft index, applied index, errors and
downgrade state. Use -w table for a readable layout.`,
	}
	cmd.RunE = g.run(func(cmd *cobra.Command, args []string) error {
		failed, err := queryEndpoints(g, *cluster, "status", func(ctx context.Context, c *clientv3.Client, ep string) (epStatus, error) {
			resp, err := c.Status(ctx, ep)
			return epStatus{ep, resp}, err
		}, (*printer).endpointStatus)
		if err == nil && failed != nil {
			err = withCode(ExitError, errSilent)
		}
		return err
	})
	return cmd
}

// statusRows are the rows of the status table, also printed by the simple
// format.
func statusRows(list []epStatus) [][]string {
	var rows [][]string
	for _, st := range list {
		r := (*pb.StatusResponse)(st.Resp)
		rows = append(rows, []string{
			st.Ep,
			fmt.Sprintf("%x", r.GetHeader().GetMemberId()),
			r.GetVersion(),
			r.GetStorageVersion(),
			humanize.Bytes(uint64(r.GetDbSize())),
			humanize.Bytes(uint64(r.GetDbSizeInUse())),
			fmt.Sprintf("%d%%", 100-r.GetDbSizeInUse()*100/r.GetDbSize()),
			humanize.Bytes(uint64(r.GetDbSizeQuota())),
			strconv.FormatBool(r.GetLeader() == r.GetHeader().GetMemberId()),
			strconv.FormatBool(r.GetIsLearner()),
			strconv.FormatUint(r.GetRaftTerm(), 10),
			strconv.FormatUint(r.GetRaftIndex(), 10),
			strconv.FormatUint(r.GetRaftAppliedIndex(), 10),
			strings.Join(r.GetErrors(), ", "),
			r.GetDowngradeInfo().GetTargetVersion(),
			strconv.FormatBool(r.GetDowngradeInfo().GetEnabled()),
		})
	}
	return rows
}

func (p *printer) endpointStatus(list []epStatus) error {
	switch p.format {
	case formatSimple:
		p.rows(statusRows(list))
	case formatTable:
		return p.table([]string{"endpoint", "ID", "version", "storage version", "db size", "in use",
			"percentage not in use", "quota", "is leader", "is learner", "raft term", "raft index",
			"raft applied index", "errors", "downgrade target version", "downgrade enabled"}, statusRows(list))
	case formatFields:
		for _, st := range list {
			r := (*pb.StatusResponse)(st.Resp)
			p.fieldsHeader(r.Header)
			p.printf("\"Version\" : %q\n", r.Version)
			p.printf("\"StorageVersion\" : %q\n", r.StorageVersion)
			p.printf("\"DBSize\" : %d\n", r.DbSize)
			p.printf("\"DBSizeInUse\" : %d\n", r.DbSizeInUse)
			p.printf("\"DBSizeQuota\" : %d\n", r.DbSizeQuota)
			p.printf("\"Leader\" : %d\n", r.Leader)
			p.printf("\"IsLearner\" : %v\n", r.IsLearner)
			p.printf("\"RaftIndex\" : %d\n", r.RaftIndex)
			p.printf("\"RaftAppliedIndex\" : %d\n", r.RaftAppliedIndex)
			p.printf("\"Errors\" : %v\n", r.Errors)
			p.printf("\"Endpoint\" : %q\n", st.Ep)
			p.printf("\"DowngradeTargetVersion\" : %q\n", r.GetDowngradeInfo().GetTargetVersion())
			p.printf("\"DowngradeEnabled\" : %v\n\n", r.GetDowngradeInfo().GetEnabled())
		}
	case formatJSON:
		return p.json(list)
	default:
		return p.unsupported()
	}
	return nil
}

// epHashKV is the key-value hash of one endpoint, as endpoint hashkv prints
// it.
type epHashKV struct {
	Ep   string                   `json:"Endpoint"`
	Resp *clientv3.HashKVResponse `json:"HashKV"`
}

func endpointHashKVCommand(g *globals, cluster *bool) *cobra.Command {
	var rev int64
	cmd := &cobra.Command{
		Use:   "hashkv",
		Short: "Prints a checksum of each endpoint's key history, to compare members",
	}
	cmd.PersistentFlags().Int64Var(&rev, "rev", 0, "hash the history up to this revision (0: all of it)")
	cmd.RunE = g.run(func(cmd *cobra.Command, args []string) error {
		failed, err := queryEndpoints(g, *cluster, "hash", func(ctx context.Context, c *clientv3.Client, ep string) (epHashKV, error) {
			resp, err := c.HashKV(ctx, ep, rev)
			return epHashKV{ep, resp}, err
		}, (*printer).endpointHashKV)
		if err != nil {
			return err
		}
		return failed
	})
	return cmd
}

func (p *printer) endpointHashKV(list []epHashKV) error {
	var rows [][]string
	for _, h := range list {
		rows = append(rows, []string{h.Ep, strconv.FormatUint(uint64(h.Resp.Hash), 10), strconv.FormatInt(h.Resp.HashRevision, 10)})
	}
	switch p.format {
	case formatSimple:
		p.rows(rows)
	case formatTable:
		return p.table([]string{"endpoint", "hash", "hash_revision"}, rows)
	case formatFields:
		for _, h := range list {
			p.fieldsHeader(h.Resp.Header)
			p.printf("\"Endpoint\" : %q\n", h.Ep)
			p.printf("\"Hash\" : %d\n", h.Resp.Hash)
			p.printf("\"HashRevision\" : %d\n\n", h.Resp.HashRevision)
		}
	case formatJSON:
		return p.json(list)
	default:
		return p.unsupported()
	}
	return nil
}
