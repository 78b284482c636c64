package raftnode

import (
	"context"

	"go.etcd.io/raft/v3/raftpb"
)

// ProposeConfChange proposes a membership change. Like Propose it returns
// once Raft has accepted the proposal, not once it is committed; Raft
// silently turns it into an empty entry while an earlier conf change is
// still unapplied, so the proposer must bound its wait.
func (n *Node) ProposeConfChange(ctx context.Context, cc raftpb.ConfChangeI) error {
	return n.rn.ProposeConfChange(ctx, cc)
}
