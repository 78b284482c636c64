package crashtest

import (
	"context"
	"errors"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// dialTimeout bounds how long a client waits for its first connection.
const dialTimeout = 5 * time.Second

// dialClient connects an official client to the member serving at endpoint
// (e.g. http://127.0.0.1:41234). The caller closes it.
func dialClient(t *testing.T, endpoint string) *clientv3.Client {
	t.Helper()
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:   []string{endpoint},
		DialTimeout: dialTimeout,
		Logger:      zap.NewNop(),
	})
	if err != nil {
		t.Fatalf("client for %s: %v", endpoint, err)
	}
	return cli
}

// clientStore is the member behind the official client.
type clientStore struct{ c *clientv3.Client }

func (s clientStore) Put(ctx context.Context, key, value string) (int64, error) {
	r, err := s.c.Put(ctx, key, value)
	if err != nil {
		return 0, err
	}
	return r.Header.Revision, nil
}

func (s clientStore) Delete(ctx context.Context, key, end string) (int64, int64, error) {
	var opts []clientv3.OpOption
	if end != "" {
		opts = append(opts, clientv3.WithRange(end))
	}
	r, err := s.c.Delete(ctx, key, opts...)
	if err != nil {
		return 0, 0, err
	}
	return r.Header.Revision, r.Deleted, nil
}

func (s clientStore) Txn(ctx context.Context, o *op) (int64, bool, error) {
	var then, els []clientv3.Op
	for _, k := range o.thenPuts {
		then = append(then, clientv3.OpPut(k, o.value))
	}
	for _, k := range o.thenDels {
		then = append(then, clientv3.OpDelete(k))
	}
	for _, k := range o.elsePuts {
		els = append(els, clientv3.OpPut(k, o.value))
	}
	r, err := s.c.Txn(ctx).If(clientv3.Compare(clientv3.Version(o.cmpKey), ">", 0)).Then(then...).Else(els...).Commit()
	if err != nil {
		return 0, false, err
	}
	return r.Header.Revision, r.Succeeded, nil
}

func (s clientStore) Compact(ctx context.Context, rev int64, physical bool) error {
	var opts []clientv3.CompactOption
	if physical {
		opts = append(opts, clientv3.WithCompactPhysical())
	}
	_, err := s.c.Compact(ctx, rev, opts...)
	return err
}

func (s clientStore) Range(ctx context.Context, key, end string, rev, minMod int64) ([]kv, int64, error) {
	opts := []clientv3.OpOption{clientv3.WithRev(rev)}
	if end != "" {
		opts = append(opts, clientv3.WithRange(end))
	}
	if minMod > 0 {
		opts = append(opts, clientv3.WithMinModRev(minMod))
	}
	r, err := s.c.Get(ctx, key, opts...)
	if err != nil {
		return nil, 0, err
	}
	if r.More {
		return nil, 0, errors.New("range response has more keys without a limit")
	}
	out := make([]kv, len(r.Kvs))
	for i, k := range r.Kvs {
		out[i] = kv{key: string(k.Key), value: string(k.Value), create: k.CreateRevision, mod: k.ModRevision, version: k.Version}
	}
	return out, r.Header.Revision, nil
}

func (s clientStore) IsCompacted(err error) bool { return errors.Is(err, rpctypes.ErrCompacted) }
