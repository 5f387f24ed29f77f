package rpc

import (
	"context"
	"io/fs"

	"google.golang.org/grpc"

	"cairn"
	"cairn/rpc/pb"
)

// NamespaceClient is the remote stub of cairn.Namespace.
type NamespaceClient struct{ c pb.NamespaceClient }

var _ cairn.Namespace = (*NamespaceClient)(nil)

// NewNamespaceClient returns a stub that calls metad over conn.
func NewNamespaceClient(conn grpc.ClientConnInterface) *NamespaceClient {
	return &NamespaceClient{c: pb.NewNamespaceClient(conn)}
}

func (n *NamespaceClient) Mkdirs(ctx context.Context, path string, perm fs.FileMode) error {
	_, err := n.c.Mkdirs(ctx, &pb.MkdirRequest{Path: path, Perm: uint32(perm)})
	return fromStatus("rpc.Mkdirs", err)
}

func (n *NamespaceClient) Mkdir(ctx context.Context, path string, perm fs.FileMode) error {
	_, err := n.c.Mkdir(ctx, &pb.MkdirRequest{Path: path, Perm: uint32(perm)})
	return fromStatus("rpc.Mkdir", err)
}

func (n *NamespaceClient) Create(ctx context.Context, path string, o cairn.CreateOptions) (cairn.FileInfo, error) {
	fi, err := n.c.Create(ctx, &pb.CreateRequest{Path: path, Perm: uint32(o.Perm), Replication: int32(o.Replication), BlockSize: o.BlockSize, Client: o.Client, Overwrite: o.Overwrite, Closed: o.Closed})
	if err != nil {
		return cairn.FileInfo{}, fromStatus("rpc.Create", err)
	}
	return fromPBFileInfo(fi), nil
}

func (n *NamespaceClient) AddBlock(ctx context.Context, w cairn.WriterRef, prev *cairn.Block, excluded []cairn.Node) (cairn.LocatedBlock, error) {
	lb, err := n.c.AddBlock(ctx, &pb.AddBlockRequest{Path: w.Path, Client: w.Client, FileId: w.FileID, Prev: toPBBlock(prev), Excluded: ToPBNodes(excluded), Claim: w.Claim})
	if err != nil {
		return cairn.LocatedBlock{}, fromStatus("rpc.AddBlock", err)
	}
	return fromPBLocated(lb), nil
}

func (n *NamespaceClient) Complete(ctx context.Context, w cairn.WriterRef, last *cairn.Block, acked ...cairn.Node) error {
	_, err := n.c.Complete(ctx, &pb.CompleteRequest{Path: w.Path, Client: w.Client, FileId: w.FileID, Last: toPBBlock(last), Acked: ToPBNodes(acked)})
	return fromStatus("rpc.Complete", err)
}

func (n *NamespaceClient) Stat(ctx context.Context, path string) (cairn.FileInfo, error) {
	fi, err := n.c.Stat(ctx, &pb.PathRequest{Path: path})
	if err != nil {
		return cairn.FileInfo{}, fromStatus("rpc.Stat", err)
	}
	return fromPBFileInfo(fi), nil
}

func (n *NamespaceClient) List(ctx context.Context, path, after string, limit int) ([]cairn.FileInfo, bool, error) {
	r, err := n.c.List(ctx, &pb.ListRequest{Path: path, After: after, Limit: int32(limit)})
	if err != nil {
		return nil, false, fromStatus("rpc.List", err)
	}
	out := make([]cairn.FileInfo, len(r.Entries))
	for i, e := range r.Entries {
		out[i] = fromPBFileInfo(e)
	}
	return out, r.More, nil
}

func (n *NamespaceClient) Rename(ctx context.Context, src, dst string) error {
	_, err := n.c.Rename(ctx, &pb.RenameRequest{Src: src, Dst: dst})
	return fromStatus("rpc.Rename", err)
}

func (n *NamespaceClient) Delete(ctx context.Context, path string, recursive bool) error {
	_, err := n.c.Delete(ctx, &pb.DeleteRequest{Path: path, Recursive: recursive})
	return fromStatus("rpc.Delete", err)
}

