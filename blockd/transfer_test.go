package blockd

import (
	"testing"

	"go.uber.org/zap"

	"cairn"
)

// TestBalancerCopiesQueueApart: a balancer's copy (one with a bandwidth)
// goes to the balancer's queue, a copy of metad's replication monitor to
// the other, so neither waits behind the other's workers.
func TestBalancerCopiesQueueApart(t *testing.T) {
	d := &Blockd{log: zap.NewNop(), transfers: make(chan cairn.Command, 1), moves: make(chan cairn.Command, 1)}
	tg := []cairn.Node{{StorageID: "dst"}}
	d.queueTransfer(cairn.Command{Kind: cairn.CmdTransfer, Blocks: []cairn.Block{{ID: 1}}, Targets: tg, Bandwidth: 1 << 20})
	d.queueTransfer(cairn.Command{Kind: cairn.CmdTransfer, Blocks: []cairn.Block{{ID: 2}}, Targets: tg})
	if len(d.moves) != 1 || len(d.transfers) != 1 {
		t.Fatalf("queued: %d moves, %d copies; want one of each", len(d.moves), len(d.transfers))
	}
	if m, c := <-d.moves, <-d.transfers; m.Blocks[0].ID != 1 || c.Blocks[0].ID != 2 {
		t.Fatalf("the move's queue has block %d, the copies' %d; want 1 and 2", m.Blocks[0].ID, c.Blocks[0].ID)
	}
	// A full balancer queue drops the move, not a copy.
	d.queueTransfer(cairn.Command{Kind: cairn.CmdTransfer, Blocks: []cairn.Block{{ID: 3}}, Targets: tg, Bandwidth: 1 << 20})
	d.queueTransfer(cairn.Command{Kind: cairn.CmdTransfer, Blocks: []cairn.Block{{ID: 4}}, Targets: tg, Bandwidth: 1 << 20})
	d.queueTransfer(cairn.Command{Kind: cairn.CmdTransfer, Blocks: []cairn.Block{{ID: 5}}, Targets: tg})
	if len(d.moves) != 1 || len(d.transfers) != 1 || d.active.Load() != 4 {
		t.Fatalf("after a full move queue: %d moves, %d copies, %d active; want 1, 1 and 4", len(d.moves), len(d.transfers), d.active.Load())
	}
}
