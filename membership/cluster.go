// Package membership is the cluster's membership as the apply loop sees it:
// the members with their names, peer and client URLs and learner flag, the
// IDs of removed members, and the cluster ID.
//
// Member and cluster IDs are computed exactly as etcd computes them, so the
// same --initial-cluster and --initial-cluster-token give the same IDs as
// etcd (see MemberID and ClusterID).
package membership

import (
	"crypto/sha1"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"go.etcd.io/raft/v3/raftpb"

	"github.com/keeldb/keel/config"
	"github.com/keeldb/keel/storage"
)

// Errors of conf changes that fail validation. Every member validates a
// committed conf change against the same membership, so every member finds
// the same error; the change is then applied to Raft as a no-op.
var (
	ErrIDRemoved        = errors.New("membership: ID removed")
	ErrIDExists         = errors.New("membership: ID exists")
	ErrIDNotFound       = errors.New("membership: ID not found")
	ErrPeerURLExists    = errors.New("membership: peerURL exists")
	ErrMemberNotLearner = errors.New("membership: can only promote a learner member")
	ErrTooManyLearners  = errors.New("membership: too many learner members in cluster")
	// ErrBadConfChange is a conf change keel never proposes: an unknown
	// type, or a context that does not decode or names another member.
	ErrBadConfChange = errors.New("membership: malformed conf change")
)

// MaxLearners is how many learners a cluster may have at once (etcd's
// default for --max-learners).
const MaxLearners = 1

// Member is one member of the cluster. Its JSON encoding is the one etcd
// uses in conf change contexts.
type Member struct {
	ID         uint64   `json:"id"`
	PeerURLs   []string `json:"peerURLs"`
	IsLearner  bool     `json:"isLearner,omitempty"`
	Name       string   `json:"name,omitempty"`
	ClientURLs []string `json:"clientURLs,omitempty"`
}

// IsStarted reports whether the member has published its name, which it
// does once it runs.
func (m *Member) IsStarted() bool { return m.Name != "" }

// Clone returns a deep copy of m.
func (m *Member) Clone() *Member {
	cp := *m
	cp.PeerURLs = slices.Clone(m.PeerURLs)
	cp.ClientURLs = slices.Clone(m.ClientURLs)
	return &cp
}

// Marshal encodes m as carried in the context of the conf change adding it.
func (m *Member) Marshal() ([]byte, error) { return json.Marshal(m) }

// ConfChangeContext is the context of an AddNode or AddLearnerNode conf
// change: the member to add, or, with IsPromote, the learner to promote
// (only its ID is set). It encodes as the member's fields plus "isPromote".
type ConfChangeContext struct {
	Member
	IsPromote bool `json:"isPromote"`
}

// MemberID computes a member's ID as etcd does: the first 8 bytes, big
// endian, of the SHA-1 of the sorted peer URLs concatenated, then the
// cluster token, then (for a member added at runtime) now in decimal Unix
// seconds. Members added through the Cluster API use an empty token, as in
// etcd.
func MemberID(peerURLs []string, token string, now *time.Time) uint64 {
	urls := slices.Clone(peerURLs)
	sort.Strings(urls)
	b := []byte(strings.Join(urls, "") + token)
	if now != nil {
		b = strconv.AppendInt(b, now.Unix(), 10)
	}
	sum := sha1.Sum(b)
	return binary.BigEndian.Uint64(sum[:8])
}

// NewMember returns a member with the given name and peer URLs (sorted) and
// the ID MemberID computes from them.
func NewMember(name string, peerURLs []string, token string, now *time.Time) *Member {
	urls := slices.Clone(peerURLs)
	sort.Strings(urls)
	return &Member{ID: MemberID(urls, token, now), Name: name, PeerURLs: urls}
}

// ClusterID computes the cluster ID from the bootstrap members as etcd
// does: the first 8 bytes, big endian, of the SHA-1 of the members' IDs in
// ascending order, each as 8 bytes big endian. (The token enters through
// the member IDs.)
func ClusterID(members []*Member) uint64 {
	ids := make([]uint64, len(members))
	for i, m := range members {
		ids[i] = m.ID
	}
	slices.Sort(ids)
	b := make([]byte, 0, 8*len(ids))
	for _, id := range ids {
		b = binary.BigEndian.AppendUint64(b, id)
	}
	sum := sha1.Sum(b)
	return binary.BigEndian.Uint64(sum[:8])
}

