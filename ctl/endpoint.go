package ctl

import (
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

// targetEndpoints are the endpoints a per-endpoint command visits: those of
// --endpoints, or with cluster (--cluster) the client URLs of every member
// of the member list read through them.
func (g *globals) targetEndpoints(cluster bool) ([]string, error) {
	if !cluster {
		return g.endpoints, nil
	}
	cfg, err := g.clientConfig(g.endpoints)
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
	var eps []string
	for _, m := range resp.Members {
		eps = append(eps, m.ClientURLs...)
	}
	return eps, nil
}

// endpointClient connects to the one endpoint ep.
func (g *globals) endpointClient(ep string) (*clientv3.Client, error) {
	cfg, err := g.clientConfig([]string{ep})
	if err != nil {
		return nil, err
	}
	return newClient(cfg)
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
		eps, err := g.targetEndpoints(*cluster)
		if err != nil {
			return withCode(ExitError, err)
		}
		cfgs := make([]clientv3.Config, len(eps))
		for i, ep := range eps {
			if cfgs[i], err = g.clientConfig([]string{ep}); err != nil {
				return withCode(ExitBadArgs, err)
			}
		}
		hs := g.checkHealth(cfgs)
		if err := p.endpointHealth(hs, g.stdio.Err); err != nil {
			return err
		}
		for _, h := range hs {
			if h.Error != "" {
				return errors.New("unhealthy cluster")
			}
		}
		return nil
	})
	return cmd
}

// checkHealth checks every endpoint at once, one client each, and returns
// the results in the order they come in (not the order of cfgs).
func (g *globals) checkHealth(cfgs []clientv3.Config) []epHealth {
	out := make(chan epHealth, len(cfgs))
	var wg sync.WaitGroup
	for _, cfg := range cfgs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			out <- g.health(cfg)
		}()
	}
	wg.Wait()
	close(out)
	var hs []epHealth
	for h := range out {
		hs = append(hs, h)
	}
	return hs
}

// health is healthy when the endpoint of cfg serves a linearizable read (or
// refuses it for lack of permission, which needs consensus too) and reports
// no alarm.
func (g *globals) health(cfg clientv3.Config) epHealth {
	ep := cfg.Endpoints[0]
	c, err := clientv3.New(cfg)
	if err != nil {
		return epHealth{Ep: ep, Error: err.Error()}
	}
	defer c.Close()
	start := time.Now()
	ctx, cancel := g.envCommandContext()
	defer cancel()
	_, err = c.Get(ctx, "health")
	h := epHealth{Ep: ep, Took: time.Since(start).String()}
	if err != nil && !errors.Is(err, rpctypes.ErrPermissionDenied) {
		h.Error = err.Error()
		return h
	}
	alarms, err := c.AlarmList(ctx)
	switch {
	case err != nil:
		h.Error = "Unable to fetch the alarm list"
	case len(alarms.Alarms) > 0:
		h.Error = "Active Alarm(s): "
		for _, a := range alarms.Alarms {
			switch a.Alarm {
			case pb.AlarmType_NOSPACE, pb.AlarmType_CORRUPT:
				h.Error += a.Alarm.String() + " "
			default:
				h.Error += "UNKNOWN "
			}
		}
	default:
		h.Health = true
	}
	return h
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
		p, err := g.printer()
		if err != nil {
			return err
		}
		var list []epStatus
		failed, err := g.eachEndpoint(*cluster, "status", func(c *clientv3.Client, ep string) error {
			ctx, cancel := g.envCommandContext()
			defer cancel()
			resp, err := c.Status(ctx, ep)
			if err == nil {
				list = append(list, epStatus{ep, resp})
			}
			return err
		})
		if err != nil {
			return err
		}
		if err := p.endpointStatus(list); err != nil {
			return err
		}
		if failed != nil {
			return withCode(ExitError, errSilent)
		}
		return nil
	})
	return cmd
}

// eachEndpoint calls fn with a client of each target endpoint in turn. An
// endpoint fn fails on is reported on standard error ("Failed to get the
// <what> of endpoint ...") and skipped; the last such error is returned as
// failed. err is an error that stops the command: no endpoints, or no client.
func (g *globals) eachEndpoint(cluster bool, what string, fn func(c *clientv3.Client, ep string) error) (failed, err error) {
	eps, err := g.targetEndpoints(cluster)
	if err != nil {
		return nil, withCode(ExitError, err)
	}
	for _, ep := range eps {
		c, err := g.endpointClient(ep)
		if err != nil {
			return nil, err
		}
		if ferr := fn(c, ep); ferr != nil {
			failed = ferr
			fmt.Fprintf(g.stdio.Err, "Failed to get the %s of endpoint %s (%v)\n", what, ep, ferr)
		}
		c.Close()
	}
	return failed, nil
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
		for _, row := range statusRows(list) {
			p.println(strings.Join(row, ", "))
		}
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
		p, err := g.printer()
		if err != nil {
			return err
		}
		var list []epHashKV
		failed, err := g.eachEndpoint(*cluster, "hash", func(c *clientv3.Client, ep string) error {
			ctx, cancel := g.envCommandContext()
			defer cancel()
			resp, err := c.HashKV(ctx, ep, rev)
			if err == nil {
				list = append(list, epHashKV{ep, resp})
			}
			return err
		})
		if err != nil {
			return err
		}
		if err := p.endpointHashKV(list); err != nil {
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
		for _, row := range rows {
			p.println(strings.Join(row, ", "))
		}
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
