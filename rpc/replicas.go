package rpc

import (
	"context"
	"fmt"

	"cairn"
	"cairn/rpc/pb"
)

// ReplicaReport (fsck's view of a file's replicas) over the wire.

func (n *NamespaceClient) ReplicaReport(ctx context.Context, path string) (cairn.FileReplicas, error) {
	r, err := n.c.ReplicaReport(ctx, &pb.PathRequest{Path: path})
	if err != nil {
		return cairn.FileReplicas{}, fromStatus("rpc.ReplicaReport", err)
	}
	return fromPBFileReplicas(r)
}

func (s *namespaceServer) ReplicaReport(ctx context.Context, r *pb.PathRequest) (*pb.FileReplicas, error) {
	fr, err := s.ns.ReplicaReport(ctx, r.Path)
	if err != nil {
		return nil, toStatus(err)
	}
	return toPBFileReplicas(fr), nil
}

func toPBFileReplicas(fr cairn.FileReplicas) *pb.FileReplicas {
	out := &pb.FileReplicas{Size: fr.Size, Writing: fr.Writing, Replication: int32(fr.Replication)}
	for _, b := range fr.Blocks {
		pbb := &pb.BlockReplicas{Block: toPBBlock(&b.Block), Offset: b.Offset, UnderConstruction: b.UnderConstruction, Token: b.Token}
		for _, r := range b.Replicas {
			pbb.Replicas = append(pbb.Replicas, &pb.ReplicaInfo{
				Node: ToPBNode(r.Node), Replica: &pb.Replica{Block: toPBBlock(&r.Block), State: int32(r.State)},
				Live: r.Live, Stale: r.Stale, Good: r.Good, Corrupt: r.Corrupt, Maintenance: r.Maintenance,
			})
		}
		out.Blocks = append(out.Blocks, pbb)
	}
	return out
}

// fromPBFileReplicas converts metad's answer; a block or replica without
// its fields, or a replica of an unknown state, is refused (ErrInvalid).
func fromPBFileReplicas(r *pb.FileReplicas) (cairn.FileReplicas, error) {
	const op = "rpc.ReplicaReport"
	out := cairn.FileReplicas{Size: r.GetSize(), Writing: r.GetWriting(), Replication: int(r.GetReplication())}
	for i, b := range r.GetBlocks() {
		if b.GetBlock() == nil {
			return cairn.FileReplicas{}, cairn.E(op, cairn.KindInvalid, "", fmt.Sprintf("block %d: no block", i))
		}
		br := cairn.BlockReplicas{Block: fromPBBlock(b.Block), Offset: b.GetOffset(), UnderConstruction: b.GetUnderConstruction(), Token: b.GetToken()}
		for _, ri := range b.GetReplicas() {
			if ri.GetNode() == nil {
				return cairn.FileReplicas{}, cairn.E(op, cairn.KindInvalid, "", fmt.Sprintf("block %d: a replica without its node", i))
			}
			reps, err := FromPBReplicas(op, []*pb.Replica{ri.GetReplica()})
			if err != nil {
				return cairn.FileReplicas{}, err
			}
			br.Replicas = append(br.Replicas, cairn.ReplicaInfo{
				Node: FromPBNode(ri.Node), Replica: reps[0], Live: ri.GetLive(), Stale: ri.GetStale(), Good: ri.GetGood(), Corrupt: ri.GetCorrupt(), Maintenance: ri.GetMaintenance(),
			})
		}
		out.Blocks = append(out.Blocks, br)
	}
	return out, nil
}
