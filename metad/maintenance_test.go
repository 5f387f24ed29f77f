package metad

import (
	"bytes"
	"context"
	"testing"
	"time"

	"cairn"
)

// copiesPer counts the copies asked for per block on the blockds' next
// heartbeats, and fails on any deletion asked of blockd keep or any copy
// onto it.
func copiesPer(t *testing.T, m *Metad, nodes []cairn.Node, keep string) map[cairn.BlockID]int {
	t.Helper()
	del, copies := deletesTo(t, m, nodes)
	if del[keep] != 0 {
		t.Fatalf("blockd %s in maintenance told to delete %d replicas", keep, del[keep])
	}
	got := map[cairn.BlockID]int{}
	for _, c := range copies {
		for _, tg := range c.Targets {
			if tg.StorageID == keep {
				t.Fatalf("a copy onto the blockd in maintenance: %+v", c)
			}
		}
		got[c.Blocks[0].ID] += len(c.Targets)
	}
	return got
}

// arrive reports every copy's target holding its block.
func arrive(t *testing.T, m *Metad, copies []cairn.Command) {
	t.Helper()
	for _, c := range copies {
		for _, tg := range c.Targets {
			must(t, m.BlocksReceived(context.Background(), tg.StorageID, finalized(c.Blocks[0])))
		}
	}
}

