package metad

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"cairn"
)

// closedFile writes a closed one-block file of n bytes at path with
// replication 3, every replica finalized on nodes, and returns its block.
func closedFile(t *testing.T, m *Metad, path string, n int64, nodes []cairn.Node) cairn.Block {
	t.Helper()
	ctx := context.Background()
	if _, err := m.Create(ctx, path, cairn.CreateOptions{Client: "w", Replication: 3, BlockSize: 64 << 20}); err != nil {
		t.Fatal(err)
	}
	lb, err := m.AddBlock(ctx, cairn.WriterRef{Path: path, Client: "w"}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	b := lb.Block
	b.Len = n
	for _, node := range nodes {
		must(t, m.BlocksReceived(ctx, node.StorageID, finalized(b)))
	}
	must(t, m.Complete(ctx, cairn.WriterRef{Path: path, Client: "w"}, &b))
	return b
}

// deletes returns the replicas of block id each node is told to delete.
func deletes(cmds map[string][]cairn.Command, id cairn.BlockID) map[string][]cairn.Block {
	out := map[string][]cairn.Block{}
	for node, cs := range cmds {
		for _, c := range cs {
			if c.Kind != cairn.CmdDelete {
				continue
			}
			for _, b := range c.Blocks {
				if b.ID == id {
					out[node] = append(out[node], b)
				}
			}
		}
	}
	return out
}

// locations returns the storage IDs BlockLocations offers for path's
// first block, sorted.
func locations(t *testing.T, m *Metad, path string) []string {
	t.Helper()
	fb, err := m.BlockLocations(context.Background(), cairn.FileRef{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, n := range fb.Blocks[0].Locations {
		ids = append(ids, n.StorageID)
	}
	slices.Sort(ids)
	return ids
}

// TestStaleReportAfterAppendKeepsReplicas: an appender that dies before
// it sets up its pipeline. Full block reports of the replicas, before and
// after the abandoned append is recovered and the file closed again, must
// not delete any of them: they are the only copies of the file's bytes.
// (Append used to give the last block a new stamp before any blockd had
// it, so the reports looked stale and every replica was deleted.)
func TestStaleReportAfterAppendKeepsReplicas(t *testing.T) {
	clk := newFakeClock()
	m := openCfg(t, Config{Clock: clk, LeaseSoft: time.Minute, LeaseHard: time.Hour})
	nodes := registerNodes(t, m, 3)
	ctx := context.Background()
	old := closedFile(t, m, "/f", 1<<20, nodes)

	if _, last, err := m.Append(ctx, "/f", "appender"); err != nil || last == nil || last.GenStamp != old.GenStamp {
		t.Fatalf("append: %v, %v; want the last block at its stamp %d (the appender commits a new one with its pipeline)", last, err, old.GenStamp)
	}
	report := func() {
		t.Helper()
		for _, n := range nodes {
			must(t, m.BlockReport(ctx, n.StorageID, finalized(old)))
		}
	}
	report()
	if d := deletes(heartbeatAll(t, m, nodes, ""), old.ID); len(d) > 0 {
		t.Fatalf("a full report after an append deletes replicas of the file: %v", d)
	}
	// The appender goes away; past the hard limit metad closes the file.
	for range 61 {
		clk.Add(time.Minute)
		heartbeatAll(t, m, nodes, "")
	}
	if _, err := m.recoverExpiredLeases(); err != nil {
		t.Fatal(err)
	}
	recovered := 0
	for _, n := range nodes {
		recovered += playPrimary(t, m, n.StorageID, map[cairn.BlockID]int64{old.ID: old.Len})
	}
	if recovered != 1 {
		t.Fatalf("%d block recoveries, want 1", recovered)
	}
	if stat(t, m, "/f").Writing {
		t.Fatal("the abandoned append was not recovered")
	}
	report()
	must(t, m.checkReplication(true))
	if d := deletes(heartbeatAll(t, m, nodes, ""), old.ID); len(d) > 0 {
		t.Fatalf("the old-stamp replicas of a closed file, its only copies, are deleted: %v", d)
	}
}

// TestClientReportsCannotHideReplicas: three clients' reports against a
// healthy block, one per replica, leave every replica offered and on disk;
// each holder is asked to verify its replica instead.
func TestClientReportsCannotHideReplicas(t *testing.T) {
	clk := newFakeClock()
	m := openCfg(t, Config{Clock: clk})
	nodes := registerNodes(t, m, 3)
	ctx := context.Background()
	b := closedFile(t, m, "/f", 1<<20, nodes)
	for _, n := range nodes {
		must(t, m.ReportBadReplicas(ctx, []cairn.BadReplica{{Block: b, StorageID: n.StorageID, Reason: "checksum mismatch at chunk 0"}}))
	}
	must(t, m.checkReplication(true))
	cmds := heartbeatAll(t, m, nodes, "")
	if d := deletes(cmds, b.ID); len(d) > 0 {
		t.Fatalf("clients' unconfirmed reports delete replicas: %v", d)
	}
	if got := locations(t, m, "/f"); len(got) != 3 {
		t.Fatalf("after three clients' reports metad offers %v, want all 3 replicas", got)
	}
	for _, n := range nodes {
		verify := false
		for _, c := range cmds[n.StorageID] {
			if c.Kind == cairn.CmdVerify && len(c.Blocks) == 1 && c.Blocks[0].ID == b.ID {
				verify = true
			}
		}
		if !verify {
			t.Errorf("%s is not asked to verify its reported replica: %+v", n.StorageID, cmds[n.StorageID])
		}
	}
}

// verifies returns the blocks each node is asked to verify.
func verifies(cmds map[string][]cairn.Command) map[string][]cairn.Block {
	out := map[string][]cairn.Block{}
	for node, cs := range cmds {
		for _, c := range cs {
			if c.Kind == cairn.CmdVerify {
				out[node] = append(out[node], c.Blocks...)
			}
		}
	}
	return out
}

// TestCorruptReplicaConfirmedCopiedThenDeleted: a client's report makes
// metad ask the holder to verify; the holder's report marks the replica;
// metad stops offering it, copies the block from a good replica to a
// blockd that holds none, and deletes the corrupt one only once the copy
// is reported. A later full report of the corrupt replica keeps its mark.
func TestCorruptReplicaConfirmedCopiedThenDeleted(t *testing.T) {
	clk := newFakeClock()
	m := openCfg(t, Config{Clock: clk})
	nodes := registerNodes(t, m, 4)
	ctx := context.Background()
	b := closedFile(t, m, "/f", 1<<20, nodes[:3])
	bad := nodes[0].StorageID

	must(t, m.ReportBadReplicas(ctx, []cairn.BadReplica{{Block: b, StorageID: bad, Reason: "checksum mismatch at chunk 3"}}))
	cmds := heartbeatAll(t, m, nodes, "")
	if v := verifies(cmds); len(v) != 1 || len(v[bad]) != 1 || v[bad][0] != b {
		t.Fatalf("verify commands %v, want %s asked to verify %s", v, bad, b)
	}
	if got := locations(t, m, "/f"); len(got) != 3 {
		t.Fatalf("an unconfirmed report hides a replica: %v", got)
	}
	// The holder confirms.
	must(t, m.BadReplicasFound(ctx, bad, []cairn.BadReplica{{Block: b, StorageID: bad, Reason: "checksum mismatch at chunk 3 (offset 196608)"}}))
	if got := locations(t, m, "/f"); slices.Contains(got, bad) || len(got) != 2 {
		t.Fatalf("after the holder confirmed, metad offers %v", got)
	}
	// A full report of the corrupt replica does not clear its mark.
	must(t, m.BlockReport(ctx, bad, finalized(b)))
	if got := locations(t, m, "/f"); slices.Contains(got, bad) {
		t.Fatalf("a full report made the corrupt replica good again: %v", got)
	}
	must(t, m.checkReplication(true))
	cmds = heartbeatAll(t, m, nodes, "")
	if d := deletes(cmds, b.ID); len(d) > 0 {
		t.Fatalf("the corrupt replica is deleted before the block has 3 good replicas: %v", d)
	}
	var copies []cairn.Command
	for node, cs := range cmds {
		for _, c := range cs {
			if c.Kind == cairn.CmdTransfer {
				if node == bad {
					t.Fatalf("the corrupt replica is the source of a copy: %+v", c)
				}
				copies = append(copies, c)
			}
		}
	}
	if len(copies) != 1 || len(copies[0].Targets) != 1 || copies[0].Targets[0].StorageID != nodes[3].StorageID {
		t.Fatalf("copies %+v, want one to %s (the blockd without a replica)", copies, nodes[3].StorageID)
	}
	must(t, m.BlocksReceived(ctx, nodes[3].StorageID, finalized(b)))
	must(t, m.checkReplication(true))
	cmds = heartbeatAll(t, m, nodes, "")
	if d := deletes(cmds, b.ID); len(d) != 1 || len(d[bad]) != 1 {
		t.Fatalf("deletions %v once the copy is reported, want the corrupt replica on %s", d, bad)
	}
	if got := locations(t, m, "/f"); len(got) != 3 || slices.Contains(got, bad) {
		t.Fatalf("after the copy metad offers %v", got)
	}
}

// TestBadReplicasFoundChecksItsReporter: a report from an unregistered
// blockd, or of another blockd's replica, is refused and changes nothing;
// one naming another stamp than the blockd's replica changes nothing.
func TestBadReplicasFoundChecksItsReporter(t *testing.T) {
	m := openCfg(t, Config{Clock: newFakeClock()})
	nodes := registerNodes(t, m, 3)
	ctx := context.Background()
	b := closedFile(t, m, "/f", 1000, nodes)
	one := func(node string, blk cairn.Block) []cairn.BadReplica {
		return []cairn.BadReplica{{Block: blk, StorageID: node, Reason: "bad"}}
	}
	if err := m.BadReplicasFound(ctx, "DS-X", one("DS-X", b)); cairn.KindOf(err) != cairn.KindInvalid {
		t.Errorf("a report from an unregistered blockd: %v, want ErrInvalid", err)
	}
	if err := m.BadReplicasFound(ctx, "DS-0", one("DS-1", b)); cairn.KindOf(err) != cairn.KindInvalid {
		t.Errorf("DS-0 reporting DS-1's replica: %v, want ErrInvalid", err)
	}
	if err := m.BadReplicasFound(ctx, "DS-0", one("DS-0", cairn.Block{})); cairn.KindOf(err) != cairn.KindInvalid {
		t.Errorf("a report without a block: %v, want ErrInvalid", err)
	}
	other := b
	other.GenStamp++
	must(t, m.BadReplicasFound(ctx, "DS-2", one("DS-2", other)))
	if got := locations(t, m, "/f"); len(got) != 3 {
		t.Fatalf("refused or other-stamp reports hid replicas: %v", got)
	}
	must(t, m.ReportBadReplicas(ctx, one("DS-1", other)))
	if v := verifies(heartbeatAll(t, m, nodes, "")); len(v) > 0 {
		t.Errorf("a client's report of another stamp asks for verification: %v", v)
	}
	if err := m.ReportBadReplicas(ctx, one("", b)); cairn.KindOf(err) != cairn.KindInvalid {
		t.Errorf("a client's report without a storage ID: %v, want ErrInvalid", err)
	}
}

// TestEveryReplicaCorrupt: a block whose every replica is bad is never
// left without them: none is deleted, and readers are offered them as a
// last resort (they verify every chunk), the block counted corrupt.
func TestEveryReplicaCorrupt(t *testing.T) {
	m := openCfg(t, Config{Clock: newFakeClock()})
	nodes := registerNodes(t, m, 4)
	ctx := context.Background()
	b := closedFile(t, m, "/f", 1<<20, nodes[:3])
	for _, n := range nodes[:3] {
		must(t, m.BadReplicasFound(ctx, n.StorageID, []cairn.BadReplica{{Block: b, StorageID: n.StorageID, Reason: "checksum mismatch at chunk 1"}}))
	}
	must(t, m.checkReplication(true))
	if d := deletes(heartbeatAll(t, m, nodes, ""), b.ID); len(d) > 0 {
		t.Fatalf("replicas of a block with no good one are deleted: %v", d)
	}
	fb, err := m.BlockLocations(ctx, cairn.FileRef{Path: "/f"})
	if err != nil {
		t.Fatal(err)
	}
	if lb := fb.Blocks[0]; len(lb.Locations) != 3 || lb.Corrupt != 3 {
		t.Fatalf("a block with every replica corrupt: offered %v, corrupt %d; want all 3, 3", lb.Locations, lb.Corrupt)
	}
}

// TestReplicaReportJudgesReplicas: fsck's view of a closed file's block
// names each replica's fault against metad's record.
func TestReplicaReportJudgesReplicas(t *testing.T) {
	m := openCfg(t, Config{Clock: newFakeClock()})
	nodes := registerNodes(t, m, 6)
	ctx := context.Background()
	b := closedFile(t, m, "/f", 1<<20, nodes[:1])
	short := b
	short.Len = 0
	stale := b
	stale.GenStamp--
	must(t, m.BlockReport(ctx, "DS-1", finalized(short)))
	must(t, m.BlockReport(ctx, "DS-2", finalized(stale)))
	// A whole RWR at the block's stamp (an append cut short before its
	// first byte) is a good copy; a short one is not.
	must(t, m.BlockReport(ctx, "DS-3", []cairn.Replica{{Block: b, State: cairn.ReplicaRWR}}))
	cut := b
	cut.Len--
	must(t, m.BlockReport(ctx, "DS-4", []cairn.Replica{{Block: cut, State: cairn.ReplicaRWR}}))
	// At the new stamp of an append that never committed it, whole: good.
	reopened := b
	reopened.GenStamp++
	must(t, m.BlockReport(ctx, "DS-5", []cairn.Replica{{Block: reopened, State: cairn.ReplicaRWR}}))
	fr, err := m.ReplicaReport(ctx, "/f")
	if err != nil {
		t.Fatal(err)
	}
	if fr.Writing || fr.Replication != 3 || len(fr.Blocks) != 1 || fr.Blocks[0].Block != b {
		t.Fatalf("replica report %+v", fr)
	}
	want := map[string]string{"DS-0": "", "DS-1": "length mismatch", "DS-2": "stale generation stamp", "DS-3": "", "DS-4": "unfinished replica (RWR)", "DS-5": ""}
	reps := fr.Blocks[0].Replicas
	if len(reps) != len(want) {
		t.Fatalf("replicas %+v, want one on each of %v", reps, want)
	}
	for _, r := range reps {
		w := want[r.StorageID]
		if (w == "") != r.Good || !r.Live || (w != "" && !strings.HasPrefix(r.Corrupt, w)) {
			t.Errorf("%s: good %v, corrupt %q; want %q", r.StorageID, r.Good, r.Corrupt, w)
		}
	}
}

// TestUnfinishedReplicasOfClosedFile: a replica found in rbw/ after a crash
// (RWR) of a closed file's block is marked corrupt but kept while the block
// lacks good replicas; a full report taken before a replica's finalize (RBW
// at the block's stamp) does not undo the finalized record.
func TestUnfinishedReplicasOfClosedFile(t *testing.T) {
	m := openCfg(t, Config{Clock: newFakeClock()})
	nodes := registerNodes(t, m, 3)
	ctx := context.Background()
	b := closedFile(t, m, "/f", 1<<20, nodes[:1])
	short := b
	short.Len = 4096
	must(t, m.BlockReport(ctx, "DS-1", []cairn.Replica{{Block: short, State: cairn.ReplicaRWR}}))
	must(t, m.BlockReport(ctx, "DS-0", []cairn.Replica{{Block: b, State: cairn.ReplicaRBW}}))
	must(t, m.checkReplication(true))
	if d := deletes(heartbeatAll(t, m, nodes, ""), b.ID); len(d) > 0 {
		t.Fatalf("replicas deleted while the block has one good replica of 3: %v", d)
	}
	if got := locations(t, m, "/f"); len(got) != 1 || got[0] != "DS-0" {
		t.Fatalf("offered %v, want the finalized replica on DS-0", got)
	}
	fr, err := m.ReplicaReport(ctx, "/f")
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range fr.Blocks[0].Replicas {
		if r.StorageID == "DS-1" && !strings.HasPrefix(r.Corrupt, "unfinished replica (RWR)") {
			t.Errorf("the RWR replica: %+v", r)
		}
	}
}

// TestJudgedMarkUndoneWhenRecordCatchesUp: a replica judged against a
// record behind it (here reported before the append that made it is in
// the store; in a group, by a leader deposed while it stood still, whose
// store was behind its successor's) is marked corrupt for a length the
// record does not have yet. Once the record has caught up, the next report
// of the same replica finds it good, and fsck must not go on calling it
// corrupt. A replica whose bytes a blockd's scanner found bad stays
// marked whatever its length.
func TestJudgedMarkUndoneWhenRecordCatchesUp(t *testing.T) {
	m := openCfg(t, Config{Clock: newFakeClock()})
	nodes := registerNodes(t, m, 3)
	ctx := context.Background()
	old := closedFile(t, m, "/f", 4096, nodes[:1])
	// The replicas the append below will leave, reported before the
	// store has the append: the stamp it will be given, longer.
	ahead := cairn.Block{ID: old.ID, GenStamp: old.GenStamp + 1, Len: 8192}
	must(t, m.BlocksReceived(ctx, "DS-1", finalized(ahead)))
	must(t, m.BlocksReceived(ctx, "DS-2", finalized(ahead)))
	corrupt := func() map[string]string {
		t.Helper()
		fr, err := m.ReplicaReport(ctx, "/f")
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]string{}
		for _, r := range fr.Blocks[0].Replicas {
			out[r.StorageID] = r.Corrupt
		}
		return out
	}
	if c := corrupt(); !strings.HasPrefix(c["DS-1"], "length mismatch") {
		t.Fatalf("a replica longer than the closed file's record: corrupt %q, want a length mismatch", c["DS-1"])
	}

	w := cairn.WriterRef{Path: "/f", Client: "appender"}
	if _, _, err := m.Append(ctx, "/f", "appender"); err != nil {
		t.Fatal(err)
	}
	ulb, err := m.UpdateBlockForPipeline(ctx, w, old)
	if err != nil || ulb.GenStamp != ahead.GenStamp {
		t.Fatalf("UpdateBlockForPipeline: %v, %v; want stamp %d", ulb.Block, err, ahead.GenStamp)
	}
	updated := ahead
	updated.Len = old.Len
	must(t, m.UpdatePipeline(ctx, w, old, updated, nodes[1:]))
	must(t, m.Complete(ctx, w, &ahead, nodes[1:]...))
	// The scanner of DS-2 finds the bytes of its replica bad.
	must(t, m.BadReplicasFound(ctx, "DS-2", []cairn.BadReplica{{Block: ahead, StorageID: "DS-2", Reason: "checksum mismatch at chunk 1"}}))

	must(t, m.BlockReport(ctx, "DS-1", finalized(ahead)))
	must(t, m.BlockReport(ctx, "DS-2", finalized(ahead)))
	c := corrupt()
	if c["DS-1"] != "" {
		t.Errorf("DS-1's replica, as long as the record now says, is still called corrupt: %q", c["DS-1"])
	}
	if !strings.Contains(c["DS-2"], "checksum") {
		t.Errorf("DS-2's replica, found bad by its scanner, is no longer called corrupt: %q", c["DS-2"])
	}
}

// TestStalledLeaderDefersVerdicts: a leader whose process stood still
// lately may have been deposed meanwhile without knowing it, its store
// behind its successor's; a replica reported then that its store does not
// know is not deleted on its word (nor one it calls corrupt marked). The
// verdict waits until the member has confirmed it leads, and is made then.
func TestStalledLeaderDefersVerdicts(t *testing.T) {
	m := startGroupOfOne(t)
	nodes := registerNodes(t, m, 1)
	ctx := context.Background()
	unknown := cairn.Block{ID: 1 << 40, GenStamp: 1, Len: 10}

	m.rep.stall.suspectUntil.Store(m.rep.stall.now() + int64(time.Hour)) // it stood still
	must(t, m.BlocksReceived(ctx, "DS-0", finalized(unknown)))
	if d := deletes(heartbeatAll(t, m, nodes, ""), unknown.ID); len(d) > 0 {
		t.Fatalf("a leader that stood still deletes a replica its store does not know: %v", d)
	}

	// A while later, still leading. (The stall watch runs on: on a loaded
	// machine it may see a stall of its own, which defers the verdict one
	// round more.)
	var d map[string][]cairn.Block
	for range 500 {
		m.rep.stall.suspectUntil.Store(0)
		m.leaderWork(m.rejudgeDoubtful)
		if d = deletes(heartbeatAll(t, m, nodes, ""), unknown.ID); len(d) > 0 {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if len(d["DS-0"]) != 1 {
		t.Fatalf("the deferred verdict on a replica of no file, once the member leads for sure: deletes %v, want DS-0's", d)
	}
}

// TestNewLeaderDropsOldDeletions: deletions a member queued while it led
// before are not sent when it leads again: they were decided on a block
// map and namespace that have changed since.
func TestNewLeaderDropsOldDeletions(t *testing.T) {
	m := startGroupOfOne(t)
	nodes := registerNodes(t, m, 1)
	ctx := context.Background()
	unknown := cairn.Block{ID: 1 << 40, GenStamp: 1, Len: 10}
	var err error
	for range 500 { // past any stall the watch saw of its own
		m.rep.stall.suspectUntil.Store(0)
		if err = m.BlocksReceived(ctx, "DS-0", finalized(unknown)); err != nil {
			t.Fatal(err)
		}
		m.blocks.mu.Lock()
		queued := len(m.blocks.toDelete["DS-0"])
		m.blocks.mu.Unlock()
		if queued > 0 {
			break
		}
		m.leaderWork(m.rejudgeDoubtful)
	}
	m.rep.becomeLeader() // as after leading again
	if d := deletes(heartbeatAll(t, m, nodes, ""), unknown.ID); len(d) > 0 {
		t.Fatalf("a deletion queued under an earlier leadership is sent: %v", d)
	}
}
