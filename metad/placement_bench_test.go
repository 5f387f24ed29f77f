package metad

import (
	"context"
	"fmt"
	"io"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"cairn"
)

// BenchmarkPlaceCopy places one copy of a block with two live replicas
// among 1,000 blockds on 20 racks, logging at INFO as metad does: with a
// snapshot of the blockds taken for each copy and a line logged per block
// (what scheduleCopies did), and with one snapshot for the round, sized
// for each block, and the line at DEBUG (what it does).
//
//	go test -run '^$' -bench PlaceCopy ./metad/
func BenchmarkPlaceCopy(b *testing.B) {
	m := openCfg(b, Config{})
	ctx := context.Background()
	var nodes []cairn.Node
	for i := range 1000 {
		n := cairn.Node{StorageID: fmt.Sprintf("DS-%04d", i), DataAddr: fmt.Sprintf("10.0.%d.%d:9866", i/256, i%256), Rack: fmt.Sprintf("/rack%d", i%20)}
		_, err := m.Register(ctx, cairn.Registration{Node: n})
		must(b, err)
		_, err = m.Heartbeat(ctx, cairn.Heartbeat{StorageID: n.StorageID, Capacity: 1 << 50, Remaining: 1 << 49})
		must(b, err)
		nodes = append(nodes, n)
	}
	log := zap.New(zapcore.NewCore(zapcore.NewJSONEncoder(zap.NewProductionEncoderConfig()), zapcore.AddSync(io.Discard), zap.InfoLevel))
	now := m.clock.Now()
	place := func(p *placement, i int) cairn.Block {
		blk := cairn.Block{ID: cairn.BlockID(i), GenStamp: 1000, Len: 64 << 20}
		src, other := nodes[i%1000], nodes[(i+334)%1000]
		t := p.choose(1, location{hostOf(src.DataAddr), src.Rack}, []cairn.Node{src, other}, []cairn.Node{src, other})
		if len(t) != 1 {
			b.Fatalf("placed %d copies", len(t))
		}
		return blk
	}
	b.Run("snapshot-per-copy", func(b *testing.B) {
		for i := range b.N {
			blk := place(m.nodes.placement(64<<20, now), i)
			log.Info("block needs replicas: copying", zap.Stringer("block", blk), zap.String("from", nodes[i%1000].DataAddr), zap.Int("copies", 1), zap.Int("priority", 1))
		}
	})
	b.Run("snapshot-per-round", func(b *testing.B) {
		snap := m.nodes.placement(0, now)
		for i := range b.N {
			blk := place(snap.sized(64<<20), i)
			log.Debug("block needs replicas: copying", zap.Stringer("block", blk), zap.String("from", nodes[i%1000].DataAddr), zap.Int("copies", 1), zap.Int("priority", 1))
		}
	})
}