// TestMaintenance: a blockd entering maintenance has copied only the
// blocks that would keep fewer live replicas in service than the
// maintenance minimum; it is In maintenance once they are; switched off,
// its replicas are not copied elsewhere, readers skip it and fsck's
// report says its replicas are in maintenance; at its expiry, still dead,
// its blocks are copied as usual, and back, the extra replicas are
// trimmed, none lost.
func TestMaintenance(t *testing.T) {
	clock := newFakeClock()
	m := openCfg(t, Config{Clock: clock, DeadAfter: time.Minute})
	nodes := rackCluster(t, m, 3, 3) // r0: 0,1,2; r1: 3,4,5
	victim, others := nodes[0], nodes[1:]
	full := closedOn(t, m, "/full", []cairn.Node{nodes[0], nodes[3], nodes[4]})
	last := closedOn(t, m, "/last", []cairn.Node{nodes[0]})
	reportAll(t, m, nodes)

	if _, err := m.SetNodeAdmin(as("bob"), victim.StorageID, cairn.NodeMaintenance, 0); cairn.KindOf(err) != cairn.KindAccess {
		t.Fatalf("a user who is not a superuser starts a maintenance: %v, want KindAccess", err)
	}
	for _, bad := range []time.Duration{-time.Hour} {
		if _, err := m.SetNodeAdmin(context.Background(), victim.StorageID, cairn.NodeMaintenance, bad); cairn.KindOf(err) != cairn.KindInvalid {
			t.Fatalf("expiry %v: %v, want KindInvalid", bad, err)
		}
	}
	if _, err := m.SetNodeAdmin(context.Background(), victim.StorageID, cairn.NodeDecommission, time.Hour); cairn.KindOf(err) != cairn.KindInvalid {
		t.Fatalf("an expiry with a decommission: %v, want KindInvalid", err)
	}
	if s := adminStateOf(t, m, victim.StorageID); s != cairn.AdminNormal {
		t.Fatalf("refused requests changed the state: %q", s)
	}
	n, err := m.SetNodeAdmin(context.Background(), victim.DataAddr, cairn.NodeMaintenance, time.Hour)
	if err != nil || n.AdminState != cairn.AdminEnteringMaintenance || !n.MaintenanceExpires.Equal(clock.Now().Add(time.Hour)) {
		t.Fatalf("maintenance for an hour: %+v, %v", n, err)
	}
	if _, err := m.SetNodeAdmin(context.Background(), victim.StorageID, cairn.NodeDecommission, 0); cairn.KindOf(err) != cairn.KindInvalid {
		t.Fatalf("decommission of a blockd in maintenance: %v, want KindInvalid", err)
	}
	for i := range 10 {
		lb := newBlockFrom(t, m, hostOf(victim.DataAddr), "/new"+string(rune('a'+i)), 3)
		for _, l := range lb.Locations {
			if l.StorageID == victim.StorageID {
				t.Fatalf("a new block placed on a blockd entering maintenance: %v", ids(lb.Locations))
			}
		}
	}

	// /full keeps two live replicas in service: no copy. /last, whose
	// only replica is on it, wants replication - 1 = 2 there.
	must(t, m.checkReplication(true))
	del, copies := deletesTo(t, m, nodes)
	got := map[cairn.BlockID]int{}
	for _, c := range copies {
		got[c.Blocks[0].ID] += len(c.Targets)
	}
	if del[victim.StorageID] != 0 || got[full.ID] != 0 || got[last.ID] != 2 {
		t.Fatalf("entering maintenance: deletes %v, copies %v; want none of /full and 2 of /last", del, got)
	}
	if s := adminStateOf(t, m, victim.StorageID); s != cairn.AdminEnteringMaintenance {
		t.Fatalf("before /last's copies arrive: %q", s)
	}
	arrive(t, m, copies)
	must(t, m.checkReplication(false))
	if s := adminStateOf(t, m, victim.StorageID); s != cairn.AdminInMaintenance {
		t.Fatalf("every block at its maintenance minimum: %q, want %q", s, cairn.AdminInMaintenance)
	}

	// Switched off, past the dead interval: nothing copied, nothing
	// deleted; readers get the two others; the report says in
	// maintenance.
	clock.Add(2 * time.Minute)
	for _, o := range others {
		beat(t, m, o.StorageID, 1<<40)
	}
	for range 2 {
		must(t, m.checkReplication(true))
		if got := copiesPer(t, m, others, victim.StorageID); len(got) != 0 {
			t.Fatalf("in maintenance and dead: copies %v, want none", got)
		}
	}
	fb, err := m.BlockLocations(context.Background(), cairn.FileRef{Path: "/full"})
	if err != nil {
		t.Fatal(err)
	}
	if locs := fb.Blocks[0].Locations; len(locs) != 2 || locs[0].StorageID == victim.StorageID || locs[1].StorageID == victim.StorageID {
		t.Fatalf("readers of /full got %v, want the two live replicas", ids(locs))
	}
	fr, err := m.ReplicaReport(context.Background(), "/full")
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range fr.Blocks[0].Replicas {
		if r.Maintenance != (r.StorageID == victim.StorageID) || (r.StorageID == victim.StorageID && (r.Live || !r.Good)) {
			t.Fatalf("replica report: %+v, want only the victim's in maintenance, dead and good", r)
		}
	}

	// The expiry, the blockd still dead: in service again, so dead, and
	// its blocks are copied as usual.
	clock.Add(time.Hour)
	for _, o := range others {
		beat(t, m, o.StorageID, 1<<40)
	}
	must(t, m.checkReplication(true))
	if s := adminStateOf(t, m, victim.StorageID); s != cairn.AdminNormal {
		t.Fatalf("past its expiry: %q, want %q", s, cairn.AdminNormal)
	}
	must(t, m.checkReplication(true))
	_, copies = deletesTo(t, m, others)
	got = map[cairn.BlockID]int{}
	for _, c := range copies {
		got[c.Blocks[0].ID] += len(c.Targets)
	}
	if got[full.ID] != 1 || got[last.ID] != 1 {
		t.Fatalf("expired, still dead: copies %v, want one of each block", got)
	}
	arrive(t, m, copies)

	// Back: four replicas each; one goes, and each block keeps three.
	beat(t, m, victim.StorageID, 1<<40)
	reportAll(t, m, []cairn.Node{victim})
	must(t, m.checkReplication(true))
	deletesTo(t, m, nodes)
	for _, b := range []cairn.Block{full, last} {
		if n := len(m.blocks.holders(b)); n != 3 {
			t.Fatalf("block %v back from maintenance: %d replicas, want 3", b.ID, n)
		}
	}
}

