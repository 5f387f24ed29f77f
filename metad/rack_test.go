package metad

import (
	"context"
	"fmt"
	"net"
	"testing"
	"time"

	"google.golang.org/grpc/peer"

	"cairn"
)

// rackCluster registers perRack[i] blockds on rack /r<i>, blockd j of
// rack i at 10.0.i.j, each with a terabyte free.
func rackCluster(t *testing.T, m *Metad, perRack ...int) []cairn.Node {
	t.Helper()
	var nodes []cairn.Node
	for r, n := range perRack {
		for h := range n {
			node := cairn.Node{StorageID: fmt.Sprintf("DS-r%d-h%d", r, h), DataAddr: fmt.Sprintf("10.0.%d.%d:9866", r, h+1), Rack: fmt.Sprintf("/r%d", r)}
			if _, err := m.Register(context.Background(), cairn.Registration{Node: node}); err != nil {
				t.Fatal(err)
			}
			beat(t, m, node.StorageID, 1<<40)
			nodes = append(nodes, node)
		}
	}
	return nodes
}

func beat(t *testing.T, m *Metad, id string, remaining int64) []cairn.Command {
	t.Helper()
	cmds, err := m.Heartbeat(context.Background(), cairn.Heartbeat{StorageID: id, Capacity: 1 << 40, Remaining: remaining})
	if err != nil {
		t.Fatal(err)
	}
	return cmds
}

// from is a context of an RPC from the IP address host.
func from(host string) context.Context {
	return peer.NewContext(context.Background(), &peer.Peer{Addr: &net.TCPAddr{IP: net.ParseIP(host), Port: 40000}})
}

// newBlockFrom creates path with replication repl and allocates its first
// block as a writer at host would.
func newBlockFrom(t *testing.T, m *Metad, host, path string, repl int, excluded ...cairn.Node) cairn.LocatedBlock {
	t.Helper()
	ctx := from(host)
	if _, err := m.Create(ctx, path, cairn.CreateOptions{Client: "c", Replication: repl, BlockSize: 1 << 20}); err != nil {
		t.Fatal(err)
	}
	lb, err := m.AddBlock(ctx, cairn.WriterRef{Path: path, Client: "c"}, nil, excluded)
	if err != nil {
		t.Fatal(err)
	}
	return lb
}

func perRack(nodes []cairn.Node) map[string]int {
	out := map[string]int{}
	for _, n := range nodes {
		out[n.Rack]++
	}
	return out
}

func ids(nodes []cairn.Node) []string {
	out := make([]string, len(nodes))
	for i, n := range nodes {
		out[i] = n.StorageID
	}
	return out
}

// checkDefaultRule checks a new block's pipeline of three against HDFS's
// default rule: the second on another rack than the first, the third on
// the second's rack, on another blockd.
func checkDefaultRule(t *testing.T, locs []cairn.Node) {
	t.Helper()
	if len(locs) != 3 {
		t.Fatalf("pipeline %v: %d nodes, want 3", ids(locs), len(locs))
	}
	if locs[1].Rack == locs[0].Rack {
		t.Fatalf("pipeline %v: the second replica is on the first's rack %s", ids(locs), locs[0].Rack)
	}
	if locs[2].Rack != locs[1].Rack || locs[2].StorageID == locs[1].StorageID {
		t.Fatalf("pipeline %v: the third replica is not on the second's rack %s, on another blockd", ids(locs), locs[1].Rack)
	}
}

// TestPlacementFollowsTheRackRule: over four racks of five blockds, a
// writer on a blockd's host gets its first replica there; a writer on no
// blockd's host gets it anywhere; either way the second is on another rack
// and the third on the second's rack.
func TestPlacementFollowsTheRackRule(t *testing.T) {
	m := openCfg(t, Config{Clock: newFakeClock()})
	nodes := rackCluster(t, m, 5, 5, 5, 5)
	firsts := map[string]bool{}
	for i := range 60 {
		w := nodes[i%len(nodes)]
		lb := newBlockFrom(t, m, hostOf(w.DataAddr), fmt.Sprintf("/local%d", i), 3)
		if lb.Locations[0].StorageID != w.StorageID {
			t.Fatalf("a writer on %s's host got pipeline %v, want %s first", w.StorageID, ids(lb.Locations), w.StorageID)
		}
		checkDefaultRule(t, lb.Locations)

		lb = newBlockFrom(t, m, "192.168.7.7", fmt.Sprintf("/remote%d", i), 3)
		checkDefaultRule(t, lb.Locations)
		firsts[lb.Locations[0].StorageID] = true
	}
	if len(firsts) < 2 {
		t.Errorf("writers on no blockd's host got their first replica on %v only, want random blockds", firsts)
	}
}

