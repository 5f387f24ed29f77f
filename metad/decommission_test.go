package metad

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"cairn"
)

// reportAll sends each blockd's full report of what metad records it
// holds, as a blockd does when it registers.
func reportAll(t *testing.T, m *Metad, nodes []cairn.Node) {
	t.Helper()
	for _, n := range nodes {
		var reps []cairn.Replica
		for _, id := range m.blocks.blocksOn(n.StorageID) {
			m.blocks.mu.Lock()
			r, _ := m.blocks.replica(n.StorageID, id)
			m.blocks.mu.Unlock()
			reps = append(reps, r)
		}
		must(t, m.BlockReport(context.Background(), n.StorageID, reps))
	}
}

func adminStateOf(t *testing.T, m *Metad, id string) string {
	t.Helper()
	rep, err := m.Report(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range rep.Nodes {
		if n.StorageID == id {
			return n.AdminState
		}
	}
	t.Fatalf("no blockd %s in the report", id)
	return ""
}

// deletesTo counts the replicas each blockd is told to delete on its next
// heartbeat, and returns the copies asked for.
func deletesTo(t *testing.T, m *Metad, nodes []cairn.Node) (map[string]int, []cairn.Command) {
	t.Helper()
	del := map[string]int{}
	var copies []cairn.Command
	for _, n := range nodes {
		for _, c := range beat(t, m, n.StorageID, 1<<40) {
			switch c.Kind {
			case cairn.CmdDelete:
				del[n.StorageID] += len(c.Blocks)
			case cairn.CmdTransfer:
				copies = append(copies, c)
			}
		}
	}
	return del, copies
}

// TestDecommission: a blockd being decommissioned takes no new replica,
// is read last, and has its replicas copied elsewhere keeping the rack
// rule, a block whose only replica it holds first; it is never told to
// delete one, and is Decommissioned only once every block it holds has its
// full count elsewhere. A restarted metad keeps the state; a
// recommissioned blockd is in service again and the extra replicas go.
func TestDecommission(t *testing.T) {
	cfg := Config{Clock: newFakeClock()}
	m := openCfg(t, cfg)
	nodes := rackCluster(t, m, 3, 3) // r0: 0,1,2; r1: 3,4,5
	victim := nodes[0]
	full := closedOn(t, m, "/full", []cairn.Node{nodes[0], nodes[3], nodes[4]})
	last := closedOn(t, m, "/last", []cairn.Node{nodes[0]})
	reportAll(t, m, nodes)

	if _, err := m.SetNodeAdmin(as("bob"), victim.StorageID, cairn.NodeDecommission, 0); cairn.KindOf(err) != cairn.KindAccess {
		t.Fatalf("a user who is not a superuser decommissions: %v, want KindAccess", err)
	}
	if _, err := m.SetNodeAdmin(context.Background(), "10.9.9.9:9866", cairn.NodeDecommission, 0); cairn.KindOf(err) != cairn.KindNotExist {
		t.Fatalf("decommission of an unknown blockd: %v, want KindNotExist", err)
	}
	n, err := m.SetNodeAdmin(context.Background(), victim.DataAddr, cairn.NodeDecommission, 0)
	if err != nil || n.StorageID != victim.StorageID || n.AdminState != cairn.AdminDecommissioning {
		t.Fatalf("decommission by data address: %+v, %v; want %s in progress", n, err, victim.StorageID)
	}

	// No new replica on it; read last.
	for i := range 20 {
		lb := newBlockFrom(t, m, hostOf(victim.DataAddr), "/new"+string(rune('a'+i)), 3)
		for _, l := range lb.Locations {
			if l.StorageID == victim.StorageID {
				t.Fatalf("a new block placed on a blockd being decommissioned: %v", ids(lb.Locations))
			}
		}
	}
	fb, err := m.BlockLocations(from(hostOf(victim.DataAddr)), cairn.FileRef{Path: "/full"})
	if err != nil {
		t.Fatal(err)
	}
	if locs := fb.Blocks[0].Locations; len(locs) != 3 || locs[2].StorageID != victim.StorageID {
		t.Fatalf("a reader on the decommissioning blockd's host got %v, want it last", ids(locs))
	}

	must(t, m.checkReplication(false))
	del, copies := deletesTo(t, m, nodes)
	if del[victim.StorageID] != 0 {
		t.Fatalf("a blockd being decommissioned is told to delete %d replicas", del[victim.StorageID])
	}
	want := map[cairn.BlockID]int{full.ID: 1, last.ID: 3} // copies per block: the victim's do not count
	got := map[cairn.BlockID]int{}
	for _, c := range copies {
		for _, tg := range c.Targets {
			if tg.StorageID == victim.StorageID {
				t.Fatalf("a copy to the blockd being decommissioned: %+v", c)
			}
		}
		got[c.Blocks[0].ID] += len(c.Targets)
		if c.Blocks[0].ID == full.ID && byID(nodes, c.Targets[0].StorageID).Rack != "/r0" {
			t.Fatalf("/full, left with two replicas on /r1, copied to %s: the rack rule wants /r0", c.Targets[0].StorageID)
		}
	}
	if got[full.ID] != want[full.ID] || got[last.ID] != want[last.ID] {
		t.Fatalf("copies %v, want %v", got, want)
	}
	if s := adminStateOf(t, m, victim.StorageID); s != cairn.AdminDecommissioning {
		t.Fatalf("before the copies arrive: %q", s)
	}

	// The copies arrive: Decommissioned, and still nothing deleted on it.
	for _, c := range copies {
		for _, tg := range c.Targets {
			must(t, m.BlocksReceived(context.Background(), tg.StorageID, finalized(c.Blocks[0])))
		}
	}
	must(t, m.checkReplication(false))
	if s := adminStateOf(t, m, victim.StorageID); s != cairn.AdminDecommissioned {
		t.Fatalf("every block copied: %q, want %q", s, cairn.AdminDecommissioned)
	}
	must(t, m.checkReplication(true))
	if del, copies := deletesTo(t, m, nodes); del[victim.StorageID] != 0 || len(copies) != 0 {
		t.Fatalf("decommissioned: deletes %v, copies %+v; want none", del, copies)
	}

	// A restart keeps the state.
	m = reopen(t, m, cfg)
	rackCluster(t, m, 3, 3)
	if s := adminStateOf(t, m, victim.StorageID); s != cairn.AdminDecommissioned {
		t.Fatalf("after a restart: %q, want %q", s, cairn.AdminDecommissioned)
	}
	checkNow(t, m) // the store check knows the "d" keys

	// Back in service.
	if n, err := m.SetNodeAdmin(context.Background(), victim.StorageID, cairn.NodeRecommission, 0); err != nil || n.AdminState != cairn.AdminNormal {
		t.Fatalf("recommission: %+v, %v", n, err)
	}
	m = reopen(t, m, cfg)
	rackCluster(t, m, 3, 3)
	if s := adminStateOf(t, m, victim.StorageID); s != cairn.AdminNormal {
		t.Fatalf("recommissioned, after a restart: %q", s)
	}
}

// TestDecommissionWaitsForEveryBlock: a blockd holding a block no other
// blockd can take (every other blockd holds it already) stays in
// progress: it is never Decommissioned while it may hold a last copy. One
// that has not reported since it registered is not judged at all.
func TestDecommissionWaitsForEveryBlock(t *testing.T) {
	m := openCfg(t, Config{Clock: newFakeClock()})
	nodes := rackCluster(t, m, 3)
	closedOn(t, m, "/f", nodes)
	must(t, m.BlockReport(context.Background(), nodes[1].StorageID, nil)) // nodes[1] reports it holds nothing
	if _, err := m.SetNodeAdmin(context.Background(), nodes[0].StorageID, cairn.NodeDecommission, 0); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		must(t, m.checkReplication(true))
		deletesTo(t, m, nodes)
	}
	if s := adminStateOf(t, m, nodes[0].StorageID); s != cairn.AdminDecommissioning {
		t.Fatalf("a blockd that has not reported: %q, want in progress", s)
	}
	reportAll(t, m, nodes[0:1])
	for range 3 {
		must(t, m.checkReplication(true))
		deletesTo(t, m, nodes)
	}
	if s := adminStateOf(t, m, nodes[0].StorageID); s != cairn.AdminDecommissioning {
		t.Fatalf("its block has two replicas elsewhere and wants three: %q, want in progress", s)
	}
}

