package rpc

import (
	"context"
	"io/fs"
	"time"

	"cairn"
	"cairn/rpc/pb"
)

// The remote stubs of Namespace's attribute, link, xattr, append, pipeline
// and checkpoint calls.

func (n *NamespaceClient) SetAttr(ctx context.Context, path string, a cairn.Attr) (cairn.FileInfo, error) {
	r := &pb.SetAttrRequest{Path: path}
	if a.Perm != nil {
		v := uint32(*a.Perm)
		r.Perm = &v
	}
	r.Owner, r.Group = a.Owner, a.Group
	if a.ModTime != nil {
		v := a.ModTime.UnixNano()
		r.MtimeNs = &v
	}
	if a.AccessTime != nil {
		v := a.AccessTime.UnixNano()
		r.AtimeNs = &v
	}
	if a.Replication != nil {
		v := int32(*a.Replication)
		r.Replication = &v
	}
	r.TimesNow = a.TimesNow
	fi, err := n.c.SetAttr(ctx, r)
	if err != nil {
		return cairn.FileInfo{}, fromStatus("rpc.SetAttr", err)
	}
	return fromPBFileInfo(fi), nil
}

func (n *NamespaceClient) Link(ctx context.Context, src, dst string) error {
	_, err := n.c.Link(ctx, &pb.LinkRequest{Src: src, Dst: dst})
	return fromStatus("rpc.Link", err)
}

func (n *NamespaceClient) Concat(ctx context.Context, target string, sources []string) error {
	_, err := n.c.Concat(ctx, &pb.ConcatRequest{Target: target, Sources: sources})
	return fromStatus("rpc.Concat", err)
}

func (n *NamespaceClient) Symlink(ctx context.Context, target, path string) error {
	_, err := n.c.Symlink(ctx, &pb.SymlinkRequest{Target: target, Path: path})
	return fromStatus("rpc.Symlink", err)
}

func (n *NamespaceClient) Mknod(ctx context.Context, path string, mode fs.FileMode, rdev uint64) error {
	_, err := n.c.Mknod(ctx, &pb.MknodRequest{Path: path, Mode: uint32(mode), Rdev: rdev})
	return fromStatus("rpc.Mknod", err)
}

func (n *NamespaceClient) Access(ctx context.Context, path string, want cairn.AccessMode) (cairn.FileInfo, error) {
	fi, err := n.c.Access(ctx, &pb.AccessRequest{Path: path, Mode: uint32(want)})
	if err != nil {
		return cairn.FileInfo{}, fromStatus("rpc.Access", err)
	}
	return fromPBFileInfo(fi), nil
}

func (n *NamespaceClient) SetXattr(ctx context.Context, path, name string, value []byte, flags cairn.XattrFlags) error {
	_, err := n.c.SetXattr(ctx, &pb.XattrRequest{Path: path, Name: name, Value: value, Flags: int32(flags)})
	return fromStatus("rpc.SetXattr", err)
}

func (n *NamespaceClient) GetXattr(ctx context.Context, path, name string) ([]byte, error) {
	v, err := n.c.GetXattr(ctx, &pb.XattrRequest{Path: path, Name: name})
	if err != nil {
		return nil, fromStatus("rpc.GetXattr", err)
	}
	return v.Value, nil
}

func (n *NamespaceClient) ListXattrs(ctx context.Context, path string) ([]string, error) {
	v, err := n.c.ListXattrs(ctx, &pb.PathRequest{Path: path})
	if err != nil {
		return nil, fromStatus("rpc.ListXattrs", err)
	}
	return v.Names, nil
}

func (n *NamespaceClient) RemoveXattr(ctx context.Context, path, name string) error {
	_, err := n.c.RemoveXattr(ctx, &pb.XattrRequest{Path: path, Name: name})
	return fromStatus("rpc.RemoveXattr", err)
}

func (n *NamespaceClient) ContentSummary(ctx context.Context, path string) (cairn.ContentSummary, error) {
	v, err := n.c.GetContentSummary(ctx, &pb.PathRequest{Path: path})
	if err != nil {
		return cairn.ContentSummary{}, fromStatus("rpc.ContentSummary", err)
	}
	return cairn.ContentSummary{Length: v.Length, Files: v.Files, Dirs: v.Dirs, SpaceConsumed: v.SpaceConsumed}, nil
}