func (n *NamespaceClient) BlockLocations(ctx context.Context, f cairn.FileRef) (cairn.FileBlocks, error) {
	r, err := n.c.BlockLocations(ctx, &pb.PathRequest{Path: f.Path, FileId: f.ID})
	if err != nil {
		return cairn.FileBlocks{}, fromStatus("rpc.BlockLocations", err)
	}
	fb := cairn.FileBlocks{FileID: r.FileId, Size: r.Size, Writing: r.Writing, Blocks: make([]cairn.LocatedBlock, len(r.Blocks))}
	for i, b := range r.Blocks {
		fb.Blocks[i] = fromPBLocated(b)
	}
	return fb, nil
}

func (n *NamespaceClient) Statfs(ctx context.Context) (cairn.FsStats, error) {
	r, err := n.c.Statfs(ctx, &pb.Empty{})
	if err != nil {
		return cairn.FsStats{}, fromStatus("rpc.Statfs", err)
	}
	return cairn.FsStats{Capacity: r.Capacity, Used: r.Used, Remaining: r.Remaining, Files: r.Files, Blocks: r.Blocks, LiveNodes: int(r.LiveNodes)}, nil
}

func (n *NamespaceClient) Report(ctx context.Context) (cairn.ClusterReport, error) {
	r, err := n.c.Report(ctx, &pb.Empty{})
	if err != nil {
		return cairn.ClusterReport{}, fromStatus("rpc.Report", err)
	}
	rep := cairn.ClusterReport{NamespaceID: r.NamespaceId, DefaultReplication: int(r.DefaultReplication)}
	for _, nr := range r.Nodes {
		rep.Nodes = append(rep.Nodes, fromPBNodeReport(nr))
	}
	return rep, nil
}

// namespaceServer serves a cairn.Namespace over gRPC.
type namespaceServer struct {
	pb.UnimplementedNamespaceServer
	ns cairn.Namespace
}

// RegisterNamespace serves ns on s.
func RegisterNamespace(s *grpc.Server, ns cairn.Namespace) {
	pb.RegisterNamespaceServer(s, &namespaceServer{ns: ns})
}

var empty = &pb.Empty{}

func (s *namespaceServer) Mkdirs(ctx context.Context, r *pb.MkdirRequest) (*pb.Empty, error) {
	return empty, toStatus(s.ns.Mkdirs(ctx, r.Path, fs.FileMode(r.Perm)))
}

func (s *namespaceServer) Mkdir(ctx context.Context, r *pb.MkdirRequest) (*pb.Empty, error) {
	return empty, toStatus(s.ns.Mkdir(ctx, r.Path, fs.FileMode(r.Perm)))
}

func (s *namespaceServer) Create(ctx context.Context, r *pb.CreateRequest) (*pb.FileInfo, error) {
	fi, err := s.ns.Create(ctx, r.Path, cairn.CreateOptions{Perm: fs.FileMode(r.Perm), Replication: int(r.Replication), BlockSize: r.BlockSize, Client: r.Client, Overwrite: r.Overwrite, Closed: r.Closed})
	if err != nil {
		return nil, toStatus(err)
	}
	return toPBFileInfo(fi), nil
}

func (s *namespaceServer) AddBlock(ctx context.Context, r *pb.AddBlockRequest) (*pb.LocatedBlock, error) {
	w := writerRef(r.FileId, r.Path, r.Client)
	w.Claim = r.Claim
	lb, err := s.ns.AddBlock(ctx, w, fromPBBlockPtr(r.Prev), FromPBNodes(r.Excluded))
	if err != nil {
		return nil, toStatus(err)
	}
	return toPBLocated(lb), nil
}

func (s *namespaceServer) Complete(ctx context.Context, r *pb.CompleteRequest) (*pb.Empty, error) {
	return empty, toStatus(s.ns.Complete(ctx, writerRef(r.FileId, r.Path, r.Client), fromPBBlockPtr(r.Last), FromPBNodes(r.Acked)...))
}

