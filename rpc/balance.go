package rpc

import (
	"context"

	"cairn"
	"cairn/rpc/pb"
)

// The balancer over the wire: Admin's Balance.

func (n *NamespaceClient) Balance(ctx context.Context, r cairn.BalanceRequest) (cairn.BalanceStatus, error) {
	rep, err := n.c.Balance(ctx, &pb.BalanceRequest{Threshold: r.Threshold, Bandwidth: r.Bandwidth, Action: uint32(r.Action), Id: r.ID})
	if err != nil {
		return cairn.BalanceStatus{}, fromStatus("rpc.Balance", err)
	}
	st := cairn.BalanceStatus{
		BytesLeftToMove: rep.BytesLeftToMove, BytesBeingMoved: rep.BytesBeingMoved, BytesMoved: rep.BytesMoved,
		MovesScheduled: rep.MovesScheduled, MovesPending: rep.MovesPending, MovesDone: rep.MovesDone,
		MovesFailed: rep.MovesFailed, Average: rep.Average,
	}
	for _, bn := range rep.Nodes {
		st.Nodes = append(st.Nodes, cairn.BalanceNode{Node: FromPBNode(bn.Node), Capacity: bn.Capacity, Used: bn.Used})
	}
	return st, nil
}

func (s *namespaceServer) Balance(ctx context.Context, r *pb.BalanceRequest) (*pb.BalanceReply, error) {
	st, err := s.ns.Balance(ctx, cairn.BalanceRequest{Threshold: r.Threshold, Bandwidth: r.Bandwidth, Action: cairn.BalanceAction(r.Action), ID: r.Id})
	if err != nil {
		return nil, toStatus(err)
	}
	rep := &pb.BalanceReply{
		BytesLeftToMove: st.BytesLeftToMove, BytesBeingMoved: st.BytesBeingMoved, BytesMoved: st.BytesMoved,
		MovesScheduled: st.MovesScheduled, MovesPending: st.MovesPending, MovesDone: st.MovesDone,
		MovesFailed: st.MovesFailed, Average: st.Average,
	}
	for _, bn := range st.Nodes {
		rep.Nodes = append(rep.Nodes, &pb.BalanceNode{Node: ToPBNode(bn.Node), Capacity: bn.Capacity, Used: bn.Used})
	}
	return rep, nil
}
