package blockd

import (
	"net"
	"time"

	"go.uber.org/zap"

	"cairn"
	"cairn/blocktoken"
	"cairn/rpc/pb"
)

// Every op on the data port carries a block access token signed by metad
// (package blocktoken); the blockd checks it against what the op does
// before anything else, and refuses the op with KindAccess (or KindRetry
// while it has no keys from metad yet).

// setKeys takes the block token keys metad at addr sent (each member of
// a group has its own: a token signed by any of them holds).
func (d *Blockd) setKeys(addr string, keys []cairn.BlockKey) {
	first := !d.keys.Ready()
	d.keys.UpdateFrom(addr, keys)
	if first {
		d.log.Info("block token keys received", zap.String("metad", addr), zap.Int("keys", len(keys)))
	}
}

// opWant is what op h needs of its token: its block, every generation
// stamp it names, and its mode.
func opWant(h *pb.OpHeader) blocktoken.Want {
	w := blocktoken.Want{Block: cairn.BlockID(h.Block.Id), Stamps: []cairn.GenStamp{cairn.GenStamp(h.Block.GenStamp)}}
	switch h.Op {
	case pb.OpHeader_READ_BLOCK, pb.OpHeader_VERIFY_BLOCK, pb.OpHeader_BLOCK_CHECKSUM:
		w.Mode = blocktoken.Read
	case pb.OpHeader_WRITE_BLOCK:
		w.Mode = blocktoken.Write
		if h.Stage == pb.OpHeader_COPY {
			w.Mode = blocktoken.Replace
		}
	case pb.OpHeader_TRANSFER_BLOCK:
		w.Mode = blocktoken.Copy
		w.Stamps = append(w.Stamps, cairn.GenStamp(h.NewGenStamp))
	case pb.OpHeader_INIT_RECOVERY, pb.OpHeader_UPDATE_RECOVERY:
		w.Mode = blocktoken.Recover
		w.Stamps = append(w.Stamps, cairn.GenStamp(h.NewGenStamp))
	default:
		w.Mode = blocktoken.Read | blocktoken.Write | blocktoken.Copy | blocktoken.Replace | blocktoken.Recover
	}
	return w
}

// authorize checks op h's token; a refusal is logged with the peer and
// what it asked, and returned for the reply.
func (d *Blockd) authorize(peer net.Addr, h *pb.OpHeader) error {
	if d.cfg.SkipTokenCheck {
		return nil
	}
	t, err := d.keys.Check(h.Token, time.Now(), opWant(h))
	if err == nil {
		return nil
	}
	fields := []zap.Field{zap.Stringer("peer", peer), zap.Stringer("op", h.Op), zap.Uint64("block", h.Block.Id),
		zap.Uint64("gen_stamp", h.Block.GenStamp), zap.Stringer("stage", h.Stage), zap.String("client", h.Client), zap.Error(err)}
	if t.KeyID != 0 {
		fields = append(fields, zap.String("token_user", t.User), zap.Uint32("token_key", t.KeyID))
	}
	if cairn.KindOf(err) == cairn.KindRetry {
		d.log.Info("data op refused until block token keys come from metad", fields...)
	} else {
		d.log.Warn("data op refused: block token", fields...)
	}
	return err
}
