// Package lease is keel's lessor: it keeps the leases granted through Raft,
// decides on the leader when they expire, and records which keys are
// attached to which lease.
//
// State has two halves with different owners:
//
//   - Persistent state (the lease records, their checkpointed remaining TTL
//     and one marker per attached key, all under storage.PrefixLease) is
//     changed only by the applier, inside the apply batch, through Grant,
//     Revoke, Checkpoint, Attach and Detach. These methods read no clock to
//     decide anything that is persisted, so every member applies the same
//     entries to the same state.
//   - Expiry times live only in memory and only on the primary lessor (the
//     one on the Raft leader, see Promote and Demote). The primary hands
//     expired leases and due checkpoints to a Proposer (Run), which proposes
//     LeaseRevoke and LeaseCheckpoint requests through Raft; they take
//     effect when applied, like any other request.
//
// Memory holds one small record per lease; attached keys stay on disk, so
// memory does not grow with the number of keys.
package lease

import (
	"bytes"
	"cmp"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"slices"
	"sync"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"go.uber.org/zap"

	"github.com/keeldb/keel/storage"
)

// MaxTTL is the largest TTL, in seconds, a lease can be granted with (etcd's
// limit).
const MaxTTL = 9_000_000_000

// Errors of lease operations. The applier maps them to etcd's rpctypes.
var (
	ErrNotFound    = errors.New("lease not found")
	ErrExists      = errors.New("lease already exists")
	ErrTTLTooLarge = errors.New("too large lease TTL")
	// ErrNotPrimary is returned by operations only the primary lessor (the
	// one on the leader) performs: Renew and TimeToLive.
	ErrNotPrimary = errors.New("not a primary lessor")
)

// Defaults of Config.
const (
	DefaultCheckpointInterval = 5 * time.Minute
	DefaultRetryInterval      = 3 * time.Second
	DefaultRevokeRate         = 1000
	// MaxCheckpointBatch is how many checkpoints one proposal carries.
	MaxCheckpointBatch = 1000
)

// maxCheckpointRounds bounds how many checkpoint proposals one round of Run
// makes, so that expiries are looked at in between.
const maxCheckpointRounds = 500

// revokeRound is the period over which Run spreads revocations: at most
// RevokeRate/2 leases are handed out per half second.
const revokeRound = 500 * time.Millisecond

// Checkpoint records a lease's remaining TTL so that it survives a leader
// change or a restart. RemainingTTL 0 clears it (the full TTL applies).
type Checkpoint struct {
	ID           int64
	RemainingTTL int64
}

// Proposer proposes the lessor's decisions through Raft. Its methods are
// called without any lessor lock held and may block until the proposals are
// applied or have failed; they must return once ctx is done.
type Proposer interface {
	// Revoke proposes the revocation of the expired leases ids. Failures
	// are the proposer's to log: a lease that is still not revoked after
	// Config.RetryInterval is handed out again.
	Revoke(ctx context.Context, ids []int64)
	// Checkpoint proposes cps as one request and waits until it is applied.
	Checkpoint(ctx context.Context, cps []Checkpoint) error
}

// Config configures a Lessor.
type Config struct {
	// MinTTL is the shortest TTL, in seconds, a lease gets; shorter grants
	// are raised to it. etcd derives it from the election timeout.
	MinTTL int64
	// CheckpointInterval is how often the primary checkpoints the remaining
	// TTL of leases whose TTL is longer than it (default 5 minutes).
	CheckpointInterval time.Duration
	// RetryInterval is how long an expired lease handed to the Proposer
	// waits before it is handed out again if it is still not revoked.
	RetryInterval time.Duration
	// RevokeRate bounds how many expired leases are handed out per second
	// (default 1000).
	RevokeRate int
	// Proposer proposes revocations and checkpoints; nil disables
	// checkpoints (and Run must not be called).
	Proposer Proposer
	// Clock is the time source; nil means the wall clock.
	Clock  Clock
	Logger *zap.Logger
}

