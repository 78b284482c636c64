package discovery

import (
	"cmp"
	"context"
	"errors"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/keeldb/keel/config"
)

// The errors of v3 discovery, with etcd's messages.
var (
	ErrInvalidURL     = errors.New("discovery: invalid peer URL")
	ErrBadSizeKey     = errors.New("discovery: size key is bad")
	ErrSizeNotFound   = errors.New("discovery: size key not found")
	ErrFullCluster    = errors.New("discovery: cluster is full")
	ErrTooManyRetries = errors.New("discovery: too many retries")
)

// registryPrefix is where the discovery service keeps every cluster.
const registryPrefix = "/_etcd/registry"

// SizeKey is the key holding the size of the cluster of token, a positive
// decimal number that the operator puts before the members start.
func SizeKey(token string) string { return path.Join(registryPrefix, token, "_config/size") }

// MembersPrefix is the prefix under which the members of token register.
func MembersPrefix(token string) string { return path.Join(registryPrefix, token, "members") }

// MemberKey is the key member id (hexadecimal, as etcd prints IDs)
// registers under; its value is the member's "name=peerURL,..." entries.
func MemberKey(token string, id uint64) string {
	return path.Join(MembersPrefix(token), strconv.FormatUint(id, 16))
}

// Retries after a failed request back off exponentially from 2s up to
// 2^maxExponentialRetries seconds, then keep that interval; etcd retries
// practically forever (maxRetries).
const (
	maxRetries            = uint(1<<32 - 1)
	maxExponentialRetries = uint(8)
)

// JoinCluster registers member id, whose initial-cluster entries are self
// ("name=url[,name=url...]"), with the v3 discovery service that cfg
// describes, waits until the cluster of cfg.Token has as many members as
// its size key says, and returns the cluster in --initial-cluster form:
// the first size members by registration order.
//
// It fails with ErrSizeNotFound or ErrBadSizeKey when the size key is
// missing or not a positive number, and with ErrFullCluster when size other
// members registered before this one. Requests that fail otherwise are
// retried with a back-off, as in etcd; it returns early only when ctx ends.
func JoinCluster(ctx context.Context, lg *zap.Logger, cfg config.Discovery, id uint64, self string) (cs string, err error) {
	d, err := newDiscovery(ctx, lg, cfg, id)
	if err != nil {
		return "", err
	}
	defer d.c.Close()
	defer func() {
		if err != nil {
			d.lg.Error("discovery failed to join cluster", zap.String("cluster", cs), zap.Error(err))
		} else {
			d.lg.Info("discovery joined cluster successfully", zap.String("cluster", cs))
		}
	}()
	return d.join(self)
}

type discovery struct {
	ctx   context.Context
	lg    *zap.Logger
	cfg   config.Discovery
	token string
	id    uint64
	c     *clientv3.Client
	// retries counts the failures in a row; sleep waits between them
	// (a variable for tests).
	retries uint
	sleep   func(context.Context, time.Duration) error
}

func newDiscovery(ctx context.Context, lg *zap.Logger, cfg config.Discovery, id uint64) (*discovery, error) {
	if lg == nil {
		lg = zap.NewNop()
	}
	lg = lg.With(zap.String("discovery-token", cfg.Token), zap.String("discovery-endpoints", strings.Join(cfg.Endpoints, ",")))
	ccfg, err := clientv3.NewClientConfig(&clientv3.ConfigSpec{
		Endpoints:        cfg.Endpoints,
		RequestTimeout:   cfg.RequestTimeout,
		DialTimeout:      cfg.DialTimeout,
		KeepAliveTime:    cfg.KeepAliveTime,
		KeepAliveTimeout: cfg.KeepAliveTimeout,
		Secure: &clientv3.SecureConfig{
			Cert:               cfg.CertFile,
			Key:                cfg.KeyFile,
			Cacert:             cfg.CAFile,
			InsecureTransport:  cfg.InsecureTransport,
			InsecureSkipVerify: cfg.InsecureSkipVerify,
		},
		Auth: &clientv3.AuthConfig{Username: cfg.User, Password: cfg.Password},
	}, lg)
	if err != nil {
		return nil, err
	}
	ccfg.Context = ctx
	ccfg.Logger = lg.Named("client")
	c, err := clientv3.New(*ccfg)
	if err != nil {
		return nil, err
	}
	return &discovery{ctx: ctx, lg: lg, cfg: cfg, token: cfg.Token, id: id, c: c, sleep: sleepCtx}, nil
}

