// Package rpc carries cairn's services over gRPC: conversions between the
// types of package cairn and the wire messages of rpc/pb, typed errors in
// gRPC statuses, remote stubs that satisfy cairn.Namespace and
// cairn.Registry, and server adapters that serve any implementation of them.
package rpc

import (
	"fmt"
	"io/fs"
	"time"

	"cairn"
	"cairn/rpc/pb"
)

func toPBBlock(b *cairn.Block) *pb.Block {
	if b == nil {
		return nil
	}
	return &pb.Block{Id: uint64(b.ID), GenStamp: uint64(b.GenStamp), Len: b.Len}
}

func fromPBBlock(b *pb.Block) cairn.Block {
	return cairn.Block{ID: cairn.BlockID(b.GetId()), GenStamp: cairn.GenStamp(b.GetGenStamp()), Len: b.GetLen()}
}

func fromPBBlockPtr(b *pb.Block) *cairn.Block {
	if b == nil {
		return nil
	}
	c := fromPBBlock(b)
	return &c
}

// ToPBBlocks converts a block list for the wire.
func ToPBBlocks(bs []cairn.Block) []*pb.Block {
	out := make([]*pb.Block, len(bs))
	for i := range bs {
		out[i] = toPBBlock(&bs[i])
	}
	return out
}

// FromPBBlocks converts a block list from the wire.
func FromPBBlocks(bs []*pb.Block) []cairn.Block {
	out := make([]cairn.Block, len(bs))
	for i, b := range bs {
		out[i] = fromPBBlock(b)
	}
	return out
}

// ToPBReplicas converts a replica list for the wire.
func ToPBReplicas(rs []cairn.Replica) []*pb.Replica {
	out := make([]*pb.Replica, len(rs))
	for i := range rs {
		out[i] = &pb.Replica{Block: toPBBlock(&rs[i].Block), State: int32(rs[i].State)}
	}
	return out
}

// FromPBReplicas converts a replica list from the wire; a replica without
// a block or with an unknown state is refused (ErrInvalid).
func FromPBReplicas(op string, rs []*pb.Replica) ([]cairn.Replica, error) {
	out := make([]cairn.Replica, len(rs))
	for i, r := range rs {
		st := cairn.ReplicaState(r.GetState())
		if r.GetBlock() == nil || st < cairn.ReplicaFinalized || st > cairn.ReplicaRUR {
			return nil, cairn.E(op, cairn.KindInvalid, "", fmt.Sprintf("replica %d: no block or unknown state %d", i, r.GetState()))
		}
		out[i] = cairn.Replica{Block: fromPBBlock(r.Block), State: st}
	}
	return out, nil
}

// ToPBNode converts a node for the wire.
func ToPBNode(n cairn.Node) *pb.Node {
	return &pb.Node{StorageId: n.StorageID, DataAddr: n.DataAddr, HttpAddr: n.HTTPAddr, Rack: n.Rack}
}

// FromPBNode converts a node from the wire.
func FromPBNode(n *pb.Node) cairn.Node {
	return cairn.Node{StorageID: n.GetStorageId(), DataAddr: n.GetDataAddr(), HTTPAddr: n.GetHttpAddr(), Rack: n.GetRack()}
}

// ToPBNodes converts nodes for the wire.
func ToPBNodes(ns []cairn.Node) []*pb.Node {
	out := make([]*pb.Node, len(ns))
	for i, n := range ns {
		out[i] = ToPBNode(n)
	}
	return out
}

// FromPBNodes converts nodes from the wire.
func FromPBNodes(ns []*pb.Node) []cairn.Node {
	out := make([]cairn.Node, len(ns))
	for i, n := range ns {
		out[i] = FromPBNode(n)
	}
	return out
}

// ToPBBlock converts one block for the wire (nil stays nil).
func ToPBBlock(b *cairn.Block) *pb.Block { return toPBBlock(b) }

// FromPBBlock converts one block from the wire (nil gives the zero block).
func FromPBBlock(b *pb.Block) cairn.Block { return fromPBBlock(b) }

func toPBLocated(lb cairn.LocatedBlock) *pb.LocatedBlock {
	return &pb.LocatedBlock{Block: toPBBlock(&lb.Block), Offset: lb.Offset, Locations: ToPBNodes(lb.Locations), Corrupt: int32(lb.Corrupt), Token: lb.Token}
}

func fromPBLocated(lb *pb.LocatedBlock) cairn.LocatedBlock {
	return cairn.LocatedBlock{Block: fromPBBlock(lb.GetBlock()), Offset: lb.GetOffset(), Locations: FromPBNodes(lb.GetLocations()), Corrupt: int(lb.GetCorrupt()), Token: lb.GetToken()}
}

func nanos(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

func fromNanos(n int64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n)
}

func toPBFileInfo(fi cairn.FileInfo) *pb.FileInfo {
	return &pb.FileInfo{
		Name: fi.Name, Inode: fi.Inode, Mode: uint32(fi.Mode), Size: fi.Size,
		Owner: fi.Owner, Group: fi.Group, MtimeNs: nanos(fi.ModTime), AtimeNs: nanos(fi.AccessTime),
		Replication: int32(fi.Replication), BlockSize: fi.BlockSize, Writing: fi.Writing, Symlink: fi.Symlink,
		CtimeNs: nanos(fi.ChangeTime), Nlink: uint32(max(fi.Nlink, 0)), Rdev: fi.Rdev,
	}
}

func fromPBFileInfo(fi *pb.FileInfo) cairn.FileInfo {
	return cairn.FileInfo{
		Name: fi.GetName(), Inode: fi.GetInode(), Mode: fs.FileMode(fi.GetMode()), Size: fi.GetSize(),
		Owner: fi.GetOwner(), Group: fi.GetGroup(), ModTime: fromNanos(fi.GetMtimeNs()), AccessTime: fromNanos(fi.GetAtimeNs()),
		Replication: int(fi.GetReplication()), BlockSize: fi.GetBlockSize(), Writing: fi.GetWriting(), Symlink: fi.GetSymlink(),
		ChangeTime: fromNanos(fi.GetCtimeNs()), Nlink: int(fi.GetNlink()), Rdev: fi.GetRdev(),
	}
}

// ToPBKeys converts block token keys for the wire.
func ToPBKeys(keys []cairn.BlockKey) []*pb.BlockKey {
	out := make([]*pb.BlockKey, len(keys))
	for i, k := range keys {
		out[i] = &pb.BlockKey{Id: k.ID, Secret: k.Secret, ExpiryMs: k.Expiry.UnixMilli()}
	}
	return out
}

// FromPBKeys converts block token keys from the wire.
func FromPBKeys(keys []*pb.BlockKey) []cairn.BlockKey {
	out := make([]cairn.BlockKey, len(keys))
	for i, k := range keys {
		out[i] = cairn.BlockKey{ID: k.GetId(), Secret: k.GetSecret(), Expiry: time.UnixMilli(k.GetExpiryMs())}
	}
	return out
}
