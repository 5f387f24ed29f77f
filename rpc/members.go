package rpc

import (
	"context"

	"cairn"
	"cairn/rpc/pb"
)

// MetadMember is one member of a metad group.
type MetadMember struct {
	ID       string // its RPC address, host:port: its Raft server ID
	RaftAddr string // its Raft transport's address
	Leader   bool
	Voter    bool
}

// MetadMembers is what a metad says of its group.
type MetadMembers struct {
	Replicated   bool   // false: a single metad, without Raft
	Self         string // the member that answered
	State        string // its Raft state (Leader, Follower, Candidate)
	AppliedIndex uint64 // the last entry applied to its store
	CommitIndex  uint64
	Members      []MetadMember
}

// Members is the group membership service of a replicated metad, served
// on the Namespace gRPC service: a namespace whose implementation has these
// methods serves them, another answers Unimplemented.
type Members interface {
	MetadMembers(ctx context.Context) (MetadMembers, error)
	// AddMetad adds a member with RPC address id (its Raft transport at
	// the address derived from it); RemoveMetad removes one. The leader
	// only, and admins only.
	AddMetad(ctx context.Context, id string) error
	RemoveMetad(ctx context.Context, id string) error
}

func (s *namespaceServer) members(op string) (Members, error) {
	m, ok := s.ns.(Members)
	if !ok {
		return nil, toStatus(cairn.E(op, cairn.KindInvalid, "", "this metad has no group membership"))
	}
	return m, nil
}

func (s *namespaceServer) MetadMembers(ctx context.Context, _ *pb.Empty) (*pb.MetadMembersReply, error) {
	m, err := s.members("rpc.MetadMembers")
	if err != nil {
		return nil, err
	}
	g, err := m.MetadMembers(ctx)
	if err != nil {
		return nil, toStatus(err)
	}
	r := &pb.MetadMembersReply{Replicated: g.Replicated, Self: g.Self, State: g.State, AppliedIndex: g.AppliedIndex, CommitIndex: g.CommitIndex}
	for _, x := range g.Members {
		r.Members = append(r.Members, &pb.MetadMember{Id: x.ID, RaftAddr: x.RaftAddr, Leader: x.Leader, Voter: x.Voter})
	}
	return r, nil
}

func (s *namespaceServer) AddMetad(ctx context.Context, r *pb.MetadMember) (*pb.Empty, error) {
	m, err := s.members("rpc.AddMetad")
	if err != nil {
		return nil, err
	}
	return empty, toStatus(m.AddMetad(ctx, r.Id))
}

func (s *namespaceServer) RemoveMetad(ctx context.Context, r *pb.MetadMember) (*pb.Empty, error) {
	m, err := s.members("rpc.RemoveMetad")
	if err != nil {
		return nil, err
	}
	return empty, toStatus(m.RemoveMetad(ctx, r.Id))
}

// MetadMembers asks the metad this stub reaches about its group.
func (n *NamespaceClient) MetadMembers(ctx context.Context) (MetadMembers, error) {
	r, err := n.c.MetadMembers(ctx, empty)
	if err != nil {
		return MetadMembers{}, fromStatus("rpc.MetadMembers", err)
	}
	g := MetadMembers{Replicated: r.Replicated, Self: r.Self, State: r.State, AppliedIndex: r.AppliedIndex, CommitIndex: r.CommitIndex}
	for _, x := range r.Members {
		g.Members = append(g.Members, MetadMember{ID: x.Id, RaftAddr: x.RaftAddr, Leader: x.Leader, Voter: x.Voter})
	}
	return g, nil
}

// AddMetad asks the group's leader to add the metad at RPC address id.
func (n *NamespaceClient) AddMetad(ctx context.Context, id string) error {
	_, err := n.c.AddMetad(ctx, &pb.MetadMember{Id: id})
	return fromStatus("rpc.AddMetad", err)
}

// RemoveMetad asks the group's leader to remove the metad at RPC address
// id.
func (n *NamespaceClient) RemoveMetad(ctx context.Context, id string) error {
	_, err := n.c.RemoveMetad(ctx, &pb.MetadMember{Id: id})
	return fromStatus("rpc.RemoveMetad", err)
}
