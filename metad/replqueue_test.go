package metad

import (
	"context"
	"fmt"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"cairn"
	"cairn/rpc/pb"
)

// replySize is the size of a heartbeat reply on the wire.
func replySize(cmds []cairn.Command) int {
	out := &pb.HeartbeatReply{}
	for _, c := range cmds {
		pc := &pb.Command{Kind: int32(c.Kind), RecoveryId: uint64(c.RecoveryID), Tokens: c.Tokens}
		for _, b := range c.Blocks {
			pc.Blocks = append(pc.Blocks, &pb.Block{Id: uint64(b.ID), GenStamp: uint64(b.GenStamp), Len: b.Len})
		}
		for _, n := range c.Targets {
			pc.Targets = append(pc.Targets, &pb.Node{StorageId: n.StorageID, DataAddr: n.DataAddr, HttpAddr: n.HTTPAddr, Rack: n.Rack})
		}
		for _, k := range c.Keys {
			pc.Keys = append(pc.Keys, &pb.BlockKey{Id: k.ID, Secret: k.Secret})
		}
		out.Commands = append(out.Commands, pc)
	}
	return proto.Size(out)
}

// blockdMaxReply is the largest message a blockd's gRPC client takes
// (gRPC's default receive limit).
const blockdMaxReply = 4 << 20

// TestHeartbeatRepliesBounded: with 400,000 deletions queued for one
// blockd, no heartbeat reply is over the blockd's message limit, and every
// deletion goes out, once, over the following heartbeats.
func TestHeartbeatRepliesBounded(t *testing.T) {
	m := openCfg(t, Config{Clock: newFakeClock()})
	nodes := rackCluster(t, m, 1)
	node := nodes[0].StorageID
	const queued = 400_000
	m.blocks.mu.Lock()
	for i := range queued {
		// Large IDs and stamps, as a long-lived cluster has: the widest
		// varints.
		m.blocks.toDelete[node] = append(m.blocks.toDelete[node], cairn.Block{ID: cairn.BlockID(1<<62 + i), GenStamp: 1<<40 + cairn.GenStamp(i), Len: 64 << 20})
	}
	m.blocks.mu.Unlock()
	sent := map[cairn.BlockID]int{}
	for beats := 0; len(sent) < queued; beats++ {
		if beats > queued {
			t.Fatalf("%d heartbeats and only %d of %d deletions sent", beats, len(sent), queued)
		}
		cmds := beat(t, m, node, 1<<40)
		if n := replySize(cmds); n > blockdMaxReply {
			t.Fatalf("heartbeat %d: a reply of %d bytes, over the blockd's limit of %d", beats, n, blockdMaxReply)
		}
		got := 0
		for _, c := range cmds {
			if c.Kind == cairn.CmdDelete {
				for _, b := range c.Blocks {
					sent[b.ID]++
					got++
				}
			}
		}
		if got == 0 {
			t.Fatalf("heartbeat %d carries no deletion with %d of %d still queued", beats, queued-len(sent), queued)
		}
	}
	for id, n := range sent {
		if n != 1 {
			t.Fatalf("deletion of %d sent %d times", id, n)
		}
	}
}

// under writes n closed files whose one block has replication 3 and
// replicas on holders only.
func under(t *testing.T, m *Metad, prefix string, n int, holders []cairn.Node) []cairn.Block {
	t.Helper()
	var out []cairn.Block
	for i := range n {
		out = append(out, closedOn(t, m, fmt.Sprintf("/%s%d", prefix, i), holders))
	}
	return out
}

// bySource counts the copies each blockd is told to make on its next
// heartbeat.
func bySource(t *testing.T, m *Metad, nodes []cairn.Node) (map[string]int, []cairn.Command) {
	t.Helper()
	out := map[string]int{}
	var all []cairn.Command
	for _, n := range nodes {
		for _, c := range beat(t, m, n.StorageID, 1<<40) {
			if c.Kind == cairn.CmdTransfer {
				out[n.StorageID]++
				all = append(all, c)
			}
		}
	}
	return out, all
}

// TestMaxStreamsPerSource: a blockd is the source of at most
// --replication-max-streams copies at a time (the hard limit for blocks
// with one replica left), however many blocks need one; a copy reported
// done frees its stream for the next block, and blocks with one replica
// left go first.
func TestMaxStreamsPerSource(t *testing.T) {
	m := openCfg(t, Config{Clock: newFakeClock(), MaxStreams: 2, StreamsHardLimit: 3})
	nodes := rackCluster(t, m, 6)
	// Ten blocks with two replicas, on blockds 0 and 1.
	under(t, m, "two", 10, nodes[0:2])
	must(t, m.checkReplication(false))
	per, cmds := bySource(t, m, nodes)
	if per[nodes[0].StorageID] != 2 || per[nodes[1].StorageID] != 2 || len(cmds) != 4 {
		t.Fatalf("ten blocks on two blockds: copies by source %v, want two from each", per)
	}
	// Nothing more while those are under way.
	must(t, m.checkReplication(false))
	if per, _ := bySource(t, m, nodes); len(per) != 0 {
		t.Fatalf("streams busy: more copies %v", per)
	}
	// One reported done: its source gets one more.
	done := cmds[0]
	must(t, m.BlocksReceived(context.Background(), done.Targets[0].StorageID, finalized(done.Blocks[0])))
	must(t, m.checkReplication(false))
	per, _ = bySource(t, m, nodes)
	if len(per) != 1 || sum(per) != 1 {
		t.Fatalf("after one copy done: copies by source %v, want one", per)
	}

	// Blocks with one replica left (on blockd 2) go first, up to the hard
	// limit, ahead of the eight blocks still waiting.
	one := map[cairn.BlockID]bool{}
	for _, b := range under(t, m, "one", 5, nodes[2:3]) {
		one[b.ID] = true
	}
	under(t, m, "two-more", 5, nodes[2:4])
	must(t, m.checkReplication(false))
	per, cmds = bySource(t, m, nodes)
	if per[nodes[2].StorageID] != 3 {
		t.Fatalf("five blocks with one replica on blockd 2: copies by source %v, want three (the hard limit) from it", per)
	}
	firstPrio := 0
	for _, c := range cmds {
		if one[c.Blocks[0].ID] {
			firstPrio++
		}
	}
	if firstPrio != 3 {
		t.Fatalf("%d copies of blocks with one replica left, want 3 (blockd 2's hard limit) before any other of blockd 2's", firstPrio)
	}
	if per[nodes[3].StorageID] > 2 {
		t.Fatalf("blockd 3: %d copies, over --replication-max-streams", per[nodes[3].StorageID])
	}
}