func (n *NamespaceClient) Append(ctx context.Context, path, client string) (cairn.FileInfo, *cairn.LocatedBlock, error) {
	r, err := n.c.Append(ctx, &pb.AppendRequest{Path: path, Client: client})
	if err != nil {
		return cairn.FileInfo{}, nil, fromStatus("rpc.Append", err)
	}
	var last *cairn.LocatedBlock
	if r.Last != nil {
		lb := fromPBLocated(r.Last)
		last = &lb
	}
	return fromPBFileInfo(r.Info), last, nil
}

func (n *NamespaceClient) RenewLease(ctx context.Context, client string) error {
	_, err := n.c.RenewLease(ctx, &pb.LeaseRequest{Client: client})
	return fromStatus("rpc.RenewLease", err)
}

func (n *NamespaceClient) AbandonBlock(ctx context.Context, w cairn.WriterRef, b cairn.Block) error {
	_, err := n.c.AbandonBlock(ctx, &pb.BlockRequest{Path: w.Path, Client: w.Client, FileId: w.FileID, Block: toPBBlock(&b)})
	return fromStatus("rpc.AbandonBlock", err)
}

func (n *NamespaceClient) Fsync(ctx context.Context, w cairn.WriterRef, b cairn.Block) error {
	_, err := n.c.Fsync(ctx, &pb.BlockRequest{Path: w.Path, Client: w.Client, FileId: w.FileID, Block: toPBBlock(&b)})
	return fromStatus("rpc.Fsync", err)
}

func (n *NamespaceClient) UpdateBlockForPipeline(ctx context.Context, w cairn.WriterRef, b cairn.Block) (cairn.LocatedBlock, error) {
	r, err := n.c.UpdateBlockForPipeline(ctx, &pb.BlockRequest{Path: w.Path, Client: w.Client, FileId: w.FileID, Block: toPBBlock(&b)})
	if err != nil {
		return cairn.LocatedBlock{}, fromStatus("rpc.UpdateBlockForPipeline", err)
	}
	b.GenStamp = cairn.GenStamp(r.GenStamp)
	return cairn.LocatedBlock{Block: b, Token: r.Token}, nil
}

func (n *NamespaceClient) UpdatePipeline(ctx context.Context, w cairn.WriterRef, old, updated cairn.Block, nodes []cairn.Node) error {
	_, err := n.c.UpdatePipeline(ctx, &pb.UpdatePipelineRequest{Path: w.Path, Client: w.Client, FileId: w.FileID, Old: toPBBlock(&old), Updated: toPBBlock(&updated), Nodes: ToPBNodes(nodes)})
	return fromStatus("rpc.UpdatePipeline", err)
}

func (n *NamespaceClient) AdditionalNode(ctx context.Context, w cairn.WriterRef, b cairn.Block, existing, excluded []cairn.Node) (cairn.Node, error) {
	r, err := n.c.AdditionalNode(ctx, &pb.AdditionalNodeRequest{Path: w.Path, Client: w.Client, FileId: w.FileID, Block: toPBBlock(&b), Existing: ToPBNodes(existing), Excluded: ToPBNodes(excluded)})
	if err != nil {
		return cairn.Node{}, fromStatus("rpc.AdditionalNode", err)
	}
	return FromPBNode(r), nil
}

func toPBBad(bad []cairn.BadReplica) *pb.BadReplicas {
	out := &pb.BadReplicas{}
	for i := range bad {
		out.Replicas = append(out.Replicas, &pb.BadReplica{Block: toPBBlock(&bad[i].Block), StorageId: bad[i].StorageID, Reason: bad[i].Reason})
	}
	return out
}

func fromPBBad(r *pb.BadReplicas) []cairn.BadReplica {
	out := make([]cairn.BadReplica, len(r.Replicas))
	for i, b := range r.Replicas {
		out[i] = cairn.BadReplica{Block: fromPBBlock(b.Block), StorageID: b.StorageId, Reason: b.Reason}
	}
	return out
}

func (n *NamespaceClient) ReportBadReplicas(ctx context.Context, bad []cairn.BadReplica) error {
	_, err := n.c.ReportBadReplicas(ctx, toPBBad(bad))
	return fromStatus("rpc.ReportBadReplicas", err)
}

func (n *NamespaceClient) Checkpoint(ctx context.Context, dir string) error {
	_, err := n.c.Checkpoint(ctx, &pb.CheckpointRequest{Dir: dir})
	return fromStatus("rpc.Checkpoint", err)
}