// TestPlacementAvoidsStaleFullAndExcluded: when the writer's own blockd
// is stale, full or excluded by the writer, its first replica goes to
// another blockd of its rack (HDFS's fallback to the local rack), and no
// stale, full or excluded blockd gets any replica.
func TestPlacementAvoidsStaleFullAndExcluded(t *testing.T) {
	clk := newFakeClock()
	m := openCfg(t, Config{Clock: clk, StaleAfter: 30 * time.Second, DeadAfter: time.Hour})
	nodes := rackCluster(t, m, 4, 4, 4)
	stale, full, excluded := nodes[0], nodes[1], nodes[2] // all on /r0
	clk.Add(40 * time.Second)
	for _, n := range nodes {
		switch n.StorageID {
		case stale.StorageID:
		case full.StorageID:
			beat(t, m, n.StorageID, 1000) // less than a block
		default:
			beat(t, m, n.StorageID, 1<<40)
		}
	}
	bad := map[string]string{stale.StorageID: "stale", full.StorageID: "full", excluded.StorageID: "excluded"}
	for i, w := range []cairn.Node{stale, full, excluded, stale, full, excluded} {
		lb := newBlockFrom(t, m, hostOf(w.DataAddr), fmt.Sprintf("/f%d", i), 3, excluded)
		checkDefaultRule(t, lb.Locations)
		if lb.Locations[0].Rack != w.Rack {
			t.Errorf("a writer on the %s %s got its first replica on %s, want its own rack %s", bad[w.StorageID], w.StorageID, lb.Locations[0].Rack, w.Rack)
		}
		for _, n := range lb.Locations {
			if why := bad[n.StorageID]; why != "" {
				t.Errorf("pipeline %v includes the %s blockd %s", ids(lb.Locations), why, n.StorageID)
			}
		}
	}
}

// TestPlacementBoundsReplicasPerRack: more replicas than three are spread
// with at most (n-1)/racks+2 on one rack.
func TestPlacementBoundsReplicasPerRack(t *testing.T) {
	m := openCfg(t, Config{Clock: newFakeClock()})
	nodes := rackCluster(t, m, 10, 10)
	for i := range 20 {
		lb := newBlockFrom(t, m, hostOf(nodes[i].DataAddr), fmt.Sprintf("/f%d", i), 6)
		if len(lb.Locations) != 6 {
			t.Fatalf("pipeline %v, want 6 nodes", ids(lb.Locations))
		}
		for rack, n := range perRack(lb.Locations) {
			if n > (6-1)/2+2 {
				t.Fatalf("pipeline %v: %d replicas on %s, more than %d", ids(lb.Locations), n, rack, (6-1)/2+2)
			}
		}
	}
	// A lopsided cluster: one blockd on /r0, five on /r1.
	m = openCfg(t, Config{Clock: newFakeClock()})
	rackCluster(t, m, 1, 5)
	for i := range 10 {
		lb := newBlockFrom(t, m, "192.168.7.7", fmt.Sprintf("/g%d", i), 3)
		if got := perRack(lb.Locations); len(lb.Locations) != 3 || got["/r0"] != 1 || got["/r1"] != 2 {
			t.Fatalf("pipeline %v on racks %v, want one replica on /r0 and two on /r1", ids(lb.Locations), got)
		}
	}
}

// TestPlacementRackLimitYields: when every blockd of the other rack is
// full, a new block still gets its three replicas, on the one rack left,
// rather than two.
func TestPlacementRackLimitYields(t *testing.T) {
	m := openCfg(t, Config{Clock: newFakeClock()})
	nodes := rackCluster(t, m, 4, 2)
	beat(t, m, nodes[4].StorageID, 1000)
	beat(t, m, nodes[5].StorageID, 1000)
	for i := range 5 {
		lb := newBlockFrom(t, m, "192.168.7.7", fmt.Sprintf("/f%d", i), 3)
		if got := perRack(lb.Locations); len(lb.Locations) != 3 || got["/r0"] != 3 {
			t.Fatalf("pipeline %v on racks %v, want three blockds of /r0 (those of /r1 are full)", ids(lb.Locations), got)
		}
	}
}

// TestPlacementOneRack: with every blockd on one rack all replicas go to
// it, the writer's blockd first.
func TestPlacementOneRack(t *testing.T) {
	m := openCfg(t, Config{Clock: newFakeClock()})
	nodes := rackCluster(t, m, 5)
	for i := range 10 {
		w := nodes[i%5]
		lb := newBlockFrom(t, m, hostOf(w.DataAddr), fmt.Sprintf("/f%d", i), 3)
		if len(lb.Locations) != 3 || lb.Locations[0].StorageID != w.StorageID {
			t.Fatalf("pipeline %v, want three blockds, %s first", ids(lb.Locations), w.StorageID)
		}
	}
	lb := newBlockFrom(t, m, "192.168.7.7", "/all", 5)
	if len(lb.Locations) != 5 {
		t.Fatalf("replication 5 on five blockds of one rack: pipeline %v", ids(lb.Locations))
	}
}

