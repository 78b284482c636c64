package faulttest

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"strings"
	"time"

	"go.etcd.io/etcd/api/v3/etcdserverpb"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// nemesis injects one fault, holds it, and heals it before returning. It
// returns what it did, for the run's description.
type nemesis struct {
	name string
	run  func(ctx context.Context, c *cluster, rnd *rand.Rand) (string, error)
}

var nemeses = []nemesis{
	{"kill-random", killRandom},
	{"kill-leader", killLeader},
	{"isolate-leader", isolateLeader},
	{"split", splitMinority},
	{"delay", delayAll},
	{"replace-member", replaceMember},
	{"kill-all", killAll},
}

// holdFor draws a fault's duration.
func holdFor(rnd *rand.Rand, min, max time.Duration) time.Duration {
	return min + time.Duration(rnd.Int64N(int64(max-min)+1))
}

func (c *cluster) running() []*member {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []*member
	for _, m := range c.member {
		if m.proc != nil && !m.proc.exited() {
			out = append(out, m)
		}
	}
	return out
}

func killAndRestart(ctx context.Context, c *cluster, m *member, hold time.Duration) {
	c.kill(m)
	pauseCtx(ctx, hold)
	c.restart(m)
}

func killRandom(ctx context.Context, c *cluster, rnd *rand.Rand) (string, error) {
	m := c.member[rnd.IntN(len(c.member))]
	hold := holdFor(rnd, 300*time.Millisecond, 2*time.Second)
	killAndRestart(ctx, c, m, hold)
	return fmt.Sprintf("kill -9 %s, restart after %v", m.name, hold.Round(time.Millisecond)), nil
}

func killLeader(ctx context.Context, c *cluster, rnd *rand.Rand) (string, error) {
	hold := holdFor(rnd, 300*time.Millisecond, 2*time.Second)
	l, err := c.leader(ctx)
	if err != nil {
		return "kill -9 leader", err
	}
	killAndRestart(ctx, c, l, hold)
	return fmt.Sprintf("kill -9 leader %s, restart after %v", l.name, hold.Round(time.Millisecond)), nil
}

// killAll crashes the whole cluster at once and restarts every member: no
// acknowledged write may be lost.
func killAll(ctx context.Context, c *cluster, rnd *rand.Rand) (string, error) {
	hold := holdFor(rnd, 100*time.Millisecond, time.Second)
	for _, m := range c.member {
		c.kill(m)
	}
	pauseCtx(ctx, hold)
	for _, m := range c.member {
		c.restart(m)
	}
	return fmt.Sprintf("kill -9 every member, restart after %v", hold.Round(time.Millisecond)), nil
}

// cut separates group from the other members: by the proxies' drop rules
// when the target's peer traffic names its pairs, else by stopping the
// group's processes (SIGSTOP). It returns the heal.
func (c *cluster) cut(group []*member) func() {
	if c.tgt.grpcPeers {
		in := map[*member]bool{}
		for _, m := range group {
			in[m] = true
		}
		var a, b []uint64
		for _, m := range c.member {
			if in[m] {
				a = append(a, m.id)
			} else {
				b = append(b, m.id)
			}
		}
		c.net.Partition(a, b)
		return c.net.Heal
	}
	for _, m := range group {
		c.pause(m, true)
	}
	return func() {
		for _, m := range group {
			c.pause(m, false)
		}
	}
}

func names(ms []*member) string {
	var s []string
	for _, m := range ms {
		s = append(s, m.name)
	}
	return strings.Join(s, ",")
}

func isolateLeader(ctx context.Context, c *cluster, rnd *rand.Rand) (string, error) {
	hold := holdFor(rnd, 1500*time.Millisecond, 3*time.Second)
	l, err := c.leader(ctx)
	if err != nil {
		return "isolate leader", err
	}
	heal := c.cut([]*member{l})
	pauseCtx(ctx, hold)
	heal()
	return fmt.Sprintf("isolate leader %s for %v", l.name, hold.Round(time.Millisecond)), nil
}

func splitMinority(ctx context.Context, c *cluster, rnd *rand.Rand) (string, error) {
	hold := holdFor(rnd, 1500*time.Millisecond, 3*time.Second)
	perm := rnd.Perm(len(c.member))
	var minority []*member
	for _, i := range perm[:(len(c.member)-1)/2] {
		minority = append(minority, c.member[i])
	}
	heal := c.cut(minority)
	pauseCtx(ctx, hold)
	heal()
	return fmt.Sprintf("split off minority {%s} for %v", names(minority), hold.Round(time.Millisecond)), nil
}