// TestMaintenanceMinReplication: with a minimum of 2, a blockd entering
// maintenance has copied the blocks that would keep fewer than two live
// replicas in service, not the others; recommissioned while live, it
// counts again and nothing is copied.
func TestMaintenanceMinReplication(t *testing.T) {
	m := openCfg(t, Config{Clock: newFakeClock(), MaintenanceMinReplication: 2})
	nodes := rackCluster(t, m, 3, 3)
	victim := nodes[0]
	full := closedOn(t, m, "/full", []cairn.Node{nodes[0], nodes[3], nodes[4]})
	two := closedOn(t, m, "/two", []cairn.Node{nodes[0], nodes[3]})
	reportAll(t, m, nodes)
	if _, err := m.SetNodeAdmin(context.Background(), victim.StorageID, cairn.NodeMaintenance, 0); err != nil {
		t.Fatal(err)
	}
	must(t, m.checkReplication(true))
	_, copies := deletesTo(t, m, nodes)
	got := map[cairn.BlockID]int{}
	for _, c := range copies {
		got[c.Blocks[0].ID] += len(c.Targets)
	}
	if got[full.ID] != 0 || got[two.ID] != 1 {
		t.Fatalf("minimum 2: copies %v, want none of /full and one of /two", got)
	}
	arrive(t, m, copies)
	must(t, m.checkReplication(false))
	if s := adminStateOf(t, m, victim.StorageID); s != cairn.AdminInMaintenance {
		t.Fatalf("%q, want %q", s, cairn.AdminInMaintenance)
	}
	n, err := m.SetNodeAdmin(context.Background(), victim.StorageID, cairn.NodeRecommission, 0)
	if err != nil || n.AdminState != cairn.AdminNormal || !n.MaintenanceExpires.IsZero() {
		t.Fatalf("recommission: %+v, %v", n, err)
	}
	must(t, m.checkReplication(true))
	if got := copiesPer(t, m, nodes, ""); len(got) != 0 {
		t.Fatalf("recommissioned while live: copies %v, want none", got)
	}
	for _, b := range []cairn.Block{full, two} {
		if n := len(m.blocks.holders(b)); n != 3 {
			t.Fatalf("block %v: %d replicas, want 3", b.ID, n)
		}
	}
}