// Lessor holds the leases of one member. All methods are safe for concurrent
// use; the persistent ones (those taking a batch) must be called by the
// apply loop only, in log order.
type Lessor struct {
	cfg   Config
	clock Clock
	lg    *zap.Logger

	mu     sync.Mutex
	leases map[int64]*lease
	// primary is set between Promote and Demote. Only the primary tracks
	// expiry times; the others see every lease as never expiring.
	primary bool
	// demotec is closed by the Demote that ends the current primary term.
	demotec chan struct{}
	// promotedc is closed by Promote and replaced by Demote.
	promotedc chan struct{}
	// revokedc is closed and replaced whenever a lease is revoked.
	revokedc    chan struct{}
	expiries    *queue
	checkpoints *queue
	// wake tells Run that something may be due earlier than it waits for.
	wake chan struct{}
}

// lease is the in-memory record of one lease.
type lease struct {
	id  int64
	ttl int64 // granted TTL, seconds
	// remaining is the checkpointed remaining TTL in seconds, 0 if unset.
	remaining int64
	// expiry is when the lease expires; zero (never) unless primary.
	expiry time.Time
	exp    slot // in Lessor.expiries: when to look at it next
	cp     slot // in Lessor.checkpoints: when to checkpoint it
}

// remainingTTL is the TTL a lease gets when its expiry is (re)computed at a
// promotion: the checkpointed remaining TTL if set, else the full TTL.
func (l *lease) remainingTTL() int64 {
	if l.remaining > 0 {
		return l.remaining
	}
	return l.ttl
}

func newLease(id, ttl, remaining int64) *lease {
	return &lease{id: id, ttl: ttl, remaining: remaining, exp: slot{idx: -1}, cp: slot{idx: -1}}
}

// Load reads the leases stored in db and returns a non-primary lessor: no
// lease expires until Promote.
func Load(db pebble.Reader, cfg Config) (*Lessor, error) {
	if cfg.CheckpointInterval <= 0 {
		cfg.CheckpointInterval = DefaultCheckpointInterval
	}
	if cfg.RetryInterval <= 0 {
		cfg.RetryInterval = DefaultRetryInterval
	}
	if cfg.RevokeRate <= 0 {
		cfg.RevokeRate = DefaultRevokeRate
	}
	l := &Lessor{
		cfg:         cfg,
		clock:       cfg.Clock,
		lg:          cfg.Logger,
		leases:      make(map[int64]*lease),
		promotedc:   make(chan struct{}),
		revokedc:    make(chan struct{}),
		expiries:    newQueue(func(l *lease) *slot { return &l.exp }),
		checkpoints: newQueue(func(l *lease) *slot { return &l.cp }),
		wake:        make(chan struct{}, 1),
	}
	if l.clock == nil {
		l.clock = RealClock()
	}
	if l.lg == nil {
		l.lg = zap.NewNop()
	}
	leases, err := readLeases(db, cfg.MinTTL)
	if err != nil {
		return nil, err
	}
	l.leases = leases
	return l, nil
}

// Exists reports whether the lease id is granted (as of the entries applied
// so far, including the current apply batch).
func (l *Lessor) Exists(id int64) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	_, ok := l.leases[id]
	return ok
}

