package blockd

import (
	"context"
	"math"
	"testing"

	"cairn"
	"cairn/blocktoken"
	"cairn/rpc"
	"cairn/rpc/pb"
)

// TestEveryOpNeedsItsToken: each op on the data port is refused without a
// token and with a token of another mode, and passes the check with its
// own (what it then does is other tests' business).
func TestEveryOpNeedsItsToken(t *testing.T) {
	d := startBlockd(t, &recordingMetad{}, finalizedOf(t, 3000))
	blk := rpc.ToPBBlock(&recBlock)
	next := recBlock.GenStamp + 5
	ops := []struct {
		h    *pb.OpHeader
		mode blocktoken.Mode
	}{
		{&pb.OpHeader{Op: pb.OpHeader_READ_BLOCK, Block: blk}, blocktoken.Read},
		{&pb.OpHeader{Op: pb.OpHeader_VERIFY_BLOCK, Block: blk}, blocktoken.Read},
		{&pb.OpHeader{Op: pb.OpHeader_WRITE_BLOCK, Block: blk, Stage: pb.OpHeader_APPEND, ChunkSize: 512, KeepLen: 3000}, blocktoken.Write},
		{&pb.OpHeader{Op: pb.OpHeader_WRITE_BLOCK, Block: blk, Stage: pb.OpHeader_RECOVERY, ChunkSize: 512}, blocktoken.Write},
		{&pb.OpHeader{Op: pb.OpHeader_WRITE_BLOCK, Block: blk, Stage: pb.OpHeader_COPY, ChunkSize: 512}, blocktoken.Replace},
		{&pb.OpHeader{Op: pb.OpHeader_TRANSFER_BLOCK, Block: blk, NewGenStamp: uint64(next), Targets: []*pb.Node{rpc.ToPBNode(d.node)}}, blocktoken.Copy},
		{&pb.OpHeader{Op: pb.OpHeader_INIT_RECOVERY, Block: blk, NewGenStamp: uint64(next)}, blocktoken.Recover},
		{&pb.OpHeader{Op: pb.OpHeader_UPDATE_RECOVERY, Block: blk, NewGenStamp: uint64(next)}, blocktoken.Recover},
	}
	for _, o := range ops {
		if got := opWant(o.h); got.Mode != o.mode {
			t.Errorf("%v %v needs %v, want %v", o.h.Op, o.h.Stage, got.Mode, o.mode)
		}
		o.h.Token = nil
		if _, err := callOp(context.Background(), d.node, o.h); cairn.KindOf(err) != cairn.KindAccess {
			t.Errorf("%v %v without a token: %v, want KindAccess", o.h.Op, o.h.Stage, err)
		}
		all := blocktoken.Read | blocktoken.Write | blocktoken.Copy | blocktoken.Replace | blocktoken.Recover
		o.h.Token = testToken(t, recBlock.ID, recBlock.GenStamp, next, all&^o.mode)
		if _, err := callOp(context.Background(), d.node, o.h); cairn.KindOf(err) != cairn.KindAccess {
			t.Errorf("%v %v with a token for every other mode: %v, want KindAccess", o.h.Op, o.h.Stage, err)
		}
		if err := d.authorize(nil, withToken(o.h, testToken(t, recBlock.ID, recBlock.GenStamp, next, o.mode))); err != nil {
			t.Errorf("%v %v with its token: %v", o.h.Op, o.h.Stage, err)
		}
	}
	recoveredAs(t, d, recBlock.GenStamp, 3000) // refused ops changed nothing
}

func withToken(h *pb.OpHeader, tok []byte) *pb.OpHeader { h.Token = tok; return h }

// TestNoKeysYetIsRetry: a blockd that has no keys from metad yet refuses
// every op as retryable.
func TestNoKeysYetIsRetry(t *testing.T) {
	d := startBlockd(t, &recordingMetad{}, finalizedOf(t, 3000))
	d.keys = blocktoken.KeySet{}
	_, err := callOp(context.Background(), d.node, &pb.OpHeader{Op: pb.OpHeader_READ_BLOCK, Block: rpc.ToPBBlock(&recBlock),
		Token: testToken(t, recBlock.ID, recBlock.GenStamp, recBlock.GenStamp, blocktoken.Read)})
	if cairn.KindOf(err) != cairn.KindRetry {
		t.Fatalf("%v, want KindRetry", err)
	}
}

// TestReadRangeCannotOverflow: offset 1 and length 2^63-1 add up past
// int64: the read is refused as invalid, and the replica is not taken
// for a bad one.
func TestReadRangeCannotOverflow(t *testing.T) {
	d := startBlockd(t, &recordingMetad{}, finalizedOf(t, 3000))
	_, err := callOp(context.Background(), d.node, &pb.OpHeader{Op: pb.OpHeader_READ_BLOCK, Block: rpc.ToPBBlock(&recBlock),
		Offset: 1, Length: math.MaxInt64, Token: testToken(t, recBlock.ID, recBlock.GenStamp, recBlock.GenStamp, blocktoken.Read)})
	if cairn.KindOf(err) != cairn.KindInvalid {
		t.Fatalf("%v, want KindInvalid", err)
	}
	if _, reason, err := d.store.Verify(recBlock.ID); err != nil || reason != "" {
		t.Fatalf("replica after the read: %q %v", reason, err)
	}
}
