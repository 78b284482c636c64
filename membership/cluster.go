// Package membership is the cluster's membership as the apply loop sees it:
// the members with their names, peer and client URLs and learner flag, and
// the cluster ID. Member and cluster IDs are derived deterministically from
// the bootstrap configuration, so every member computes the same ones.
package membership

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"

	"github.com/cockroachdb/pebble/v2"

	"github.com/keeldb/keel/storage"
)

// Member is one member of the cluster.
type Member struct {
	ID         uint64   `json:"id"`
	Name       string   `json:"name"`
	PeerURLs   []string `json:"peerURLs"`
	ClientURLs []string `json:"clientURLs,omitempty"`
	IsLearner  bool     `json:"isLearner,omitempty"`
}

// NewMember returns a member whose ID is derived from its name, its peer URLs
// and the cluster token.
func NewMember(name string, peerURLs []string, token string) *Member {
	urls := slices.Clone(peerURLs)
	sort.Strings(urls)
	h := sha256.New()
	fmt.Fprintf(h, "keel-member\x00%s\x00%s\x00%s", name, strings.Join(urls, "\x00"), token)
	return &Member{ID: nonZero(h.Sum(nil)), Name: name, PeerURLs: urls}
}

// Marshal encodes m as carried in the context of the conf change adding it.
func (m *Member) Marshal() ([]byte, error) { return json.Marshal(m) }

// ClusterID derives the cluster ID from the bootstrap members and the token.
func ClusterID(members []*Member, token string) uint64 {
	ids := make([]uint64, len(members))
	for i, m := range members {
		ids[i] = m.ID
	}
	slices.Sort(ids)
	h := sha256.New()
	fmt.Fprintf(h, "keel-cluster\x00%s", token)
	for _, id := range ids {
		h.Write(binary.BigEndian.AppendUint64(nil, id))
	}
	return nonZero(h.Sum(nil))
}

func nonZero(sum []byte) uint64 {
	if id := binary.BigEndian.Uint64(sum); id != 0 {
		return id
	}
	return 1
}

// Cluster is the membership of the cluster. Reads are safe from any
// goroutine; changes come only from the apply loop.
type Cluster struct {
	mu      sync.RWMutex
	id      uint64
	members map[uint64]*Member
}

var memberPrefix = []byte{storage.PrefixMembers, 'm'}

func memberKey(id uint64) []byte {
	return binary.BigEndian.AppendUint64(append([]byte(nil), memberPrefix...), id)
}

// Load reads the membership kept in db.
func Load(db pebble.Reader, clusterID uint64) (*Cluster, error) {
	c := &Cluster{id: clusterID, members: make(map[uint64]*Member)}
	it, err := db.NewIter(&pebble.IterOptions{LowerBound: memberPrefix, UpperBound: []byte{storage.PrefixMembers, 'm' + 1}})
	if err != nil {
		return nil, err
	}
	defer it.Close()
	for ok := it.First(); ok; ok = it.Next() {
		m := &Member{}
		if err := json.Unmarshal(it.Value(), m); err != nil {
			return nil, fmt.Errorf("member record %x is corrupt: %w", it.Key(), err)
		}
		c.members[m.ID] = m
	}
	return c, it.Error()
}

// ID returns the cluster ID.
func (c *Cluster) ID() uint64 { return c.id }

// Members returns a copy of the members, ordered by ID.
func (c *Cluster) Members() []*Member {
	c.mu.RLock()
	defer c.mu.RUnlock()
	out := make([]*Member, 0, len(c.members))
	for _, m := range c.members {
		cp := *m
		cp.PeerURLs = slices.Clone(m.PeerURLs)
		cp.ClientURLs = slices.Clone(m.ClientURLs)
		out = append(out, &cp)
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
	cp := *m
	cp.PeerURLs = slices.Clone(m.PeerURLs)
	cp.ClientURLs = slices.Clone(m.ClientURLs)
	return &cp
}

// Add records m in the apply batch b.
func (c *Cluster) Add(b *pebble.Batch, m *Member) error {
	if err := c.save(b, m); err != nil {
		return err
	}
	c.mu.Lock()
	cp := *m
	c.members[m.ID] = &cp
	c.mu.Unlock()
	return nil
}

// SetAttributes updates a member's name and client URLs, as published by the
// member itself when it starts.
func (c *Cluster) SetAttributes(b *pebble.Batch, id uint64, name string, clientURLs []string) error {
	c.mu.Lock()
	m, ok := c.members[id]
	if !ok {
		c.mu.Unlock()
		return fmt.Errorf("member %x not found", id)
	}
	cp := *m
	cp.Name = name
	cp.ClientURLs = slices.Clone(clientURLs)
	c.members[id] = &cp
	c.mu.Unlock()
	return c.save(b, &cp)
}

func (c *Cluster) save(b *pebble.Batch, m *Member) error {
	v, err := json.Marshal(m)
	if err != nil {
		return err
	}
	return b.Set(memberKey(m.ID), v, nil)
}