// ParsePeerURLs checks peer URLs as etcd checks those of a member to add
// and returns them trimmed and sorted: at least one, each valid by
// config.ParseURLList's rules.
func ParsePeerURLs(in []string) ([]string, error) {
	if len(in) == 0 {
		return nil, errors.New("no valid URLs given")
	}
	us, err := config.ParseURLList(in)
	if err != nil {
		return nil, err
	}
	out := make([]string, len(us))
	for i := range us {
		out[i] = us[i].String()
	}
	return out, nil
}

// Cluster is the membership of the cluster. Reads are safe from any
// goroutine. Changes (Add, Remove, Promote, UpdatePeerURLs, SetAttributes,
// Reload) come only from the apply loop, one at a time, and take effect in
// memory at once: the caller commits the batch they wrote to before anyone
// can act on the state (the apply loop commits before it answers proposers).
type Cluster struct {
	mu      sync.RWMutex
	id      uint64
	members map[uint64]*Member
	removed map[uint64]bool
	refused map[uint64]bool // log indexes of refused conf changes
}

const (
	memberTag  = 'm'
	removedTag = 'r'
	refusedTag = 'x'
)

func key(tag byte, id uint64) []byte {
	return binary.BigEndian.AppendUint64([]byte{storage.PrefixMembers, tag}, id)
}

// Load reads the membership kept in db.
func Load(db pebble.Reader, clusterID uint64) (*Cluster, error) {
	c := &Cluster{id: clusterID}
	if err := c.Reload(db); err != nil {
		return nil, err
	}
	return c, nil
}

// Reload replaces the membership in memory by the one kept in db, after the
// apply loop installed a snapshot's state there. The cluster ID stays.
func (c *Cluster) Reload(db pebble.Reader) error {
	members := make(map[uint64]*Member)
	removed := make(map[uint64]bool)
	refused := make(map[uint64]bool)
	it, err := db.NewIter(&pebble.IterOptions{LowerBound: []byte{storage.PrefixMembers}, UpperBound: []byte{storage.PrefixMembers + 1}})
	if err != nil {
		return err
	}
	defer it.Close()
	for ok := it.First(); ok; ok = it.Next() {
		k := it.Key()
		if len(k) != 10 {
			return fmt.Errorf("membership key %x is corrupt", k)
		}
		switch k[1] {
		case memberTag:
			m := &Member{}
			if err := json.Unmarshal(it.Value(), m); err != nil {
				return fmt.Errorf("member record %x is corrupt: %w", k, err)
			}
			members[m.ID] = m
		case removedTag:
			removed[binary.BigEndian.Uint64(k[2:])] = true
		case refusedTag:
			refused[binary.BigEndian.Uint64(k[2:])] = true
		default:
			return fmt.Errorf("membership key %x is corrupt", k)
		}
	}
	if err := it.Error(); err != nil {
		return err
	}
	c.mu.Lock()
	c.members, c.removed, c.refused = members, removed, refused
	c.mu.Unlock()
	return nil
}

// ID returns the cluster ID.
func (c *Cluster) ID() uint64 { return c.id }