// Grant grants the lease id with ttl seconds, raised to the minimum TTL, and
// returns the TTL granted. It fails with ErrNotFound for id 0,
// ErrTTLTooLarge above MaxTTL and ErrExists for a granted id, as etcd does
// (in that order). Apply loop only.
func (l *Lessor) Grant(b *pebble.Batch, id, ttl int64) (int64, error) {
	if id == 0 {
		return 0, ErrNotFound
	}
	if ttl > MaxTTL {
		return 0, ErrTTLTooLarge
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if _, ok := l.leases[id]; ok {
		return 0, ErrExists
	}
	le := newLease(id, max(ttl, l.cfg.MinTTL), 0)
	if err := putRecord(b, le); err != nil {
		return 0, err
	}
	l.leases[id] = le
	if l.primary {
		now := l.clock.Now()
		l.refresh(le, 0, now)
		l.scheduleCheckpoint(le, now)
		l.kick()
	}
	return le.ttl, nil
}

// Revoke removes the lease id and the markers of its attached keys, and
// returns those keys in key order; the caller deletes them from the key
// space in the same batch. Reads go through b, so keys attached earlier in
// the batch are found. ErrNotFound if id is not granted. Apply loop only.
func (l *Lessor) Revoke(b *pebble.Batch, id int64) ([][]byte, error) {
	l.mu.Lock()
	le, ok := l.leases[id]
	l.mu.Unlock()
	if !ok {
		return nil, ErrNotFound
	}
	// Only the apply loop changes attachments, so they cannot change while
	// the lock is released for the scan.
	keys, err := attachedKeys(b, id)
	if err != nil {
		return nil, err
	}
	for _, k := range keys {
		if err := b.Delete(attachKey(id, k), nil); err != nil {
			return nil, err
		}
	}
	if err := b.Delete(leaseKey(id), nil); err != nil {
		return nil, err
	}
	l.mu.Lock()
	delete(l.leases, id)
	l.expiries.remove(le)
	l.checkpoints.remove(le)
	close(l.revokedc)
	l.revokedc = make(chan struct{})
	l.mu.Unlock()
	return keys, nil
}

// Checkpoint records the remaining TTL of lease id (0 clears it). An
// unknown lease is ignored, as in etcd. Apply loop only.
func (l *Lessor) Checkpoint(b *pebble.Batch, id, remaining int64) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	le, ok := l.leases[id]
	if !ok {
		return nil
	}
	le.remaining = remaining
	if err := putRecord(b, le); err != nil {
		return err
	}
	if l.primary {
		l.scheduleCheckpoint(le, l.clock.Now())
		l.kick()
	}
	return nil
}

// Attach records that key is attached to lease id, which must be granted.
// Apply loop only.
func (l *Lessor) Attach(b *pebble.Batch, id int64, key []byte) error {
	if !l.Exists(id) {
		return fmt.Errorf("attach %q to lease %x: %w", key, id, ErrNotFound)
	}
	return b.Set(attachKey(id, key), nil, nil)
}

// Detach records that key is no longer attached to lease id. A lease that
// is no longer granted has no markers left, so there is nothing to do.
// Apply loop only.
func (l *Lessor) Detach(b *pebble.Batch, id int64, key []byte) error {
	if !l.Exists(id) {
		return nil
	}
	return b.Delete(attachKey(id, key), nil)
}

// Keys returns the keys attached to lease id in r, in key order.
func (l *Lessor) Keys(r pebble.Reader, id int64) ([][]byte, error) {
	return attachedKeys(r, id)
}

// Primary reports whether the lessor is the primary (between Promote and
// Demote).
func (l *Lessor) Primary() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.primary
}

// Promoted returns a channel closed once the lessor is primary.
func (l *Lessor) Promoted() <-chan struct{} {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.promotedc
}

// Promote makes the lessor primary: every lease expires extend after its
// remaining TTL from now (the checkpointed one if set, else the full TTL),
// spread so that no more than 3/4 of RevokeRate leases expire in any
// second. extend covers the time a new leader cannot know about keepalives
// sent to the old one (etcd extends by the election timeout).
func (l *Lessor) Promote(extend time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.clock.Now()
	if l.primary {
		close(l.demotec)
	} else {
		close(l.promotedc)
	}
	l.primary = true
	l.demotec = make(chan struct{})
	for _, le := range l.leases {
		l.refresh(le, extend, now)
		l.scheduleCheckpoint(le, now)
	}
	if len(l.leases) >= l.cfg.RevokeRate {
		l.spreadExpiries()
	}
	l.kick()
}