func (s *namespaceServer) Stat(ctx context.Context, r *pb.PathRequest) (*pb.FileInfo, error) {
	fi, err := s.ns.Stat(ctx, r.Path)
	if err != nil {
		return nil, toStatus(err)
	}
	return toPBFileInfo(fi), nil
}

func (s *namespaceServer) List(ctx context.Context, r *pb.ListRequest) (*pb.ListReply, error) {
	es, more, err := s.ns.List(ctx, r.Path, r.After, int(r.Limit))
	if err != nil {
		return nil, toStatus(err)
	}
	out := &pb.ListReply{More: more, Entries: make([]*pb.FileInfo, len(es))}
	for i, e := range es {
		out.Entries[i] = toPBFileInfo(e)
	}
	return out, nil
}

func (s *namespaceServer) Rename(ctx context.Context, r *pb.RenameRequest) (*pb.Empty, error) {
	return empty, toStatus(s.ns.Rename(ctx, r.Src, r.Dst))
}

func (s *namespaceServer) Delete(ctx context.Context, r *pb.DeleteRequest) (*pb.Empty, error) {
	return empty, toStatus(s.ns.Delete(ctx, r.Path, r.Recursive))
}

func (s *namespaceServer) BlockLocations(ctx context.Context, r *pb.PathRequest) (*pb.FileBlocks, error) {
	fb, err := s.ns.BlockLocations(ctx, cairn.FileRef{ID: r.FileId, Path: r.Path})
	if err != nil {
		return nil, toStatus(err)
	}
	out := &pb.FileBlocks{FileId: fb.FileID, Size: fb.Size, Writing: fb.Writing, Blocks: make([]*pb.LocatedBlock, len(fb.Blocks))}
	for i, b := range fb.Blocks {
		out.Blocks[i] = toPBLocated(b)
	}
	return out, nil
}

func (s *namespaceServer) Statfs(ctx context.Context, _ *pb.Empty) (*pb.FsStats, error) {
	st, err := s.ns.Statfs(ctx)
	if err != nil {
		return nil, toStatus(err)
	}
	return &pb.FsStats{Capacity: st.Capacity, Used: st.Used, Remaining: st.Remaining, Files: st.Files, Blocks: st.Blocks, LiveNodes: int32(st.LiveNodes)}, nil
}

func (s *namespaceServer) Report(ctx context.Context, _ *pb.Empty) (*pb.ClusterReport, error) {
	rep, err := s.ns.Report(ctx)
	if err != nil {
		return nil, toStatus(err)
	}
	out := &pb.ClusterReport{NamespaceId: rep.NamespaceID, DefaultReplication: int32(rep.DefaultReplication)}
	for _, n := range rep.Nodes {
		out.Nodes = append(out.Nodes, toPBNodeReport(n))
	}
	return out, nil
}

func writerRef(id uint64, path, client string) cairn.WriterRef {
	return cairn.WriterRef{FileID: id, Path: path, Client: client}
}

func (n *NamespaceClient) Unlink(ctx context.Context, path, holder string) error {
	_, err := n.c.Unlink(ctx, &pb.UnlinkRequest{Path: path, Holder: holder})
	return fromStatus("rpc.Unlink", err)
}

func (n *NamespaceClient) Release(ctx context.Context, fileID uint64, holder string) error {
	_, err := n.c.Release(ctx, &pb.ReleaseRequest{FileId: fileID, Holder: holder})
	return fromStatus("rpc.Release", err)
}

func (s *namespaceServer) Unlink(ctx context.Context, r *pb.UnlinkRequest) (*pb.Empty, error) {
	return empty, toStatus(s.ns.Unlink(ctx, r.Path, r.Holder))
}

func (s *namespaceServer) Release(ctx context.Context, r *pb.ReleaseRequest) (*pb.Empty, error) {
	return empty, toStatus(s.ns.Release(ctx, r.FileId, r.Holder))
}
