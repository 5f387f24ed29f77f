package blockd

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"time"

	"go.uber.org/zap"

	"cairn"
	"cairn/rpc"
	"cairn/rpc/pb"
	"cairn/xfer"
)

// serveInitRecovery answers INIT_RECOVERY: the replica, as it was before
// this recovery claimed it.
func (d *Blockd) serveInitRecovery(bw *bufio.Writer, h *pb.OpHeader) {
	b := rpc.FromPBBlock(h.Block)
	r, err := d.store.InitRecovery(b, cairn.GenStamp(h.NewGenStamp))
	if err != nil {
		replyErr(bw, noSpace(err), err.Error())
		return
	}
	_ = reply(bw, &pb.OpReply{BlockLen: r.Len, ReplicaState: int32(r.State), GenStamp: uint64(r.GenStamp)})
}

// serveUpdateRecovery answers UPDATE_RECOVERY: the replica cut to
// h.Length and finalized at the recovery's stamp, reported to metad.
func (d *Blockd) serveUpdateRecovery(bw *bufio.Writer, h *pb.OpHeader) {
	fin, err := d.updateRecovery(rpc.FromPBBlock(h.Block), cairn.GenStamp(h.NewGenStamp), h.Length)
	if err != nil {
		replyErr(bw, noSpace(err), err.Error())
		return
	}
	_ = reply(bw, &pb.OpReply{BlockLen: fin.Len, ReplicaState: int32(cairn.ReplicaFinalized), GenStamp: uint64(fin.GenStamp)})
}

func (d *Blockd) updateRecovery(b cairn.Block, rid cairn.GenStamp, newLen int64) (cairn.Block, error) {
	fin, err := d.store.UpdateRecovery(b, rid, newLen)
	if err != nil {
		return fin, err
	}
	d.reportReceived(fin)
	return fin, nil
}

// serveVerify answers VERIFY_BLOCK: status 0 when the replica is sound,
// otherwise why it is not.
func (d *Blockd) serveVerify(bw *bufio.Writer, h *pb.OpHeader) {
	r, reason, err := d.store.Verify(cairn.BlockID(h.Block.Id))
	if err != nil {
		replyErr(bw, noSpace(err), err.Error())
		return
	}
	rep := &pb.OpReply{BlockLen: r.Len, ReplicaState: int32(r.State), GenStamp: uint64(r.GenStamp)}
	if reason != "" {
		rep.Status, rep.Message = uint32(cairn.KindIO), reason
		d.log.Warn("replica failed verification", zap.Stringer("block", r.Block), zap.Stringer("state", r.State), zap.String("reason", reason))
	}
	_ = reply(bw, rep)
}

// initRecoveryOn is INIT_RECOVERY on node: this blockd's own replica
// directly, another's over the data stream.
func (d *Blockd) initRecoveryOn(ctx context.Context, node cairn.Node, b cairn.Block, rid cairn.GenStamp, token []byte) (cairn.Replica, error) {
	if node.StorageID == d.node.StorageID {
		return d.store.InitRecovery(b, rid)
	}
	rep, err := d.callPeer(ctx, node, &pb.OpHeader{Op: pb.OpHeader_INIT_RECOVERY, Block: rpc.ToPBBlock(&b), NewGenStamp: uint64(rid), Token: token})
	if err != nil {
		return cairn.Replica{}, err
	}
	st := cairn.ReplicaState(rep.ReplicaState)
	if st < cairn.ReplicaFinalized || st > cairn.ReplicaRUR || rep.BlockLen < 0 {
		return cairn.Replica{}, cairn.E("blockd.InitRecovery", cairn.KindIO, b.String(), fmt.Sprintf("%s answered state %d, length %d", node.DataAddr, rep.ReplicaState, rep.BlockLen))
	}
	return cairn.Replica{Block: cairn.Block{ID: b.ID, GenStamp: cairn.GenStamp(rep.GenStamp), Len: rep.BlockLen}, State: st}, nil
}

// updateRecoveryOn is UPDATE_RECOVERY on node.
func (d *Blockd) updateRecoveryOn(ctx context.Context, node cairn.Node, b cairn.Block, rid cairn.GenStamp, newLen int64, token []byte) (cairn.Block, error) {
	if node.StorageID == d.node.StorageID {
		return d.updateRecovery(b, rid, newLen)
	}
	rep, err := d.callPeer(ctx, node, &pb.OpHeader{Op: pb.OpHeader_UPDATE_RECOVERY, Block: rpc.ToPBBlock(&b), NewGenStamp: uint64(rid), Length: newLen, Token: token})
	if err != nil {
		return cairn.Block{}, err
	}
	if rep.BlockLen != newLen || cairn.GenStamp(rep.GenStamp) != rid {
		return cairn.Block{}, cairn.E("blockd.UpdateRecovery", cairn.KindIO, b.String(), fmt.Sprintf("%s finalized %d bytes at stamp %d, not %d at %d", node.DataAddr, rep.BlockLen, rep.GenStamp, newLen, rid))
	}
	return cairn.Block{ID: b.ID, GenStamp: rid, Len: newLen}, nil
}

// callPeer is callOp to another blockd, over TLS when the cluster
// encrypts block data.
func (d *Blockd) callPeer(ctx context.Context, node cairn.Node, h *pb.OpHeader) (*pb.OpReply, error) {
	return callOpDial(ctx, d.dial, node, h)
}

// callOp is callOpDial over plain TCP.
func callOp(ctx context.Context, node cairn.Node, h *pb.OpHeader) (*pb.OpReply, error) {
	return callOpDial(ctx, func(ctx context.Context, addr string, timeout time.Duration) (net.Conn, error) {
		return xfer.Dial(ctx, addr, timeout, nil)
	}, node, h)
}

// callOpDial sends one op that is answered by a single reply, and returns
// the reply; a reply with an error status is returned as an error of its
// kind.
func callOpDial(ctx context.Context, dial func(context.Context, string, time.Duration) (net.Conn, error), node cairn.Node, h *pb.OpHeader) (*pb.OpReply, error) {
	op := "blockd." + h.Op.String()
	c, err := dial(ctx, node.DataAddr, dialTimeout)
	if err != nil {
		return nil, cairn.E(op, cairn.KindUnavailable, node.DataAddr, err.Error())
	}
	defer c.Close()
	deadline := time.Now().Add(recoveryOpTimeout)
	if dl, ok := ctx.Deadline(); ok && dl.Before(deadline) {
		deadline = dl
	}
	_ = c.SetDeadline(deadline)
	bw := xfer.NewBufferedWriter(c)
	if err := xfer.WriteOp(bw, h); err != nil {
		return nil, cairn.E(op, cairn.KindIO, node.DataAddr, err.Error())
	}
	if err := bw.Flush(); err != nil {
		return nil, cairn.E(op, cairn.KindIO, node.DataAddr, err.Error())
	}
	rep, err := xfer.ReadReply(xfer.NewBufferedReader(c))
	if err != nil {
		return nil, cairn.E(op, cairn.KindIO, node.DataAddr, err.Error())
	}
	if rep.Status != 0 {
		kind := cairn.KindIO
		if rep.Status <= uint32(cairn.KindUnavailable) {
			kind = cairn.Kind(rep.Status)
		}
		return nil, cairn.E(op, kind, node.StorageID, rep.Message)
	}
	return rep, nil
}