// spreadExpiries delays expiries that follow each other closer than the
// revoke rate allows, so that a promotion (when every lease gets its expiry
// at once) does not pile up revocations. Expiries only move later.
func (l *Lessor) spreadExpiries() {
	target := max(3*l.cfg.RevokeRate/4, 1)
	gap := time.Second / time.Duration(target)
	ls := make([]*lease, 0, len(l.leases))
	for _, le := range l.leases {
		ls = append(ls, le)
	}
	slices.SortFunc(ls, func(a, b *lease) int { return a.expiry.Compare(b.expiry) })
	for i := 1; i < len(ls); i++ {
		if earliest := ls[i-1].expiry.Add(gap); ls[i].expiry.Before(earliest) {
			ls[i].expiry = earliest
			l.expiries.schedule(ls[i], earliest)
		}
	}
}

// Demote makes the lessor non-primary: leases stop expiring and checkpoints
// stop, until the next Promote.
func (l *Lessor) Demote() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.primary {
		return
	}
	for _, le := range l.leases {
		le.expiry = time.Time{}
	}
	l.expiries.reset()
	l.checkpoints.reset()
	l.primary = false
	close(l.demotec)
	l.demotec = nil
	l.promotedc = make(chan struct{})
}

// Renew extends lease id to its full TTL from now and returns the TTL. Only
// the primary renews (ErrNotPrimary). A lease past its expiry is being
// revoked: Renew waits for that and returns ErrNotFound, or ErrNotPrimary if
// the lessor is demoted first. A lease with a checkpointed remaining TTL is
// first checkpointed back to "unset" through the Proposer, as etcd does, so
// a later promotion does not cut the renewed lease short.
func (l *Lessor) Renew(ctx context.Context, id int64) (int64, error) {
	l.mu.Lock()
	if !l.primary {
		l.mu.Unlock()
		return -1, ErrNotPrimary
	}
	le, ok := l.leases[id]
	if !ok {
		l.mu.Unlock()
		return -1, ErrNotFound
	}
	demotec := l.demotec
	clearRemaining := l.cfg.Proposer != nil && le.remaining > 0
	for !l.clock.Now().Before(le.expiry) {
		revokedc := l.revokedc
		l.mu.Unlock()
		select {
		case <-revokedc:
		case <-demotec:
			return -1, ErrNotPrimary
		case <-ctx.Done():
			return -1, ctx.Err()
		}
		l.mu.Lock()
		if l.leases[id] != le {
			l.mu.Unlock()
			return -1, ErrNotFound
		}
	}
	l.mu.Unlock()

	if clearRemaining {
		if err := l.cfg.Proposer.Checkpoint(ctx, []Checkpoint{{ID: id}}); err != nil {
			return -1, err
		}
	}

	l.mu.Lock()
	defer l.mu.Unlock()
	le, ok = l.leases[id]
	if !ok {
		return -1, ErrNotFound
	}
	if !l.primary || l.demotec != demotec {
		return -1, ErrNotPrimary
	}
	le.expiry = l.clock.Now().Add(time.Duration(le.ttl) * time.Second)
	l.expiries.schedule(le, le.expiry)
	return le.ttl, nil
}

// TimeToLive returns the remaining seconds (truncated, as etcd does) and the
// granted TTL of lease id. ErrNotFound if it is not granted, else
// ErrNotPrimary if the lessor does not track expiries.
func (l *Lessor) TimeToLive(id int64) (remaining, granted int64, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	le, ok := l.leases[id]
	if !ok {
		return 0, 0, ErrNotFound
	}
	if !l.primary {
		return 0, 0, ErrNotPrimary
	}
	return int64(le.expiry.Sub(l.clock.Now()).Seconds()), le.ttl, nil
}

// Leases returns the IDs of all granted leases, the soonest to expire first
// (ties, and every lease on a non-primary, by ID).
func (l *Lessor) Leases() []int64 {
	type entry struct {
		id  int64
		exp time.Time
	}
	l.mu.Lock()
	es := make([]entry, 0, len(l.leases))
	for _, le := range l.leases {
		es = append(es, entry{le.id, le.expiry})
	}
	l.mu.Unlock()
	slices.SortFunc(es, func(a, b entry) int {
		if a.exp.IsZero() != b.exp.IsZero() {
			if a.exp.IsZero() {
				return 1
			}
			return -1
		}
		if c := a.exp.Compare(b.exp); c != 0 {
			return c
		}
		return cmp.Compare(a.id, b.id)
	})
	ids := make([]int64, len(es))
	for i, e := range es {
		ids[i] = e.id
	}
	return ids
}

