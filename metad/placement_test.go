package metad

import (
	"context"
	"fmt"
	"testing"
	"time"

	"cairn"
)

// TestStaleNodesAvoidedForWrites: a blockd silent past the stale interval
// (30 s by default), though not yet dead, is placed in no new pipeline,
// never offered as an additional pipeline node, and read from last.
func TestStaleNodesAvoidedForWrites(t *testing.T) {
	clk := newFakeClock()
	m := openCfg(t, Config{Clock: clk})
	nodes := registerNodes(t, m, 4)
	ctx := context.Background()
	b := closedFile(t, m, "/r", 100, nodes[:3])
	hung := nodes[0].StorageID

	clk.Add(40 * time.Second)
	heartbeatAll(t, m, nodes, hung)
	for i := range 50 {
		path := "/w" + string(rune('a'+i%26)) + string(rune('a'+i/26))
		if _, err := m.Create(ctx, path, cairn.CreateOptions{Client: "c", Replication: 3}); err != nil {
			t.Fatal(err)
		}
		lb, err := m.AddBlock(ctx, cairn.WriterRef{Path: path, Client: "c"}, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range lb.Locations {
			if n.StorageID == hung {
				t.Fatalf("a new pipeline %v includes %s, silent for 40 s", lb.Locations, hung)
			}
		}
		if len(lb.Locations) != 3 {
			t.Fatalf("a new pipeline has %d nodes, want the 3 fresh ones", len(lb.Locations))
		}
		n, err := m.AdditionalNode(ctx, cairn.WriterRef{Path: path, Client: "c"}, lb.Block, lb.Locations[1:], nil)
		if err != nil || n.StorageID != lb.Locations[0].StorageID {
			t.Fatalf("additional node beside %v: %v, %v; want the fresh %s, not the silent %s", lb.Locations[1:], n.StorageID, err, lb.Locations[0].StorageID, hung)
		}
	}
	fb, err := m.BlockLocations(ctx, cairn.FileRef{Path: "/r"})
	if err != nil {
		t.Fatal(err)
	}
	locs := fb.Blocks[0].Locations
	if len(locs) != 3 || locs[2].StorageID != hung {
		t.Errorf("reads of %s offer %v, want the silent %s last", b, locs, hung)
	}
}

// TestNoCapacityNoReplicas: a blockd whose heartbeat reports no capacity
// gets no replica (it used to count as having room, so a node could draw
// every pipeline to itself by reporting 0); one not yet heard from since it
// registered still may, as its first heartbeat follows at once.
func TestNoCapacityNoReplicas(t *testing.T) {
	m := openCfg(t, Config{Clock: newFakeClock()})
	ctx := context.Background()
	nodes := registerNodes(t, m, 2)
	empty := cairn.Node{StorageID: "DS-empty", DataAddr: "127.0.0.1:20000"}
	if _, err := m.Register(ctx, cairn.Registration{Node: empty}); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Heartbeat(ctx, cairn.Heartbeat{StorageID: empty.StorageID}); err != nil {
		t.Fatal(err)
	}
	fresh := cairn.Node{StorageID: "DS-fresh", DataAddr: "127.0.0.1:20001"}
	if _, err := m.Register(ctx, cairn.Registration{Node: fresh}); err != nil {
		t.Fatal(err)
	}
	for i := range 20 {
		p := fmt.Sprintf("/f%d", i)
		if _, err := m.Create(ctx, p, cairn.CreateOptions{Client: "w", Replication: 4}); err != nil {
			t.Fatal(err)
		}
		lb, err := m.AddBlock(ctx, cairn.WriterRef{Path: p, Client: "w"}, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		got := map[string]bool{}
		for _, n := range lb.Locations {
			got[n.StorageID] = true
		}
		if got[empty.StorageID] {
			t.Fatalf("a blockd reporting no capacity was chosen: %v", lb.Locations)
		}
		if !got[fresh.StorageID] || !got[nodes[0].StorageID] || !got[nodes[1].StorageID] {
			t.Fatalf("pipeline %v, want the two roomy blockds and the one not yet heard from", lb.Locations)
		}
	}
}