func (n *NamespaceClient) SafeMode(ctx context.Context, action cairn.SafeModeAction) (cairn.SafeModeStatus, error) {
	r, err := n.c.SafeMode(ctx, &pb.SafeModeRequest{Action: uint32(action)})
	if err != nil {
		return cairn.SafeModeStatus{}, fromStatus("rpc.SafeMode", err)
	}
	return cairn.SafeModeStatus{
		On: r.On, Manual: r.Manual, Total: int(r.Total), Reported: int(r.Reported), Needed: int(r.Needed),
		LeavesIn: time.Duration(r.LeavesInMs) * time.Millisecond, Message: r.Message,
	}, nil
}

// Server side.

func (s *namespaceServer) SetAttr(ctx context.Context, r *pb.SetAttrRequest) (*pb.FileInfo, error) {
	var a cairn.Attr
	if r.Perm != nil {
		v := fs.FileMode(*r.Perm)
		a.Perm = &v
	}
	a.Owner, a.Group = r.Owner, r.Group
	if r.MtimeNs != nil {
		v := time.Unix(0, *r.MtimeNs)
		a.ModTime = &v
	}
	if r.AtimeNs != nil {
		v := time.Unix(0, *r.AtimeNs)
		a.AccessTime = &v
	}
	if r.Replication != nil {
		v := int(*r.Replication)
		a.Replication = &v
	}
	a.TimesNow = r.TimesNow
	fi, err := s.ns.SetAttr(ctx, r.Path, a)
	if err != nil {
		return nil, toStatus(err)
	}
	return toPBFileInfo(fi), nil
}

func (s *namespaceServer) Link(ctx context.Context, r *pb.LinkRequest) (*pb.Empty, error) {
	return empty, toStatus(s.ns.Link(ctx, r.Src, r.Dst))
}

func (s *namespaceServer) Concat(ctx context.Context, r *pb.ConcatRequest) (*pb.Empty, error) {
	return empty, toStatus(s.ns.Concat(ctx, r.Target, r.Sources))
}

func (s *namespaceServer) Symlink(ctx context.Context, r *pb.SymlinkRequest) (*pb.Empty, error) {
	return empty, toStatus(s.ns.Symlink(ctx, r.Target, r.Path))
}

func (s *namespaceServer) Mknod(ctx context.Context, r *pb.MknodRequest) (*pb.Empty, error) {
	return empty, toStatus(s.ns.Mknod(ctx, r.Path, fs.FileMode(r.Mode), r.Rdev))
}

func (s *namespaceServer) Access(ctx context.Context, r *pb.AccessRequest) (*pb.FileInfo, error) {
	if r.Mode&^7 != 0 {
		return nil, toStatus(cairn.E("rpc.Access", cairn.KindInvalid, r.Path, "access mode beyond rwx"))
	}
	fi, err := s.ns.Access(ctx, r.Path, cairn.AccessMode(r.Mode))
	if err != nil {
		return nil, toStatus(err)
	}
	return toPBFileInfo(fi), nil
}

func (s *namespaceServer) SetXattr(ctx context.Context, r *pb.XattrRequest) (*pb.Empty, error) {
	return empty, toStatus(s.ns.SetXattr(ctx, r.Path, r.Name, r.Value, cairn.XattrFlags(r.Flags)))
}

func (s *namespaceServer) GetXattr(ctx context.Context, r *pb.XattrRequest) (*pb.XattrValue, error) {
	v, err := s.ns.GetXattr(ctx, r.Path, r.Name)
	if err != nil {
		return nil, toStatus(err)
	}
	return &pb.XattrValue{Value: v}, nil
}

func (s *namespaceServer) ListXattrs(ctx context.Context, r *pb.PathRequest) (*pb.XattrNames, error) {
	v, err := s.ns.ListXattrs(ctx, r.Path)
	if err != nil {
		return nil, toStatus(err)
	}
	return &pb.XattrNames{Names: v}, nil
}

func (s *namespaceServer) RemoveXattr(ctx context.Context, r *pb.XattrRequest) (*pb.Empty, error) {
	return empty, toStatus(s.ns.RemoveXattr(ctx, r.Path, r.Name))
}

func (s *namespaceServer) GetContentSummary(ctx context.Context, r *pb.PathRequest) (*pb.ContentSummary, error) {
	c, err := s.ns.ContentSummary(ctx, r.Path)
	if err != nil {
		return nil, toStatus(err)
	}
	return &pb.ContentSummary{Length: c.Length, Files: c.Files, Dirs: c.Dirs, SpaceConsumed: c.SpaceConsumed}, nil
}

