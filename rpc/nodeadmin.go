package rpc

import (
	"context"
	"time"

	"cairn"
	"cairn/rpc/pb"
)

// Decommissioning and maintenance over the wire: Admin's SetNodeAdmin and RefreshNodes,
// and the node reports they and Report answer with.

func toPBNodeReport(n cairn.NodeReport) *pb.NodeReport {
	return &pb.NodeReport{
		Node: ToPBNode(n.Node), Capacity: n.Capacity, Used: n.Used, Remaining: n.Remaining,
		Blocks: n.Blocks, LastHeartbeatNs: nanos(n.LastHeartbeat), Live: n.Live,
		AdminState: n.AdminState, FailedVolumes: n.FailedVolumes, MaintenanceExpiresNs: nanos(n.MaintenanceExpires),
	}
}

func fromPBNodeReport(nr *pb.NodeReport) cairn.NodeReport {
	return cairn.NodeReport{
		Node: FromPBNode(nr.Node), Capacity: nr.Capacity, Used: nr.Used, Remaining: nr.Remaining,
		Blocks: nr.Blocks, LastHeartbeat: fromNanos(nr.LastHeartbeatNs), Live: nr.Live,
		AdminState: nr.AdminState, FailedVolumes: nr.FailedVolumes, MaintenanceExpires: fromNanos(nr.MaintenanceExpiresNs),
	}
}

func (n *NamespaceClient) SetNodeAdmin(ctx context.Context, node string, action cairn.NodeAdminAction, expire time.Duration) (cairn.NodeReport, error) {
	r, err := n.c.SetNodeAdmin(ctx, &pb.NodeAdminRequest{Node: node, Action: uint32(action), ExpireNs: int64(expire)})
	if err != nil {
		return cairn.NodeReport{}, fromStatus("rpc.SetNodeAdmin", err)
	}
	return fromPBNodeReport(r), nil
}

func (n *NamespaceClient) RefreshNodes(ctx context.Context) ([]cairn.NodeReport, error) {
	r, err := n.c.RefreshNodes(ctx, &pb.Empty{})
	if err != nil {
		return nil, fromStatus("rpc.RefreshNodes", err)
	}
	out := make([]cairn.NodeReport, 0, len(r.Nodes))
	for _, nr := range r.Nodes {
		out = append(out, fromPBNodeReport(nr))
	}
	return out, nil
}

func (s *namespaceServer) SetNodeAdmin(ctx context.Context, r *pb.NodeAdminRequest) (*pb.NodeReport, error) {
	n, err := s.ns.SetNodeAdmin(ctx, r.Node, cairn.NodeAdminAction(r.Action), time.Duration(r.ExpireNs))
	if err != nil {
		return nil, toStatus(err)
	}
	return toPBNodeReport(n), nil
}

func (s *namespaceServer) RefreshNodes(ctx context.Context, _ *pb.Empty) (*pb.NodeReports, error) {
	ns, err := s.ns.RefreshNodes(ctx)
	if err != nil {
		return nil, toStatus(err)
	}
	out := &pb.NodeReports{}
	for _, n := range ns {
		out.Nodes = append(out.Nodes, toPBNodeReport(n))
	}
	return out, nil
}
