package blockd

import (
	"bytes"
	"io"
	"net"
	"testing"

	"go.uber.org/zap"

	"cairn"
	"cairn/blocktoken"
	"cairn/rpc"
	"cairn/rpc/pb"
	"cairn/xfer"
)

// FuzzRecoveryOps sends arbitrary INIT_RECOVERY, UPDATE_RECOVERY and
// VERIFY_BLOCK openings to a blockd's data stream handler. None may panic,
// and whatever they do, every replica the blockd then holds must verify
// against its .meta.
func FuzzRecoveryOps(f *testing.F) {
	seed := func(h *pb.OpHeader) {
		var b bytes.Buffer
		_ = xfer.WriteOp(&b, h)
		f.Add(b.Bytes())
	}
	blk := cairn.Block{ID: recBlock.ID, GenStamp: 1001}
	rec := testToken(f, blk.ID, 1001, 1010, blocktoken.Recover)
	seed(&pb.OpHeader{Op: pb.OpHeader_INIT_RECOVERY, Block: rpc.ToPBBlock(&blk), NewGenStamp: 1010, Token: rec})
	seed(&pb.OpHeader{Op: pb.OpHeader_UPDATE_RECOVERY, Block: rpc.ToPBBlock(&blk), NewGenStamp: 1010, Length: 1000, Token: rec})
	seed(&pb.OpHeader{Op: pb.OpHeader_UPDATE_RECOVERY, Block: rpc.ToPBBlock(&blk), NewGenStamp: 1010, Length: 1 << 40, Token: rec})
	seed(&pb.OpHeader{Op: pb.OpHeader_VERIFY_BLOCK, Block: rpc.ToPBBlock(&blk), Token: testToken(f, blk.ID, 1001, 1001, blocktoken.Read)})
	seed(&pb.OpHeader{Op: pb.OpHeader_INIT_RECOVERY, Block: rpc.ToPBBlock(&blk), NewGenStamp: 1010})

	dir := f.TempDir()
	s, err := OpenStore(dir, zap.NewNop())
	if err != nil {
		f.Fatal(err)
	}
	rbwOf(f, 1001, 2500)(s)
	s.Close()
	d, err := New(Config{Dir: dir, MetadAddr: "127.0.0.1:1", ScanPeriod: -1, Insecure: true})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(d.Close)
	d.metad = &recordingMetad{}
	d.keys.Update([]cairn.BlockKey{testKey})
	f.Fuzz(func(t *testing.T, opening []byte) {
		h, err := xfer.ReadOp(bytes.NewReader(opening))
		if err != nil {
			return
		}
		switch h.Op {
		case pb.OpHeader_INIT_RECOVERY, pb.OpHeader_UPDATE_RECOVERY, pb.OpHeader_VERIFY_BLOCK:
		default:
			return // the other ops dial peers and are fuzzed in xfer
		}
		client, server := net.Pipe()
		go func() { _, _ = io.Copy(io.Discard, client) }()
		go func() { _, _ = client.Write(opening) }()
		d.handle(server)
		_ = server.Close()
		_ = client.Close()
		for _, r := range d.store.Report() {
			if _, reason, err := d.store.Verify(r.ID); err != nil || reason != "" {
				t.Fatalf("after %v: replica %v %s: %q %v", h, r.Block, r.State, reason, err)
			}
		}
	})
}
