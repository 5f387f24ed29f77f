package rpc

import (
	"context"

	"google.golang.org/grpc"

	"cairn"
	"cairn/rpc/pb"
)

// RegistryClient is the remote stub of cairn.Registry.
type RegistryClient struct{ c pb.RegistryClient }

var _ cairn.Registry = (*RegistryClient)(nil)

// NewRegistryClient returns a stub that calls metad over conn.
func NewRegistryClient(conn grpc.ClientConnInterface) *RegistryClient {
	return &RegistryClient{c: pb.NewRegistryClient(conn)}
}

func (r *RegistryClient) Register(ctx context.Context, reg cairn.Registration) (string, error) {
	rep, err := r.c.Register(ctx, &pb.Registration{Node: ToPBNode(reg.Node), NamespaceId: reg.NamespaceID})
	if err != nil {
		return "", fromStatus("rpc.Register", err)
	}
	return rep.NamespaceId, nil
}

func (r *RegistryClient) Heartbeat(ctx context.Context, h cairn.Heartbeat) ([]cairn.Command, error) {
	rep, err := r.c.Heartbeat(ctx, &pb.HeartbeatRequest{StorageId: h.StorageID, Capacity: h.Capacity, Used: h.Used, Remaining: h.Remaining, Active: int32(h.Active)})
	if err != nil {
		return nil, fromStatus("rpc.Heartbeat", err)
	}
	cmds := make([]cairn.Command, len(rep.Commands))
	for i, c := range rep.Commands {
		cmds[i] = cairn.Command{Kind: cairn.CommandKind(c.Kind), Blocks: FromPBBlocks(c.Blocks), Targets: FromPBNodes(c.Targets)}
	}
	return cmds, nil
}

func (r *RegistryClient) BlockReport(ctx context.Context, id string, blocks []cairn.Block) error {
	_, err := r.c.BlockReport(ctx, &pb.BlockList{StorageId: id, Blocks: ToPBBlocks(blocks)})
	return fromStatus("rpc.BlockReport", err)
}

func (r *RegistryClient) BlocksReceived(ctx context.Context, id string, blocks []cairn.Block) error {
	_, err := r.c.BlocksReceived(ctx, &pb.BlockList{StorageId: id, Blocks: ToPBBlocks(blocks)})
	return fromStatus("rpc.BlocksReceived", err)
}

func (r *RegistryClient) BlocksDeleted(ctx context.Context, id string, blocks []cairn.Block) error {
	_, err := r.c.BlocksDeleted(ctx, &pb.BlockList{StorageId: id, Blocks: ToPBBlocks(blocks)})
	return fromStatus("rpc.BlocksDeleted", err)
}

type registryServer struct {
	pb.UnimplementedRegistryServer
	r cairn.Registry
}

// RegisterRegistry serves r on s.
func RegisterRegistry(s *grpc.Server, r cairn.Registry) {
	pb.RegisterRegistryServer(s, &registryServer{r: r})
}

func (s *registryServer) Register(ctx context.Context, r *pb.Registration) (*pb.RegisterReply, error) {
	id, err := s.r.Register(ctx, cairn.Registration{Node: FromPBNode(r.Node), NamespaceID: r.NamespaceId})
	if err != nil {
		return nil, toStatus(err)
	}
	return &pb.RegisterReply{NamespaceId: id}, nil
}

func (s *registryServer) Heartbeat(ctx context.Context, h *pb.HeartbeatRequest) (*pb.HeartbeatReply, error) {
	cmds, err := s.r.Heartbeat(ctx, cairn.Heartbeat{StorageID: h.StorageId, Capacity: h.Capacity, Used: h.Used, Remaining: h.Remaining, Active: int(h.Active)})
	if err != nil {
		return nil, toStatus(err)
	}
	out := &pb.HeartbeatReply{}
	for _, c := range cmds {
		out.Commands = append(out.Commands, &pb.Command{Kind: int32(c.Kind), Blocks: ToPBBlocks(c.Blocks), Targets: ToPBNodes(c.Targets)})
	}
	return out, nil
}

func (s *registryServer) BlockReport(ctx context.Context, l *pb.BlockList) (*pb.Empty, error) {
	return empty, toStatus(s.r.BlockReport(ctx, l.StorageId, FromPBBlocks(l.Blocks)))
}

func (s *registryServer) BlocksReceived(ctx context.Context, l *pb.BlockList) (*pb.Empty, error) {
	return empty, toStatus(s.r.BlocksReceived(ctx, l.StorageId, FromPBBlocks(l.Blocks)))
}

func (s *registryServer) BlocksDeleted(ctx context.Context, l *pb.BlockList) (*pb.Empty, error) {
	return empty, toStatus(s.r.BlocksDeleted(ctx, l.StorageId, FromPBBlocks(l.Blocks)))
}