func sum(m map[string]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}

// TestPendingTimeoutReschedules: a copy sent and never reported done is
// not scheduled again before --replication-pending-timeout, and is after.
func TestPendingTimeoutReschedules(t *testing.T) {
	clk := newFakeClock()
	m := openCfg(t, Config{Clock: clk, PendingTimeout: time.Minute})
	nodes := rackCluster(t, m, 4)
	b := closedOn(t, m, "/f", nodes[0:2])
	must(t, m.checkReplication(false))
	if _, cmds := bySource(t, m, nodes); len(cmds) != 1 || cmds[0].Blocks[0].ID != b.ID {
		t.Fatalf("first round: copies %+v, want one of %v", cmds, b)
	}
	clk.Add(50 * time.Second)
	bySource(t, m, nodes) // heartbeats: every blockd stays live
	must(t, m.checkReplication(false))
	if _, cmds := bySource(t, m, nodes); len(cmds) != 0 {
		t.Fatalf("within the pending timeout: copies %+v, want none", cmds)
	}
	clk.Add(11 * time.Second)
	bySource(t, m, nodes)
	must(t, m.checkReplication(false))
	if _, cmds := bySource(t, m, nodes); len(cmds) != 1 || cmds[0].Blocks[0].ID != b.ID {
		t.Fatalf("past the pending timeout: copies %+v, want %v again", cmds, b)
	}
}

// TestDeadSourceCopiesRescheduled: a copy queued on a source that dies
// before it takes it is scheduled again from a live holder at the next
// round, not left pending until the pending timeout (or for good, when it
// was never sent).
func TestDeadSourceCopiesRescheduled(t *testing.T) {
	clk := newFakeClock()
	m := openCfg(t, Config{Clock: clk, PendingTimeout: time.Hour, DeadAfter: 30 * time.Second})
	nodes := rackCluster(t, m, 4)
	b := closedOn(t, m, "/f", nodes[0:2])
	must(t, m.checkReplication(false))
	// The source is one of the two holders; it dies before its heartbeat.
	src := ""
	m.repl.mu.Lock()
	if p := m.repl.pending[b.ID]; p != nil {
		src = p.source
	}
	m.repl.mu.Unlock()
	if src == "" {
		t.Fatal("no copy scheduled")
	}
	var others []cairn.Node
	for _, n := range nodes {
		if n.StorageID != src {
			others = append(others, n)
		}
	}
	clk.Add(31 * time.Second)
	for _, n := range others {
		beat(t, m, n.StorageID, 1<<40)
	}
	must(t, m.checkReplication(false))
	_, cmds := bySource(t, m, others)
	if len(cmds) != 1 || cmds[0].Blocks[0].ID != b.ID {
		t.Fatalf("after the source %s died: copies %+v, want %v scheduled again from the live holder", src, cmds, b)
	}
}

// TestBalancerMovesApartFromStreams: a source busy with balancer moves up
// to its move limit still has its streams for the monitor's copies, and
// one busy with copies still takes moves; each kind is bounded by its own
// limit, and a move done or dropped frees a move, not a stream.
func TestBalancerMovesApartFromStreams(t *testing.T) {
	q := newReplQueue(2, 4, 3, time.Minute)
	copyOf := func(id cairn.BlockID) cairn.Command {
		return cairn.Command{Kind: cairn.CmdTransfer, Blocks: []cairn.Block{{ID: id}}, Targets: []cairn.Node{{StorageID: "dst"}}}
	}
	for id := cairn.BlockID(1); id <= 3; id++ {
		if !q.room("src", prioBalance) || !q.addMove("src", copyOf(id), "dst", 10) {
			t.Fatalf("move %d of 3 refused", id)
		}
	}
	if q.room("src", prioBalance) {
		t.Fatal("a fourth move has room: the move limit is 3")
	}
	for id := cairn.BlockID(10); id < 12; id++ {
		if !q.room("src", prioLow) {
			t.Fatalf("three moves under way took the streams of the monitor's copy %d", id)
		}
		q.add("src", copyOf(id))
	}
	if q.room("src", prioLow) || !q.room("src", prioHighest) {
		t.Fatal("two copies: want no stream left for prioLow, the hard limit's for prioHighest")
	}
	q.moveFinished(1, true)
	q.moveFinished(2, false)
	if !q.room("src", prioBalance) || q.room("src", prioLow) {
		t.Fatal("two moves over: want room for moves and still none for copies")
	}
	if _, _, tally := q.moves(); tally.done != 1 || tally.failed != 1 {
		t.Fatalf("tally %+v, want one done and one failed", tally)
	}
}