func delayAll(ctx context.Context, c *cluster, rnd *rand.Rand) (string, error) {
	hold := holdFor(rnd, 1500*time.Millisecond, 3*time.Second)
	d := holdFor(rnd, 50*time.Millisecond, 150*time.Millisecond)
	c.net.DelayAll(d, d/4)
	pauseCtx(ctx, hold)
	c.net.Heal()
	return fmt.Sprintf("delay peer traffic %v±%v for %v", d.Round(time.Millisecond), (d / 4).Round(time.Millisecond), hold.Round(time.Millisecond)), nil
}

// Bounds of a membership change.
const (
	memberOpAttempts = 50
	promoteTimeout   = 20 * time.Second
)

// replaceMember removes a follower, wipes its data dir and adds it back
// (as a voter, or as a learner then promoted) under a new ID.
func replaceMember(ctx context.Context, c *cluster, rnd *rand.Rand) (string, error) {
	l, err := c.leader(ctx)
	if err != nil {
		return "replace member", err
	}
	var followers []*member
	for _, m := range c.member {
		if m != l {
			followers = append(followers, m)
		}
	}
	f := followers[rnd.IntN(len(followers))]
	learner := rnd.IntN(2) == 0
	desc := fmt.Sprintf("remove %s, wipe it, add it back as a voter", f.name)
	if learner {
		desc = fmt.Sprintf("remove %s, wipe it, add it back as a learner and promote it", f.name)
	}
	admin, err := c.client(l)
	if err != nil {
		return desc, err
	}
	defer admin.Close()
	oldID := c.ids()[f.idx]

	c.mu.Lock()
	if f.proc != nil {
		f.proc.expected = true // a removed member may stop itself
	}
	c.mu.Unlock()
	if err := retry(ctx, func(ctx context.Context) error {
		_, err := admin.MemberRemove(ctx, oldID)
		if err != nil && strings.Contains(err.Error(), "member not found") {
			return nil // an earlier attempt took effect
		}
		return err
	}); err != nil {
		return desc, fmt.Errorf("remove %s (%x): %w", f.name, oldID, err)
	}
	c.kill(f)
	if err := os.RemoveAll(f.dataDir); err != nil {
		return desc, err
	}

	var newID uint64
	var members []*etcdserverpb.Member
	if err := retry(ctx, func(ctx context.Context) error {
		var resp *clientv3.MemberAddResponse
		var err error
		if learner {
			resp, err = admin.MemberAddAsLearner(ctx, []string{f.peerURL()})
		} else {
			resp, err = admin.MemberAdd(ctx, []string{f.peerURL()})
		}
		if err == nil {
			newID, members = resp.Member.ID, resp.Members
			return nil
		}
		if !strings.Contains(err.Error(), "already exists") {
			return err
		}
		// An earlier attempt took effect: find it in the member list.
		list, lerr := admin.MemberList(ctx)
		if lerr != nil {
			return lerr
		}
		for _, pm := range list.Members {
			for _, u := range pm.PeerURLs {
				if u == f.peerURL() {
					newID, members = pm.ID, list.Members
					return nil
				}
			}
		}
		return err
	}); err != nil {
		return desc, fmt.Errorf("add %s back: %w", f.name, err)
	}
	var initial []string
	for _, pm := range members {
		name := pm.Name
		if pm.ID == newID {
			name = f.name
		}
		for _, u := range pm.PeerURLs {
			initial = append(initial, name+"="+u)
		}
	}
	c.setIDs(members)
	c.start(f, "existing", strings.Join(initial, ","))
	if !learner {
		return desc + fmt.Sprintf(" (%x -> %x)", oldID, newID), nil
	}
	pctx, cancel := context.WithTimeout(ctx, promoteTimeout)
	defer cancel()
	var lastErr error
	for attempt := 0; attempt < 200; attempt++ {
		cctx, ccancel := context.WithTimeout(pctx, rpcTimeout)
		_, lastErr = admin.MemberPromote(cctx, newID)
		ccancel()
		if lastErr == nil {
			return desc + fmt.Sprintf(" (%x -> %x)", oldID, newID), nil
		}
		if !pauseCtx(pctx, 200*time.Millisecond) {
			break
		}
	}
	return desc, fmt.Errorf("promote %s (%x) within %v: %w", f.name, newID, promoteTimeout, lastErr)
}

// retry calls f with a per-call timeout until it succeeds, a bounded number
// of times.
func retry(ctx context.Context, f func(context.Context) error) error {
	var err error
	for attempt := 0; attempt < memberOpAttempts; attempt++ {
		cctx, cancel := context.WithTimeout(ctx, rpcTimeout)
		err = f(cctx)
		cancel()
		if err == nil {
			return nil
		}
		if !pauseCtx(ctx, 200*time.Millisecond) {
			break
		}
	}
	return err
}