func (d *discovery) join(self string) (string, error) {
	if _, _, _, err := d.checkCluster(); err != nil {
		return "", err
	}
	if err := d.register(self); err != nil {
		return "", err
	}
	cl, size, rev, err := d.checkCluster()
	if err != nil {
		return "", err
	}
	for len(cl.members) < size {
		if err := d.waitPeers(cl, size, rev); err != nil {
			return "", err
		}
	}
	return cl.initialCluster(size)
}

// checkCluster reads the size and the registered members; with
// ErrFullCluster when size members registered before this one (by
// creation revision) and this one is not among them.
func (d *discovery) checkCluster() (*registered, int, int64, error) {
	size, err := d.size()
	if err != nil {
		if errors.Is(err, ErrSizeNotFound) || errors.Is(err, ErrBadSizeKey) {
			return nil, 0, 0, err
		}
		return d.retryCheck()
	}
	cl, rev, err := d.members()
	if err != nil {
		return d.retryCheck()
	}
	d.retries = 0
	selfKey := MemberKey(d.token, d.id)
	for i, m := range cl.members {
		if m.key == selfKey {
			break
		}
		if i >= size-1 {
			return cl, size, rev, ErrFullCluster
		}
	}
	return cl, size, rev, nil
}

func (d *discovery) retryCheck() (*registered, int, int64, error) {
	if d.retries >= maxRetries {
		return nil, 0, 0, ErrTooManyRetries
	}
	if err := d.backoff("cluster status check"); err != nil {
		return nil, 0, 0, err
	}
	return d.checkCluster()
}

func (d *discovery) size() (int, error) {
	key := SizeKey(d.token)
	ctx, cancel := context.WithTimeout(d.ctx, d.cfg.RequestTimeout)
	defer cancel()
	resp, err := d.c.Get(ctx, key)
	if err != nil {
		d.lg.Warn("failed to get cluster size from discovery service", zap.String("clusterSizeKey", key), zap.Error(err))
		return 0, err
	}
	if len(resp.Kvs) == 0 {
		return 0, ErrSizeNotFound
	}
	size, err := strconv.ParseInt(string(resp.Kvs[0].Value), 10, 0)
	if err != nil || size <= 0 {
		return 0, ErrBadSizeKey
	}
	return int(size), nil
}

func (d *discovery) members() (*registered, int64, error) {
	prefix := MembersPrefix(d.token)
	ctx, cancel := context.WithTimeout(d.ctx, d.cfg.RequestTimeout)
	defer cancel()
	resp, err := d.c.Get(ctx, prefix, clientv3.WithPrefix())
	if err != nil {
		d.lg.Warn("failed to get cluster members from discovery service", zap.String("membersKeyPrefix", prefix), zap.Error(err))
		return nil, 0, err
	}
	cl := &registered{token: d.token}
	for _, kv := range resp.Kvs {
		d.add(cl, kv.Key, kv.Value, kv.CreateRevision)
	}
	return cl, resp.Header.Revision, nil
}

// add records one registration, logging it or why it was skipped.
func (d *discovery) add(cl *registered, key, value []byte, createRev int64) {
	k, v := strings.TrimSpace(string(key)), strings.TrimSpace(string(value))
	if err := cl.add(k, v, createRev); err != nil {
		d.lg.Warn(err.Error(), zap.String("memberKey", k), zap.String("memberInfo", v))
		return
	}
	d.lg.Info("found peer from discovery service", zap.String("memberKey", k), zap.String("memberInfo", v))
}

