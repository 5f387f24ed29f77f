package rpc

import (
	"context"

	"google.golang.org/grpc"

	"cairn"
	"cairn/rpc/pb"
)

// RegistryClient is the remote stub of cairn.Registry.
type RegistryClient struct{ c pb.RegistryClient }

var _ cairn.LeaderRegistry = (*RegistryClient)(nil)

// NewRegistryClient returns a stub that calls metad over conn.
func NewRegistryClient(conn grpc.ClientConnInterface) *RegistryClient {
	return &RegistryClient{c: pb.NewRegistryClient(conn)}
}

func (r *RegistryClient) Register(ctx context.Context, reg cairn.Registration) (cairn.Registered, error) {
	rep, err := r.c.Register(ctx, &pb.Registration{Node: ToPBNode(reg.Node), NamespaceId: reg.NamespaceID})
	if err != nil {
		return cairn.Registered{}, fromStatus("rpc.Register", err)
	}
	return cairn.Registered{NamespaceID: rep.NamespaceId, Keys: FromPBKeys(rep.Keys), EncryptData: rep.EncryptData}, nil
}

func (r *RegistryClient) Heartbeat(ctx context.Context, h cairn.Heartbeat) ([]cairn.Command, error) {
	rep, err := r.HeartbeatReply(ctx, h)
	return rep.Commands, err
}

// HeartbeatReply is Heartbeat with the answering metad's place in its
// group (cairn.LeaderRegistry).
func (r *RegistryClient) HeartbeatReply(ctx context.Context, h cairn.Heartbeat) (cairn.HeartbeatReply, error) {
	rep, err := r.c.Heartbeat(ctx, &pb.HeartbeatRequest{StorageId: h.StorageID, Capacity: h.Capacity, Used: h.Used, Remaining: h.Remaining, Active: int32(h.Active), FailedVolumes: h.FailedVolumes})
	if err != nil {
		return cairn.HeartbeatReply{}, fromStatus("rpc.Heartbeat", err)
	}
	cmds := make([]cairn.Command, len(rep.Commands))
	for i, c := range rep.Commands {
		cmds[i] = cairn.Command{Kind: cairn.CommandKind(c.Kind), Blocks: FromPBBlocks(c.Blocks), Targets: FromPBNodes(c.Targets), RecoveryID: cairn.GenStamp(c.RecoveryId),
			Tokens: c.Tokens, Keys: FromPBKeys(c.Keys), Bandwidth: max(0, c.Bandwidth)}
	}
	return cairn.HeartbeatReply{Commands: cmds, Follower: rep.Follower, Term: rep.Term}, nil
}

func (r *RegistryClient) BlockReport(ctx context.Context, id string, replicas []cairn.Replica) error {
	_, err := r.c.BlockReport(ctx, &pb.ReplicaList{StorageId: id, Replicas: ToPBReplicas(replicas)})
	return fromStatus("rpc.BlockReport", err)
}

func (r *RegistryClient) BlocksReceived(ctx context.Context, id string, replicas []cairn.Replica) error {
	_, err := r.c.BlocksReceived(ctx, &pb.ReplicaList{StorageId: id, Replicas: ToPBReplicas(replicas)})
	return fromStatus("rpc.BlocksReceived", err)
}

func (r *RegistryClient) CommitBlockSynchronization(ctx context.Context, c cairn.CommitSync) error {
	_, err := r.c.CommitBlockSynchronization(ctx, &pb.CommitSyncRequest{
		Block: toPBBlock(&c.Block), RecoveryId: uint64(c.RecoveryID), NewGenStamp: uint64(c.NewGenStamp),
		NewLen: c.NewLen, Nodes: c.Nodes, Delete: c.Delete,
	})
	return fromStatus("rpc.CommitBlockSynchronization", err)
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
	reg, err := s.r.Register(ctx, cairn.Registration{Node: FromPBNode(r.Node), NamespaceID: r.NamespaceId})
	if err != nil {
		return nil, toStatus(err)
	}
	return &pb.RegisterReply{NamespaceId: reg.NamespaceID, Keys: ToPBKeys(reg.Keys), EncryptData: reg.EncryptData}, nil
}

func (s *registryServer) Heartbeat(ctx context.Context, h *pb.HeartbeatRequest) (*pb.HeartbeatReply, error) {
	hb := cairn.Heartbeat{StorageID: h.StorageId, Capacity: h.Capacity, Used: h.Used, Remaining: h.Remaining, Active: int(h.Active), FailedVolumes: h.FailedVolumes}
	var rep cairn.HeartbeatReply
	var err error
	if lr, ok := s.r.(cairn.LeaderRegistry); ok {
		rep, err = lr.HeartbeatReply(ctx, hb)
	} else {
		rep.Commands, err = s.r.Heartbeat(ctx, hb)
	}
	if err != nil {
		return nil, toStatus(err)
	}
	return &pb.HeartbeatReply{Commands: ToPBCommands(rep.Commands), Follower: rep.Follower, Term: rep.Term}, nil
}

// ToPBCommands is a heartbeat reply's commands as they travel.
func ToPBCommands(cmds []cairn.Command) []*pb.Command {
	out := make([]*pb.Command, 0, len(cmds))
	for _, c := range cmds {
		out = append(out, &pb.Command{Kind: int32(c.Kind), Blocks: ToPBBlocks(c.Blocks), Targets: ToPBNodes(c.Targets), RecoveryId: uint64(c.RecoveryID),
			Tokens: c.Tokens, Keys: ToPBKeys(c.Keys), Bandwidth: c.Bandwidth})
	}
	return out
}

func (s *registryServer) BlockReport(ctx context.Context, l *pb.ReplicaList) (*pb.Empty, error) {
	reps, err := FromPBReplicas("rpc.BlockReport", l.Replicas)
	if err != nil {
		return nil, toStatus(err)
	}
	return empty, toStatus(s.r.BlockReport(ctx, l.StorageId, reps))
}

func (s *registryServer) BlocksReceived(ctx context.Context, l *pb.ReplicaList) (*pb.Empty, error) {
	reps, err := FromPBReplicas("rpc.BlocksReceived", l.Replicas)
	if err != nil {
		return nil, toStatus(err)
	}
	return empty, toStatus(s.r.BlocksReceived(ctx, l.StorageId, reps))
}

func (s *registryServer) CommitBlockSynchronization(ctx context.Context, r *pb.CommitSyncRequest) (*pb.Empty, error) {
	if r.Block == nil {
		return nil, toStatus(cairn.E("rpc.CommitBlockSynchronization", cairn.KindInvalid, "", "no block"))
	}
	return empty, toStatus(s.r.CommitBlockSynchronization(ctx, cairn.CommitSync{
		Block: fromPBBlock(r.Block), RecoveryID: cairn.GenStamp(r.RecoveryId), NewGenStamp: cairn.GenStamp(r.NewGenStamp),
		NewLen: r.NewLen, Nodes: r.Nodes, Delete: r.Delete,
	}))
}

func (s *registryServer) BlocksDeleted(ctx context.Context, l *pb.BlockList) (*pb.Empty, error) {
	return empty, toStatus(s.r.BlocksDeleted(ctx, l.StorageId, FromPBBlocks(l.Blocks)))
}