// TestExcludeFile: metad's --hosts-exclude names blockds by host, data
// address or storage ID: a blockd it names is decommissioned when it
// registers; RefreshNodes reads it again, decommissioning those it now
// names and putting back in service those it no longer names.
func TestExcludeFile(t *testing.T) {
	file := filepath.Join(t.TempDir(), "exclude")
	must(t, os.WriteFile(file, []byte("# retired\n10.0.0.1\n"), 0o644))
	m := openCfg(t, Config{Clock: newFakeClock(), HostsExclude: file})
	nodes := rackCluster(t, m, 3) // 10.0.0.1, .2, .3
	if s := adminStateOf(t, m, nodes[0].StorageID); s != cairn.AdminDecommissioning {
		t.Fatalf("a blockd on a host the exclude file names: %q", s)
	}
	if s := adminStateOf(t, m, nodes[1].StorageID); s != cairn.AdminNormal {
		t.Fatalf("a blockd the exclude file does not name: %q", s)
	}
	must(t, os.WriteFile(file, []byte(nodes[1].DataAddr+"\n"+nodes[2].StorageID+" # by ID\n"), 0o644))
	changed, err := m.RefreshNodes(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(changed) != 3 {
		t.Fatalf("refresh changed %+v, want all three", changed)
	}
	for i, want := range []string{cairn.AdminNormal, cairn.AdminDecommissioning, cairn.AdminDecommissioning} {
		if s := adminStateOf(t, m, nodes[i].StorageID); s != want {
			t.Fatalf("blockd %d after refresh: %q, want %q", i, s, want)
		}
	}
	if _, err := m.RefreshNodes(as("bob")); cairn.KindOf(err) != cairn.KindAccess {
		t.Fatalf("refresh by a user who is not a superuser: %v", err)
	}
}
