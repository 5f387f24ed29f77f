package metad

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"cairn"
)

// cluster registers n blockds with m, all heartbeating now.
func registerNodes(t *testing.T, m *Metad, n int) []cairn.Node {
	t.Helper()
	var nodes []cairn.Node
	for i := 0; i < n; i++ {
		node := cairn.Node{StorageID: fmt.Sprintf("DS-%d", i), DataAddr: fmt.Sprintf("127.0.0.1:%d", 10000+i)}
		if _, err := m.Register(context.Background(), cairn.Registration{Node: node}); err != nil {
			t.Fatal(err)
		}
		if _, err := m.Heartbeat(context.Background(), cairn.Heartbeat{StorageID: node.StorageID, Capacity: 1 << 40, Remaining: 1 << 40}); err != nil {
			t.Fatal(err)
		}
		nodes = append(nodes, node)
	}
	return nodes
}

func heartbeatAll(t *testing.T, m *Metad, nodes []cairn.Node, skip string) map[string][]cairn.Command {
	t.Helper()
	out := map[string][]cairn.Command{}
	for _, n := range nodes {
		if n.StorageID == skip {
			continue
		}
		cmds, err := m.Heartbeat(context.Background(), cairn.Heartbeat{StorageID: n.StorageID, Capacity: 1 << 40, Remaining: 1 << 40})
		if err != nil {
			t.Fatal(err)
		}
		// Every reply hands out the block token keys (CmdKeys): not what
		// these tests look at.
		out[n.StorageID] = slices.DeleteFunc(cmds, func(c cairn.Command) bool { return c.Kind == cairn.CmdKeys })
	}
	return out
}

// A block whose replica sits on a dead blockd is copied from a live holder
// to a blockd that holds none; an over-replicated one loses a replica.
func TestReplicationMonitor(t *testing.T) {
	clock := newFakeClock()
	m := openCfg(t, Config{Clock: clock, DeadAfter: time.Minute, Heartbeat: time.Second})
	nodes := registerNodes(t, m, 4)
	ctx := context.Background()
	if _, err := m.Create(ctx, "/f", cairn.CreateOptions{Client: "c", Replication: 3, BlockSize: 1 << 20}); err != nil {
		t.Fatal(err)
	}
	lb, err := m.AddBlock(ctx, cairn.WriterRef{Path: "/f", Client: "c"}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	b := lb.Block
	b.Len = 1000
	for _, n := range lb.Locations {
		must(t, m.BlocksReceived(ctx, n.StorageID, finalized(b)))
	}
	must(t, m.Complete(ctx, cairn.WriterRef{Path: "/f", Client: "c"}, &b))
	must(t, m.checkReplication(true))
	for id, cmds := range heartbeatAll(t, m, nodes, "") {
		if len(cmds) != 0 {
			t.Fatalf("a fully replicated block: %s got %v", id, cmds)
		}
	}

	dead := lb.Locations[0].StorageID
	clock.Add(30 * time.Second)
	heartbeatAll(t, m, nodes, dead)
	clock.Add(40 * time.Second) // dead is now silent for 70 s
	heartbeatAll(t, m, nodes, dead)
	must(t, m.checkReplication(false))
	var copies []cairn.Command
	for _, cmds := range heartbeatAll(t, m, nodes, dead) {
		copies = append(copies, cmds...)
	}
	if len(copies) != 1 || copies[0].Kind != cairn.CmdTransfer || len(copies[0].Targets) != 1 {
		t.Fatalf("after a holder died: commands %v, want one transfer to one target", copies)
	}
	for _, n := range lb.Locations {
		if copies[0].Targets[0].StorageID == n.StorageID {
			t.Fatalf("copy to %s, which already holds the block", n.StorageID)
		}
	}
	// The copy lands: four replicas reported, one on a dead node; when the
	// dead one comes back the block has one too many.
	must(t, m.BlocksReceived(ctx, copies[0].Targets[0].StorageID, finalized(b)))
	must(t, m.checkReplication(false))
	if got := heartbeatAll(t, m, nodes, dead); len(got[copies[0].Targets[0].StorageID]) != 0 {
		t.Fatalf("a restored block is copied again: %v", got)
	}
	heartbeatAll(t, m, nodes, "") // dead is back
	must(t, m.checkReplication(false))
	var deletes int
	for _, cmds := range heartbeatAll(t, m, nodes, "") {
		for _, c := range cmds {
			if c.Kind == cairn.CmdDelete {
				deletes += len(c.Blocks)
			}
		}
	}
	if deletes != 1 {
		t.Fatalf("an over-replicated block: %d replicas deleted, want 1", deletes)
	}
}

// Raising a file's replication above the default (setrep) is acted on by
// the next round of the monitor, not only by the full check every
// fullCheckEvery rounds: the block looks settled to the quick test, which
// compares with the default.
func TestSetReplicationSeenByNextRound(t *testing.T) {
	clock := newFakeClock()
	m := openCfg(t, Config{Clock: clock, DeadAfter: time.Minute, Heartbeat: time.Second, Replication: 1})
	nodes := registerNodes(t, m, 3)
	ctx := context.Background()
	if _, err := m.Create(ctx, "/f", cairn.CreateOptions{Client: "c", Replication: 1, BlockSize: 1 << 20}); err != nil {
		t.Fatal(err)
	}
	lb, err := m.AddBlock(ctx, cairn.WriterRef{Path: "/f", Client: "c"}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	b := lb.Block
	b.Len = 1000
	for _, n := range lb.Locations {
		must(t, m.BlocksReceived(ctx, n.StorageID, finalized(b)))
	}
	must(t, m.Complete(ctx, cairn.WriterRef{Path: "/f", Client: "c"}, &b))
	must(t, m.checkReplication(false))
	for id, cmds := range heartbeatAll(t, m, nodes, "") {
		if len(cmds) != 0 {
			t.Fatalf("a block at its replication: %s got %v", id, cmds)
		}
	}

	two := 2
	if _, err := m.SetAttr(ctx, "/f", cairn.Attr{Replication: &two}); err != nil {
		t.Fatal(err)
	}
	must(t, m.checkReplication(false))
	var copies []cairn.Command
	for _, cmds := range heartbeatAll(t, m, nodes, "") {
		copies = append(copies, cmds...)
	}
	if len(copies) != 1 || copies[0].Kind != cairn.CmdTransfer || len(copies[0].Targets) != 1 {
		t.Fatalf("after setrep 2, the next round sent %v, want one copy to one target", copies)
	}
}