// TestMaintenanceOfADeadBlockd: a blockd already dead goes straight to
// In maintenance, as in HDFS; the state and its expiry survive a restart
// of metad, and the store check knows the record.
func TestMaintenanceOfADeadBlockd(t *testing.T) {
	clock := newFakeClock()
	cfg := Config{Clock: clock, DeadAfter: time.Minute}
	m := openCfg(t, cfg)
	nodes := rackCluster(t, m, 2, 2)
	clock.Add(2 * time.Minute)
	for _, o := range nodes[1:] {
		beat(t, m, o.StorageID, 1<<40)
	}
	if _, err := m.SetNodeAdmin(context.Background(), nodes[0].StorageID, cairn.NodeMaintenance, 4*time.Hour); err != nil {
		t.Fatal(err)
	}
	must(t, m.checkReplication(false))
	if s := adminStateOf(t, m, nodes[0].StorageID); s != cairn.AdminInMaintenance {
		t.Fatalf("dead at its start: %q, want %q", s, cairn.AdminInMaintenance)
	}
	expires := clock.Now().Add(4 * time.Hour)
	m = reopen(t, m, cfg)
	rackCluster(t, m, 2, 2)
	rep, err := m.Report(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range rep.Nodes {
		want := cairn.AdminNormal
		if n.StorageID == nodes[0].StorageID {
			want = cairn.AdminInMaintenance
			if !n.MaintenanceExpires.Equal(expires) {
				t.Fatalf("after a restart: expires %v, want %v", n.MaintenanceExpires, expires)
			}
		}
		if n.AdminState != want {
			t.Fatalf("after a restart: %s is %q, want %q", n.StorageID, n.AdminState, want)
		}
	}
	checkNow(t, m)
}

// TestAdminRecordCodec: every admin record reads back as written; a
// record of another length, state or flag is refused, never read as
// something else.
func TestAdminRecordCodec(t *testing.T) {
	exp := time.Unix(0, 1_900_000_000_123_456_789)
	for _, r := range []adminRecord{
		{state: adminDecommissioning}, {state: adminDecommissioned, byFile: true},
		{state: adminEnteringMaintenance}, {state: adminInMaintenance, expires: exp},
	} {
		got, err := decodeAdmin(encodeAdmin(r))
		if err != nil || got.state != r.state || got.byFile != r.byFile || !got.expires.Equal(r.expires) {
			t.Fatalf("%+v read back as %+v, %v", r, got, err)
		}
	}
	for _, bad := range [][]byte{nil, {1}, {0, 0}, {5, 0}, {1, 2}, {3, 0}, {1, 0, 0, 0, 0, 0, 0, 0, 0, 0}, {3, 1, 0, 0, 0, 0, 0, 0, 0, 0}, bytes.Repeat([]byte{4}, 11)} {
		if r, err := decodeAdmin(bad); err == nil {
			t.Fatalf("%x read as %+v", bad, r)
		}
	}
}

// FuzzDecodeAdmin: any bytes in an "a" key decode to a record that
// encodes back to them, or to an error; never a panic.
func FuzzDecodeAdmin(f *testing.F) {
	f.Add([]byte{1, 0})
	f.Add([]byte{4, 0, 0, 0, 0, 0, 0, 0, 0, 1})
	f.Fuzz(func(t *testing.T, v []byte) {
		r, err := decodeAdmin(v)
		if err != nil {
			return
		}
		if back := encodeAdmin(r); !bytes.Equal(back, v) {
			t.Fatalf("%x decoded to %+v, which encodes to %x", v, r, back)
		}
	})
}

// TestBalancerLease: metad serves one balancer at a time. A second one's
// steps are refused and change nothing while the first asks within the
// lease; the first's stop frees the place; a first that goes silent
// loses it once the lease is over.
func TestBalancerLease(t *testing.T) {
	clock := newFakeClock()
	m := openCfg(t, Config{Clock: clock, BalancerLease: time.Minute})
	rackCluster(t, m, 2)
	ctx := context.Background()
	step := func(id string, a cairn.BalanceAction) error {
		_, err := m.Balance(ctx, cairn.BalanceRequest{Threshold: 10, Action: a, ID: id})
		return err
	}
	must(t, step("a", cairn.BalanceStatusOnly))
	for _, a := range []cairn.BalanceAction{cairn.BalanceStatusOnly, cairn.BalanceSchedule, cairn.BalanceStop} {
		if err := step("b", a); cairn.KindOf(err) != cairn.KindBusy || !bytes.Contains([]byte(err.Error()), []byte("Another Balancer is running.")) {
			t.Fatalf("a second balancer's step %d: %v, want KindBusy saying another balancer runs", a, err)
		}
	}
	clock.Add(50 * time.Second)
	must(t, step("a", cairn.BalanceSchedule)) // renews
	clock.Add(50 * time.Second)
	if err := step("b", cairn.BalanceStatusOnly); cairn.KindOf(err) != cairn.KindBusy {
		t.Fatalf("within the renewed lease: %v, want KindBusy", err)
	}
	must(t, step("a", cairn.BalanceStop))
	must(t, step("b", cairn.BalanceStatusOnly)) // the first stopped: free
	clock.Add(61 * time.Second)
	must(t, step("a", cairn.BalanceStatusOnly)) // b went silent past the lease
	if err := step("b", cairn.BalanceStatusOnly); cairn.KindOf(err) != cairn.KindBusy {
		t.Fatalf("b after a took over: %v, want KindBusy", err)
	}
}