// refresh sets le to expire extend plus its remaining TTL after now. l.mu held.
func (l *Lessor) refresh(le *lease, extend time.Duration, now time.Time) {
	le.expiry = now.Add(extend + time.Duration(le.remainingTTL())*time.Second)
	l.expiries.schedule(le, le.expiry)
}

// scheduleCheckpoint queues le for a checkpoint one interval from now if
// its remaining TTL is longer than the interval. l.mu held.
func (l *Lessor) scheduleCheckpoint(le *lease, now time.Time) {
	if l.cfg.Proposer == nil {
		return
	}
	if le.remainingTTL() > int64(l.cfg.CheckpointInterval.Seconds()) {
		l.checkpoints.schedule(le, now.Add(l.cfg.CheckpointInterval))
	}
}

// kick wakes Run. l.mu held (or not; it never blocks).
func (l *Lessor) kick() {
	select {
	case l.wake <- struct{}{}:
	default:
	}
}

// Run hands expired leases and due checkpoints to the Proposer until ctx is
// done. It does nothing while the lessor is not primary. Expired leases go
// out at most RevokeRate/2 per half second; one that is still granted
// RetryInterval after it went out goes out again. Run must be called at most
// once at a time.
func (l *Lessor) Run(ctx context.Context) {
	limit := max(l.cfg.RevokeRate/2, 1)
	for {
		ids := l.takeExpired(limit)
		if len(ids) > 0 {
			l.cfg.Proposer.Revoke(ctx, ids)
		}
		l.proposeCheckpoints(ctx)
		if ctx.Err() != nil {
			return
		}
		var next time.Time
		if len(ids) == limit {
			// A full round: wait out the round before the next one, so
			// the revoke rate holds however many leases are due.
			next = l.clock.Now().Add(revokeRound)
		} else {
			next = l.nextDue()
		}
		if !l.wait(ctx, next, len(ids) < limit) {
			return
		}
	}
}

// wait waits until next (forever if zero), or a kick if kickable. It
// returns false once ctx is done.
func (l *Lessor) wait(ctx context.Context, next time.Time, kickable bool) bool {
	var (
		tc   <-chan time.Time
		wake <-chan struct{}
	)
	if !next.IsZero() {
		t := l.clock.TimerAt(next)
		defer t.Stop()
		tc = t.C()
	}
	if kickable {
		wake = l.wake
	}
	select {
	case <-tc:
	case <-wake:
	case <-ctx.Done():
		return false
	}
	return true
}

// takeExpired returns up to limit leases past their expiry and schedules
// each to be looked at again after RetryInterval.
func (l *Lessor) takeExpired(limit int) []int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.primary {
		return nil
	}
	now := l.clock.Now()
	var ids []int64
	for len(ids) < limit {
		le := l.expiries.peek()
		if le == nil || le.exp.at.After(now) {
			break
		}
		if now.Before(le.expiry) {
			l.expiries.schedule(le, le.expiry)
			continue
		}
		ids = append(ids, le.id)
		l.expiries.schedule(le, now.Add(l.cfg.RetryInterval))
	}
	return ids
}

// proposeCheckpoints proposes every due checkpoint, in batches.
func (l *Lessor) proposeCheckpoints(ctx context.Context) {
	for range maxCheckpointRounds {
		cps := l.dueCheckpoints(MaxCheckpointBatch)
		if len(cps) == 0 {
			return
		}
		if err := l.cfg.Proposer.Checkpoint(ctx, cps); err != nil {
			l.lg.Warn("failed to checkpoint leases", zap.Int("count", len(cps)), zap.Error(err))
			return
		}
		if len(cps) < MaxCheckpointBatch {
			return
		}
	}
}