// closedOn makes path a closed file of one block whose replicas are on
// holders.
func closedOn(t *testing.T, m *Metad, path string, holders []cairn.Node) cairn.Block {
	t.Helper()
	lb := newBlockFrom(t, m, "192.168.7.7", path, 3)
	b := lb.Block
	b.Len = 1000
	for _, n := range holders {
		must(t, m.BlocksReceived(context.Background(), n.StorageID, finalized(b)))
	}
	must(t, m.Complete(context.Background(), cairn.WriterRef{Path: path, Client: "c"}, &b))
	return b
}

// transfers returns the transfer commands every blockd gets on its next
// heartbeat.
func transfers(t *testing.T, m *Metad, nodes []cairn.Node) []cairn.Command {
	t.Helper()
	var out []cairn.Command
	for _, n := range nodes {
		for _, c := range beat(t, m, n.StorageID, 1<<40) {
			if c.Kind == cairn.CmdTransfer {
				out = append(out, c)
			}
		}
	}
	return out
}

func byID(nodes []cairn.Node, id string) cairn.Node {
	for _, n := range nodes {
		if n.StorageID == id {
			return n
		}
	}
	return cairn.Node{StorageID: id}
}

// TestReReplicationKeepsTheRackRule: a block left with two replicas on
// one rack is copied to another rack; a block with its full count on one
// rack gets a copy on another rack, and then loses a replica from the
// crowded rack, never its only one on a rack.
func TestReReplicationKeepsTheRackRule(t *testing.T) {
	m := openCfg(t, Config{Clock: newFakeClock()})
	nodes := rackCluster(t, m, 3, 3) // r0: 0,1,2; r1: 3,4,5
	closedOn(t, m, "/two", nodes[0:2])
	must(t, m.checkReplication(false))
	cmds := transfers(t, m, nodes)
	if len(cmds) != 1 || len(cmds[0].Targets) != 1 || byID(nodes, cmds[0].Targets[0].StorageID).Rack != "/r1" {
		t.Fatalf("two replicas on /r0: commands %+v, want one copy to a blockd of /r1", cmds)
	}

	b := closedOn(t, m, "/three", nodes[0:3])
	must(t, m.checkReplication(false))
	cmds = transfers(t, m, nodes)
	if len(cmds) != 1 || len(cmds[0].Targets) != 1 || byID(nodes, cmds[0].Targets[0].StorageID).Rack != "/r1" {
		t.Fatalf("three replicas on /r0 of two racks: commands %+v, want one copy to a blockd of /r1", cmds)
	}
	target := cmds[0].Targets[0].StorageID
	// The new copy is the one with the least room: the trim must still
	// take a replica from /r0, which has three.
	must(t, m.BlocksReceived(context.Background(), target, finalized(b)))
	beat(t, m, target, 1<<20)
	must(t, m.checkReplication(false))
	deleted := map[string]bool{}
	for _, n := range nodes {
		for _, c := range beat(t, m, n.StorageID, 1<<40) {
			if c.Kind == cairn.CmdDelete {
				deleted[n.StorageID] = true
			}
		}
	}
	if len(deleted) != 1 || deleted[target] {
		t.Fatalf("four replicas, three on /r0: deletes on %v, want one from /r0", deleted)
	}
	if must(t, m.checkReplication(false)); len(transfers(t, m, nodes)) != 0 {
		t.Fatalf("a block on two racks with its full count is copied again")
	}
}

// TestReadersGetNearestFirst: a reader on a holder's host gets that
// holder first; a reader on a rack that holds a replica gets it before
// the others.
func TestReadersGetNearestFirst(t *testing.T) {
	m := openCfg(t, Config{Clock: newFakeClock()})
	nodes := rackCluster(t, m, 3, 3, 3)
	// Replicas on r0 h0, r1 h0, r1 h1; readers on r0 h0, r0 h2 and r2 h0.
	closedOn(t, m, "/f", []cairn.Node{nodes[0], nodes[3], nodes[4]})
	for range 20 {
		for _, c := range []struct {
			reader cairn.Node
			first  string
		}{{nodes[0], nodes[0].StorageID}, {nodes[2], nodes[0].StorageID}, {nodes[4], nodes[4].StorageID}} {
			fb, err := m.BlockLocations(from(hostOf(c.reader.DataAddr)), cairn.FileRef{Path: "/f"})
			if err != nil {
				t.Fatal(err)
			}
			locs := fb.Blocks[0].Locations
			if len(locs) != 3 || locs[0].StorageID != c.first {
				t.Fatalf("a reader on %s got %v, want %s first", c.reader.StorageID, ids(locs), c.first)
			}
		}
		// A reader on the third host of /r1 reads /r1's two first.
		fb, err := m.BlockLocations(from(hostOf(nodes[5].DataAddr)), cairn.FileRef{Path: "/f"})
		if err != nil {
			t.Fatal(err)
		}
		if locs := fb.Blocks[0].Locations; locs[0].Rack != "/r1" || locs[1].Rack != "/r1" || locs[2].Rack != "/r0" {
			t.Fatalf("a reader on /r1 got %v, want /r1's replicas first", ids(locs))
		}
	}
}