// Members returns a copy of the members, ordered by ID.
func (c *Cluster) Members() []*Member {
	c.mu.RLock()
	defer c.mu.RUnlock()
	out := make([]*Member, 0, len(c.members))
	for _, m := range c.members {
		out = append(out, m.Clone())
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// Member returns a copy of the member with id, or nil.
func (c *Cluster) Member(id uint64) *Member {
	c.mu.RLock()
	defer c.mu.RUnlock()
	m, ok := c.members[id]
	if !ok {
		return nil
	}
	return m.Clone()
}

// IsRemoved reports whether member id was removed from the cluster. A
// removed ID never comes back: the peer transport refuses its traffic.
func (c *Cluster) IsRemoved(id uint64) bool {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.removed[id]
}

// RemovedIDs returns the IDs of removed members in ascending order.
func (c *Cluster) RemovedIDs() []uint64 {
	c.mu.RLock()
	defer c.mu.RUnlock()
	ids := make([]uint64, 0, len(c.removed))
	for id := range c.removed {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}

// VotingMembers returns copies of the members that are not learners,
// ordered by ID.
func (c *Cluster) VotingMembers() []*Member {
	return slices.DeleteFunc(c.Members(), func(m *Member) bool { return m.IsLearner })
}

// ValidateConfChange checks a committed conf change against the current
// membership, as etcd does before applying one: a removed ID can never be
// used again; a member to add must be new and bring peer URLs no member has
// (and a learner must fit under MaxLearners); a promotion must name a
// learner; a removal or update must name a member, and an update must not
// take another member's peer URLs. It changes nothing.
func (c *Cluster) ValidateConfChange(cc *raftpb.ConfChange) error {
	id := cc.GetNodeId()
	c.mu.RLock()
	defer c.mu.RUnlock()
	if c.removed[id] {
		return ErrIDRemoved
	}
	switch cc.GetType() {
	case raftpb.ConfChangeType_ConfChangeAddNode, raftpb.ConfChangeType_ConfChangeAddLearnerNode:
		ctx, err := DecodeConfChangeContext(cc)
		if err != nil {
			return err
		}
		if ctx.IsPromote {
			m := c.members[id]
			if m == nil {
				return ErrIDNotFound
			}
			if !m.IsLearner {
				return ErrMemberNotLearner
			}
			return nil
		}
		if c.members[id] != nil {
			return ErrIDExists
		}
		if c.peerURLTaken(ctx.PeerURLs, 0) {
			return ErrPeerURLExists
		}
		if ctx.IsLearner && cc.GetType() == raftpb.ConfChangeType_ConfChangeAddLearnerNode && c.learners()+1 > MaxLearners {
			return ErrTooManyLearners
		}
	case raftpb.ConfChangeType_ConfChangeRemoveNode:
		if c.members[id] == nil {
			return ErrIDNotFound
		}
	case raftpb.ConfChangeType_ConfChangeUpdateNode:
		if c.members[id] == nil {
			return ErrIDNotFound
		}
		m, err := DecodeConfChangeContext(cc)
		if err != nil {
			return err
		}
		if c.peerURLTaken(m.PeerURLs, id) {
			return ErrPeerURLExists
		}
	default:
		return fmt.Errorf("%w: type %v", ErrBadConfChange, cc.GetType())
	}
	return nil
}

// DecodeConfChangeContext decodes the member carried by an AddNode,
// AddLearnerNode or UpdateNode conf change and checks that it is the member
// the change names.
func DecodeConfChangeContext(cc *raftpb.ConfChange) (*ConfChangeContext, error) {
	ctx := &ConfChangeContext{}
	if err := json.Unmarshal(cc.Context, ctx); err != nil {
		return nil, fmt.Errorf("%w: %v context of member %x: %v", ErrBadConfChange, cc.GetType(), cc.GetNodeId(), err)
	}
	if ctx.ID != cc.GetNodeId() {
		return nil, fmt.Errorf("%w: %v of member %x carries member %x", ErrBadConfChange, cc.GetType(), cc.GetNodeId(), ctx.ID)
	}
	return ctx, nil
}

// peerURLTaken reports whether a member other than except has one of urls.
// Callers hold c.mu.
func (c *Cluster) peerURLTaken(urls []string, except uint64) bool {
	for _, m := range c.members {
		if m.ID == except {
			continue
		}
		for _, u := range m.PeerURLs {
			if slices.Contains(urls, u) {
				return true
			}
		}
	}
	return false
}

// learners counts the learners. Callers hold c.mu.
func (c *Cluster) learners() int {
	n := 0
	for _, m := range c.members {
		if m.IsLearner {
			n++
		}
	}
	return n
}

// MarkRefused records, in b, that the conf change at log index was refused
// by ValidateConfChange (and so applied to Raft as a no-op).
func (c *Cluster) MarkRefused(b *pebble.Batch, index uint64) error {
	if err := b.Set(key(refusedTag, index), nil, nil); err != nil {
		return err
	}
	c.mu.Lock()
	c.refused[index] = true
	c.mu.Unlock()
	return nil
}

// IsRefused reports whether the conf change at log index was refused. A
// member whose state was replaced by a newer one (a snapshot) replays the
// conf changes it skipped into Raft's configuration only; it must replay a
// refused one as a no-op (node ID raft.None), as it was applied first, and
// cannot validate it again against a membership that has moved on.
func (c *Cluster) IsRefused(index uint64) bool {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.refused[index]
}

// Add records the new member m in the apply batch b.
func (c *Cluster) Add(b *pebble.Batch, m *Member) error {
	m = m.Clone()
	if err := save(b, m); err != nil {
		return err
	}
	c.mu.Lock()
	c.members[m.ID] = m
	c.mu.Unlock()
	return nil
}

// Remove removes member id and records its ID as removed, in b. Removing
// an unknown ID still records it as removed.
func (c *Cluster) Remove(b *pebble.Batch, id uint64) error {
	if err := b.Delete(key(memberTag, id), nil); err != nil {
		return err
	}
	if err := b.Set(key(removedTag, id), nil, nil); err != nil {
		return err
	}
	c.mu.Lock()
	delete(c.members, id)
	c.removed[id] = true
	c.mu.Unlock()
	return nil
}

// Promote makes learner id a voting member, in b.
func (c *Cluster) Promote(b *pebble.Batch, id uint64) error {
	return c.update(b, id, func(m *Member) { m.IsLearner = false })
}

// UpdatePeerURLs replaces the peer URLs of member id, in b.
func (c *Cluster) UpdatePeerURLs(b *pebble.Batch, id uint64, peerURLs []string) error {
	return c.update(b, id, func(m *Member) { m.PeerURLs = slices.Clone(peerURLs) })
}

// SetAttributes updates a member's name and client URLs, as published by the
// member itself when it starts. The attributes of a removed member are
// ignored (it may publish before it learns of its removal).
func (c *Cluster) SetAttributes(b *pebble.Batch, id uint64, name string, clientURLs []string) error {
	if c.IsRemoved(id) {
		return nil
	}
	return c.update(b, id, func(m *Member) {
		m.Name = name
		m.ClientURLs = slices.Clone(clientURLs)
	})
}

func (c *Cluster) update(b *pebble.Batch, id uint64, f func(*Member)) error {
	c.mu.RLock()
	m, ok := c.members[id]
	c.mu.RUnlock()
	if !ok {
		return fmt.Errorf("member %x not found", id)
	}
	m = m.Clone()
	f(m)
	if err := save(b, m); err != nil {
		return err
	}
	c.mu.Lock()
	c.members[id] = m
	c.mu.Unlock()
	return nil
}

func save(b *pebble.Batch, m *Member) error {
	v, err := json.Marshal(m)
	if err != nil {
		return err
	}
	return b.Set(key(memberTag, m.ID), v, nil)
}

// ReadyToAddVoter applies etcd's strict reconfiguration rule for adding a
// voting member: counting the new member as not started, a quorum of the
// voters must have started (published their name). Adding a second member
// to a cluster of one started member is allowed.
func (c *Cluster) ReadyToAddVoter() bool {
	voters, started := c.countVoters(0)
	voters++
	if voters == 2 && started == 1 {
		return true
	}
	return started >= voters/2+1
}

// ReadyToRemoveVoter applies etcd's strict reconfiguration rule for
// removing member id: a quorum of the remaining voters must have started.
func (c *Cluster) ReadyToRemoveVoter(id uint64) bool {
	voters, started := c.countVoters(id)
	return started >= voters/2+1
}

// ReadyToPromote applies etcd's strict reconfiguration rule for promoting a
// learner: counting the learner as a started voter, a quorum of the voters
// must have started.
func (c *Cluster) ReadyToPromote() bool {
	voters, started := c.countVoters(0)
	voters, started = voters+1, started+1
	return started >= voters/2+1
}

// countVoters counts the voting members other than except, and how many of
// them have started.
func (c *Cluster) countVoters(except uint64) (voters, started int) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	for _, m := range c.members {
		if m.IsLearner || m.ID == except {
			continue
		}
		voters++
		if m.IsStarted() {
			started++
		}
	}
	return voters, started
}