// dueCheckpoints takes up to limit due checkpoints off the queue: the
// remaining TTL, rounded up to whole seconds, of each lease that has not
// expired and has less than its TTL left. The applied checkpoint schedules
// the next one.
func (l *Lessor) dueCheckpoints(limit int) []Checkpoint {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.primary || l.cfg.Proposer == nil {
		return nil
	}
	now := l.clock.Now()
	var cps []Checkpoint
	for len(cps) < limit {
		le := l.checkpoints.peek()
		if le == nil || le.cp.at.After(now) {
			break
		}
		l.checkpoints.remove(le)
		if !now.Before(le.expiry) {
			continue
		}
		remaining := int64(math.Ceil(le.expiry.Sub(now).Seconds()))
		if remaining >= le.ttl {
			continue
		}
		cps = append(cps, Checkpoint{ID: le.id, RemainingTTL: remaining})
	}
	return cps
}

// nextDue returns when the next expiry or checkpoint is due, zero if none.
func (l *Lessor) nextDue() time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	var next time.Time
	if le := l.expiries.peek(); le != nil {
		next = le.exp.at
	}
	if le := l.checkpoints.peek(); le != nil && (next.IsZero() || le.cp.at.Before(next)) {
		next = le.cp.at
	}
	return next
}

// Key layout under storage.PrefixLease:
//
//	L l <id:8>        lease record: TTL (8 bytes) and remaining TTL (8 bytes)
//	L a <id:8> <key>  marker: key is attached to lease id (empty value)
//
// IDs are big-endian, so a lease's markers are contiguous and in key order.
const (
	kindLease  byte = 'l'
	kindAttach byte = 'a'
)

func leaseKey(id int64) []byte {
	return binary.BigEndian.AppendUint64([]byte{storage.PrefixLease, kindLease}, uint64(id))
}

func decodeLeaseKey(k []byte) (int64, error) {
	if len(k) != 10 {
		return 0, fmt.Errorf("malformed lease key %x", k)
	}
	return int64(binary.BigEndian.Uint64(k[2:])), nil
}

func attachPrefix(id int64) []byte {
	return binary.BigEndian.AppendUint64([]byte{storage.PrefixLease, kindAttach}, uint64(id))
}

func attachKey(id int64, key []byte) []byte {
	return append(attachPrefix(id), key...)
}

func putRecord(b *pebble.Batch, le *lease) error {
	v := binary.BigEndian.AppendUint64(nil, uint64(le.ttl))
	v = binary.BigEndian.AppendUint64(v, uint64(le.remaining))
	return b.Set(leaseKey(le.id), v, nil)
}

func decodeRecord(v []byte) (ttl, remaining int64, err error) {
	if len(v) != 16 {
		return 0, 0, fmt.Errorf("malformed lease record of %d bytes", len(v))
	}
	return int64(binary.BigEndian.Uint64(v)), int64(binary.BigEndian.Uint64(v[8:])), nil
}

// attachedKeys reads the keys attached to lease id from r, in key order.
func attachedKeys(r pebble.Reader, id int64) ([][]byte, error) {
	prefix := attachPrefix(id)
	upper := binary.BigEndian.AppendUint64([]byte{storage.PrefixLease, kindAttach}, uint64(id)+1)
	if uint64(id) == math.MaxUint64 {
		upper = []byte{storage.PrefixLease, kindAttach + 1}
	}
	it, err := r.NewIter(&pebble.IterOptions{LowerBound: prefix, UpperBound: upper})
	if err != nil {
		return nil, err
	}
	defer it.Close()
	var keys [][]byte
	for ok := it.First(); ok; ok = it.Next() {
		k := it.Key()
		if !bytes.HasPrefix(k, prefix) {
			return nil, fmt.Errorf("lease marker %x outside lease %x", k, id)
		}
		keys = append(keys, bytes.Clone(k[len(prefix):]))
	}
	if err := it.Error(); err != nil {
		return nil, err
	}
	return keys, nil
}