func (s *namespaceServer) Append(ctx context.Context, r *pb.AppendRequest) (*pb.AppendReply, error) {
	fi, last, err := s.ns.Append(ctx, r.Path, r.Client)
	if err != nil {
		return nil, toStatus(err)
	}
	out := &pb.AppendReply{Info: toPBFileInfo(fi)}
	if last != nil {
		out.Last = toPBLocated(*last)
	}
	return out, nil
}

func (s *namespaceServer) RenewLease(ctx context.Context, r *pb.LeaseRequest) (*pb.Empty, error) {
	return empty, toStatus(s.ns.RenewLease(ctx, r.Client))
}

func (s *namespaceServer) AbandonBlock(ctx context.Context, r *pb.BlockRequest) (*pb.Empty, error) {
	return empty, toStatus(s.ns.AbandonBlock(ctx, writerRef(r.FileId, r.Path, r.Client), fromPBBlock(r.Block)))
}

func (s *namespaceServer) Fsync(ctx context.Context, r *pb.BlockRequest) (*pb.Empty, error) {
	return empty, toStatus(s.ns.Fsync(ctx, writerRef(r.FileId, r.Path, r.Client), fromPBBlock(r.Block)))
}

func (s *namespaceServer) UpdateBlockForPipeline(ctx context.Context, r *pb.BlockRequest) (*pb.GenStampReply, error) {
	lb, err := s.ns.UpdateBlockForPipeline(ctx, writerRef(r.FileId, r.Path, r.Client), fromPBBlock(r.Block))
	if err != nil {
		return nil, toStatus(err)
	}
	return &pb.GenStampReply{GenStamp: uint64(lb.GenStamp), Token: lb.Token}, nil
}

func (s *namespaceServer) UpdatePipeline(ctx context.Context, r *pb.UpdatePipelineRequest) (*pb.Empty, error) {
	return empty, toStatus(s.ns.UpdatePipeline(ctx, writerRef(r.FileId, r.Path, r.Client), fromPBBlock(r.Old), fromPBBlock(r.Updated), FromPBNodes(r.Nodes)))
}

func (s *namespaceServer) AdditionalNode(ctx context.Context, r *pb.AdditionalNodeRequest) (*pb.Node, error) {
	n, err := s.ns.AdditionalNode(ctx, writerRef(r.FileId, r.Path, r.Client), fromPBBlock(r.Block), FromPBNodes(r.Existing), FromPBNodes(r.Excluded))
	if err != nil {
		return nil, toStatus(err)
	}
	return ToPBNode(n), nil
}

func (s *namespaceServer) ReportBadReplicas(ctx context.Context, r *pb.BadReplicas) (*pb.Empty, error) {
	return empty, toStatus(s.ns.ReportBadReplicas(ctx, fromPBBad(r)))
}

func (s *namespaceServer) Checkpoint(ctx context.Context, r *pb.CheckpointRequest) (*pb.Empty, error) {
	return empty, toStatus(s.ns.Checkpoint(ctx, r.Dir))
}

func (s *namespaceServer) SafeMode(ctx context.Context, r *pb.SafeModeRequest) (*pb.SafeModeReply, error) {
	st, err := s.ns.SafeMode(ctx, cairn.SafeModeAction(r.Action))
	if err != nil {
		return nil, toStatus(err)
	}
	return &pb.SafeModeReply{
		On: st.On, Manual: st.Manual, Total: int64(st.Total), Reported: int64(st.Reported), Needed: int64(st.Needed),
		LeavesInMs: st.LeavesIn.Milliseconds(), Message: st.Message,
	}, nil
}

// Registry additions.

// BadReplicasFound travels as the Registry's ReportBadReplicas, with the
// reporting blockd's storage ID.
func (r *RegistryClient) BadReplicasFound(ctx context.Context, storageID string, bad []cairn.BadReplica) error {
	m := toPBBad(bad)
	m.Reporter = storageID
	_, err := r.c.ReportBadReplicas(ctx, m)
	return fromStatus("rpc.BadReplicasFound", err)
}

func (s *registryServer) ReportBadReplicas(ctx context.Context, r *pb.BadReplicas) (*pb.Empty, error) {
	return empty, toStatus(s.r.BadReplicasFound(ctx, r.Reporter, fromPBBad(r)))
}
