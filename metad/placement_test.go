package metad

import (
	"context"
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