func (d *discovery) register(self string) error {
	key := MemberKey(d.token, d.id)
	ctx, cancel := context.WithTimeout(d.ctx, d.cfg.RequestTimeout)
	_, err := d.c.Put(ctx, key, self)
	cancel()
	if err != nil {
		d.lg.Warn("failed to register members itself to the discovery service", zap.String("memberKey", key), zap.Error(err))
		if d.retries >= maxRetries {
			return ErrTooManyRetries
		}
		if err := d.backoff("register member itself"); err != nil {
			return err
		}
		return d.register(self)
	}
	d.retries = 0
	d.lg.Info("register member itself successfully", zap.String("memberKey", key), zap.String("memberInfo", self))
	return nil
}

// waitPeers watches the registrations after rev until size members are
// known or the watch ends.
func (d *discovery) waitPeers(cl *registered, size int, rev int64) error {
	ctx, cancel := context.WithCancel(d.ctx)
	defer cancel()
	w := d.c.Watch(ctx, MembersPrefix(d.token), clientv3.WithPrefix(), clientv3.WithRev(rev+1))
	d.lg.Info("waiting for peers from discovery service", zap.Int("clusterSize", size), zap.Int("found-peers", len(cl.members)))
	for wresp := range w {
		for _, ev := range wresp.Events {
			d.add(cl, ev.Kv.Key, ev.Kv.Value, ev.Kv.CreateRevision)
		}
		if len(cl.members) >= size {
			break
		}
	}
	if err := d.ctx.Err(); err != nil {
		return err
	}
	d.lg.Info("found all needed peers from discovery service", zap.Int("clusterSize", size), zap.Int("found-peers", len(cl.members)))
	return nil
}

// backoff counts a failure and waits before the next attempt.
func (d *discovery) backoff(step string) error {
	d.retries++
	n := min(d.retries, maxExponentialRetries)
	wait := time.Duration(1<<n) * time.Second
	d.lg.Warn("retry connecting to discovery service", zap.String("reason", step), zap.Duration("backoff", wait))
	return d.sleep(d.ctx, wait)
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// registered is the members registered for a token, in registration
// (creation revision) order.
type registered struct {
	token   string
	members []registration
}

type registration struct {
	key       string // MemberKey
	entries   string // "name=url,..."
	createRev int64
}

func (cl *registered) add(key, entries string, createRev int64) error {
	if !strings.HasPrefix(key, MembersPrefix(cl.token)) {
		return errors.New("invalid peer registry key")
	}
	if !strings.ContainsRune(entries, '=') {
		return errors.New("invalid peer info returned from discovery service")
	}
	if slices.ContainsFunc(cl.members, func(r registration) bool { return r.key == key }) {
		return errors.New("found duplicate peer from discovery service")
	}
	cl.members = append(cl.members, registration{key: key, entries: entries, createRev: createRev})
	// Members registering at once may outnumber the size: the first ones
	// by creation revision make the cluster.
	slices.SortStableFunc(cl.members, func(a, b registration) int { return cmp.Compare(a.createRev, b.createRev) })
	return nil
}

// initialCluster is the entries of the first size members, checked as
// --initial-cluster would be.
func (cl *registered) initialCluster(size int) (string, error) {
	var parts []string
	for _, m := range cl.members {
		parts = append(parts, m.entries)
	}
	parts = parts[:min(len(parts), size)]
	s := strings.Join(parts, ",")
	if err := checkEntries(s); err != nil {
		return s, ErrInvalidURL
	}
	return s, nil
}

// checkEntries checks "name=url,..." as --initial-cluster is checked.
func checkEntries(s string) error {
	_, err := (&config.Config{InitialCluster: s}).InitialClusterMap()
	return err
}
