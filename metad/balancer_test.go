package metad

import (
	"context"
	"fmt"
	"math"
	"testing"

	"cairn"
)

func bnode(id, rack string, capacity, used int64) *balanceNode {
	return &balanceNode{Node: cairn.Node{StorageID: id, Rack: rack}, capacity: capacity, used: used, remaining: capacity - used}
}

func nodeNames(ns []*balanceNode) []string {
	var out []string
	for _, n := range ns {
		out = append(out, n.StorageID)
	}
	return out
}

func pairString(ps []pairing) string {
	s := ""
	for _, p := range ps {
		s += fmt.Sprintf("%s->%s:%d ", p.src.StorageID, p.dst.StorageID, p.bytes)
	}
	return s
}

// TestPlanBalance: blockds are classified against the cluster's mean use
// (all used over all capacity) with the threshold, as HDFS's Balancer
// does, and the bytes left to move are what brings every one within it;
// sources pair with targets on their own rack first, over-utilized with
// under-utilized first, each pair moving at most the threshold's worth of
// either's capacity.
func TestPlanBalance(t *testing.T) {
	// Mean 50%: A 90, C 80 over; B 10, D 20 under; E 55 above average;
	// F 45 below.
	nodes := []*balanceNode{
		bnode("A", "/r0", 1000, 900), bnode("B", "/r0", 1000, 100),
		bnode("C", "/r1", 1000, 800), bnode("D", "/r1", 1000, 200),
		bnode("E", "/r1", 1000, 550), bnode("F", "/r0", 1000, 450),
	}
	p := planBalance(nodes, 10)
	if p.avg != 50 {
		t.Fatalf("mean %v, want 50", p.avg)
	}
	for _, c := range []struct {
		what      string
		got, want []string
	}{{"over", nodeNames(p.over), []string{"A", "C"}}, {"under", nodeNames(p.under), []string{"B", "D"}},
		{"above average", nodeNames(p.aboveAvg), []string{"E"}}, {"below average", nodeNames(p.belowAvg), []string{"F"}}} {
		if fmt.Sprint(c.got) != fmt.Sprint(c.want) {
			t.Errorf("%s: %v, want %v", c.what, c.got, c.want)
		}
	}
	// Over: (90-50-10) + (80-50-10) = 50 points of 1000 bytes; under the same.
	if p.bytesLeft != 500 {
		t.Errorf("bytes left to move %d, want 500", p.bytesLeft)
	}
	// Same rack first: A->B and C->D, 100 bytes each (10% of 1000). Above
	// average never pairs with below average (E, F): only with the
	// under- and over-utilized, whose room is used up.
	if got := pairString(p.pairs()); got != "A->B:100 C->D:100 " {
		t.Errorf("pairs %q", got)
	}

	// Only across racks: the over-utilized blockds' rack has no target;
	// C takes 10% of its capacity, all from the first.
	p = planBalance([]*balanceNode{bnode("A", "/r0", 1000, 900), bnode("B", "/r0", 1000, 700), bnode("C", "/r1", 1000, 0)}, 10)
	if got := pairString(p.pairs()); got != "A->C:100 " {
		t.Errorf("across racks: pairs %q", got)
	}
	// A target takes no more than its free space.
	n := bnode("C", "/r1", 1000, 0)
	n.remaining = 30
	p = planBalance([]*balanceNode{bnode("A", "/r0", 1000, 900), n}, 10)
	if got := pairString(p.pairs()); got != "A->C:30 " {
		t.Errorf("a target with 30 bytes free: pairs %q", got)
	}
	// Balanced: nothing to move.
	p = planBalance([]*balanceNode{bnode("A", "/r0", 1000, 540), bnode("B", "/r1", 1000, 460)}, 10)
	if p.bytesLeft != 0 || len(p.over)+len(p.under) != 0 {
		t.Errorf("within the threshold: %+v", p)
	}
}

// TestKeepsRacks: a move never puts two replicas of a block on one
// blockd, and never leaves it on fewer racks.
func TestKeepsRacks(t *testing.T) {
	n := func(id, rack string) cairn.Node { return cairn.Node{StorageID: id, Rack: rack} }
	a, b, c := n("a", "/r0"), n("b", "/r1"), n("c", "/r1")
	for _, tc := range []struct {
		src, dst cairn.Node
		want     bool
	}{
		{a, n("x", "/r0"), true},  // within /r0
		{b, n("x", "/r1"), true},  // within /r1
		{b, n("x", "/r0"), true},  // /r1 keeps c
		{a, n("x", "/r1"), false}, // /r0 would lose its only replica
		{a, n("x", "/r2"), true},  // a new rack for an old one
		{a, c, false},             // c holds it already
		{n("z", "/r0"), n("x", "/r0"), false},
	} {
		if got := keepsRacks([]cairn.Node{a, b, c}, tc.src, tc.dst); got != tc.want {
			t.Errorf("move %s(%s) -> %s(%s): %v, want %v", tc.src.StorageID, tc.src.Rack, tc.dst.StorageID, tc.dst.Rack, got, tc.want)
		}
	}
}

// balanceSim is a metad with blockds whose heartbeats report their use as
// blockSize times the replicas metad records on them, of capacity bytes.
type balanceSim struct {
	t        *testing.T
	m        *Metad
	nodes    []cairn.Node
	capacity int64
}

const simBlock = 1000

func (s *balanceSim) beat(n cairn.Node) []cairn.Command {
	s.t.Helper()
	used := simBlock * s.m.blocks.countOn(n.StorageID)
	cmds, err := s.m.Heartbeat(context.Background(), cairn.Heartbeat{StorageID: n.StorageID, Capacity: s.capacity, Used: used, Remaining: s.capacity - used})
	if err != nil {
		s.t.Fatal(err)
	}
	return cmds
}

// round beats every blockd, and has every copy it is asked for arrive
// (each target reports it finalized) unless drop says to lose it; it
// returns the copies.
func (s *balanceSim) round(drop func(cairn.Command) bool) []cairn.Command {
	s.t.Helper()
	var copies []cairn.Command
	for _, n := range s.nodes {
		for _, c := range s.beat(n) {
			if c.Kind == cairn.CmdTransfer {
				copies = append(copies, c)
			}
		}
	}
	for _, c := range copies {
		if drop != nil && drop(c) {
			continue
		}
		for _, tg := range c.Targets {
			must(s.t, s.m.BlocksReceived(context.Background(), tg.StorageID, finalized(c.Blocks[0])))
		}
	}
	for _, n := range s.nodes {
		s.beat(n) // the new use
	}
	return copies
}

// newBalanceSim: two racks of two blockds holding 12 blocks of three
// replicas on both racks, and an empty blockd added to each rack.
func newBalanceSim(t *testing.T) (*balanceSim, []cairn.Block) {
	m := openCfg(t, Config{Clock: newFakeClock()})
	old := rackCluster(t, m, 2, 2) // r0: 0,1; r1: 2,3
	var blocks []cairn.Block
	for i := range 12 {
		a, b := old[i%2], old[2+(i/2)%2]
		third := old[(i+1)%2]
		if i%4 >= 2 {
			third = old[2+(i/2+1)%2]
		}
		blocks = append(blocks, closedOn(t, m, fmt.Sprintf("/f%d", i), []cairn.Node{a, b, third}))
	}
	s := &balanceSim{t: t, m: m, nodes: old, capacity: 30 * simBlock}
	for _, rack := range []string{"/r0", "/r1"} {
		n := cairn.Node{StorageID: "DS-new" + rack[1:], DataAddr: "10.1." + rack[2:] + ".9:9866", Rack: rack}
		if _, err := m.Register(context.Background(), cairn.Registration{Node: n}); err != nil {
			t.Fatal(err)
		}
		s.nodes = append(s.nodes, n)
	}
	for _, n := range s.nodes {
		s.beat(n)
	}
	return s, blocks
}

// checkBlocks fails t unless every block has three good replicas on live
// blockds, on both racks, on three blockds.
func (s *balanceSim) checkBlocks(blocks []cairn.Block) {
	s.t.Helper()
	for _, b := range blocks {
		var on []cairn.Node
		for _, h := range s.m.blocks.holders(b) {
			on = append(on, byID(s.nodes, h))
		}
		if len(on) != 3 || rackSpan(on) != 2 {
			s.t.Fatalf("block %v on %v: want three replicas on two racks", b.ID, ids(on))
		}
	}
}

// TestBalancerConverges: after two empty blockds join, iterations of
// Balance move replicas from the four full ones to them, each a copy
// (throttled to the balancer's bandwidth) and then the deletion of the
// source's replica, until every blockd is within the threshold of the
// mean; every block keeps three replicas on both racks throughout, and
// the replication monitor, run between steps, trims nothing.
func TestBalancerConverges(t *testing.T) {
	s, blocks := newBalanceSim(t)
	ctx := context.Background()
	req := cairn.BalanceRequest{Threshold: 10, Bandwidth: 1 << 20, Action: cairn.BalanceSchedule}
	var st cairn.BalanceStatus
	for iter := 0; ; iter++ {
		if iter > 20 {
			t.Fatalf("not balanced after 20 iterations: %+v", st)
		}
		var err error
		if st, err = s.m.Balance(ctx, req); err != nil {
			t.Fatal(err)
		}
		if st.BytesLeftToMove == 0 && st.MovesPending == 0 {
			break
		}
		if st.MovesScheduled == 0 {
			t.Fatalf("iteration %d: nothing scheduled with %d bytes left: %+v", iter, st.BytesLeftToMove, st)
		}
		copies := s.round(nil)
		for _, c := range copies {
			if c.Bandwidth != req.Bandwidth || len(c.Targets) != 1 {
				t.Fatalf("a balancer copy %+v: want one target and bandwidth %d", c, req.Bandwidth)
			}
		}
		must(t, s.m.checkReplication(true))
		s.checkBlocks(blocks)
	}
	if st.MovesDone == 0 || st.MovesFailed != 0 || st.BytesMoved != st.MovesDone*simBlock {
		t.Fatalf("balanced: %+v, want moves done and none failed", st)
	}
	avg := st.Average
	for _, n := range st.Nodes {
		if u := 100 * float64(n.Used) / float64(n.Capacity); math.Abs(u-avg) > 10 {
			t.Errorf("blockd %s at %.1f%%, mean %.1f%%: beyond the threshold", n.StorageID, u, avg)
		}
	}
	if len(st.Nodes) != 6 {
		t.Fatalf("status lists %d blockds, want 6", len(st.Nodes))
	}
	s.checkBlocks(blocks)
}

// TestBalancerMoveKeepsTheLastReplicas: a move whose copy arrives after
// another holder of its block left service keeps its source's replica
// (the block would be short of its count without it), and counts as
// failed; a move stopped before its source took it is dropped, one
// already sent goes on.
func TestBalancerMoveKeepsTheLastReplicas(t *testing.T) {
	s, _ := newBalanceSim(t)
	ctx := context.Background()
	st, err := s.m.Balance(ctx, cairn.BalanceRequest{Threshold: 10, Action: cairn.BalanceSchedule})
	if err != nil || st.MovesScheduled == 0 {
		t.Fatalf("schedule: %+v, %v", st, err)
	}
	// The sources take their copies; none has arrived yet.
	var copies []cairn.Command
	for _, n := range s.nodes {
		for _, c := range s.beat(n) {
			if c.Kind == cairn.CmdTransfer {
				copies = append(copies, c)
			}
		}
	}
	if len(copies) != int(st.MovesScheduled) {
		t.Fatalf("%d copies handed out, %d scheduled", len(copies), st.MovesScheduled)
	}
	// One copy's block loses another holder to decommissioning before
	// the copy arrives.
	c := copies[0]
	b := c.Blocks[0]
	src, ok := s.m.repl.moveTo(b.ID, c.Targets[0].StorageID)
	if !ok {
		t.Fatalf("no move of %v to %s under way", b.ID, c.Targets[0].StorageID)
	}
	other := ""
	for _, h := range s.m.blocks.holders(b) {
		if h != src {
			other = h
			break
		}
	}
	if _, err := s.m.SetNodeAdmin(ctx, other, cairn.NodeDecommission, 0); err != nil {
		t.Fatal(err)
	}
	must(t, s.m.BlocksReceived(ctx, c.Targets[0].StorageID, finalized(b)))
	srcHas := false
	for _, h := range s.m.blocks.holders(b) {
		srcHas = srcHas || h == src
	}
	if !srcHas {
		t.Fatalf("the source's replica of %v was deleted while another holder left service", b.ID)
	}
	st, err = s.m.Balance(ctx, cairn.BalanceRequest{Threshold: 10})
	if err != nil || st.MovesFailed != 1 {
		t.Fatalf("status: %+v, %v; want one failed move", st, err)
	}

	// Stop: moves not yet sent are dropped.
	if _, err := s.m.SetNodeAdmin(ctx, other, cairn.NodeRecommission, 0); err != nil {
		t.Fatal(err)
	}
	for _, n := range s.nodes {
		s.beat(n)
	}
	st, err = s.m.Balance(ctx, cairn.BalanceRequest{Threshold: 10, Action: cairn.BalanceSchedule})
	if err != nil {
		t.Fatal(err)
	}
	queued := st.MovesScheduled
	st, err = s.m.Balance(ctx, cairn.BalanceRequest{Threshold: 10, Action: cairn.BalanceStop})
	if err != nil {
		t.Fatal(err)
	}
	if queued > 0 && st.MovesPending != int64(len(copies))-1 {
		t.Fatalf("after stop: %d moves pending, want the %d sent before", st.MovesPending, len(copies)-1)
	}
	for _, n := range s.nodes {
		for _, c := range s.beat(n) {
			if c.Kind == cairn.CmdTransfer {
				t.Fatalf("a copy handed out after the balancer stopped: %+v", c)
			}
		}
	}
}

// TestBalanceRefusals: only a superuser runs the balancer; a threshold
// outside 1..100, a negative bandwidth or an unknown action is refused;
// nothing moves in safe mode.
func TestBalanceRefusals(t *testing.T) {
	s, _ := newBalanceSim(t)
	for _, c := range []struct {
		ctx  context.Context
		r    cairn.BalanceRequest
		kind cairn.Kind
	}{
		{as("bob"), cairn.BalanceRequest{Threshold: 10, Action: cairn.BalanceSchedule}, cairn.KindAccess},
		{context.Background(), cairn.BalanceRequest{Threshold: 0.5}, cairn.KindInvalid},
		{context.Background(), cairn.BalanceRequest{Threshold: math.NaN()}, cairn.KindInvalid},
		{context.Background(), cairn.BalanceRequest{Threshold: 101}, cairn.KindInvalid},
		{context.Background(), cairn.BalanceRequest{Threshold: 10, Bandwidth: -1}, cairn.KindInvalid},
		{context.Background(), cairn.BalanceRequest{Threshold: 10, Action: 7}, cairn.KindInvalid},
	} {
		if _, err := s.m.Balance(c.ctx, c.r); cairn.KindOf(err) != c.kind {
			t.Errorf("Balance(%+v): %v, want %v", c.r, err, c.kind)
		}
	}
	if pending, _, _ := s.m.repl.moves(); pending != 0 {
		t.Fatalf("refused calls scheduled %d moves", pending)
	}
	s.m.safe.enter()
	if _, err := s.m.Balance(context.Background(), cairn.BalanceRequest{Threshold: 10, Action: cairn.BalanceSchedule}); cairn.KindOf(err) != cairn.KindSafeMode {
		t.Fatalf("in safe mode: %v, want KindSafeMode", err)
	}
	if pending, _, _ := s.m.repl.moves(); pending != 0 {
		t.Fatalf("safe mode: %d moves scheduled", pending)
	}
}

// TestTrimCountsReplicasGoneMeanwhile: a trim decided on a block's
// replicas as they were keeps as many as it meant to: a replica deleted
// since (a balancer move's source) counts as trimmed, so the block is not
// left short.
func TestTrimCountsReplicasGoneMeanwhile(t *testing.T) {
	m := openCfg(t, Config{Clock: newFakeClock()})
	nodes := rackCluster(t, m, 2, 2)
	b := closedOn(t, m, "/f", nodes) // four replicas, wants three
	m.blocks.mu.Lock()
	m.blocks.remove(nodes[3].StorageID, b.ID) // deleted since the caller looked
	m.blocks.mu.Unlock()
	m.trim(b, nodes, 1)
	if n := len(m.blocks.holders(b)); n != 3 {
		t.Fatalf("%d replicas left, want 3", n)
	}
}

// FuzzBalanceRequest: whatever a Balance request carries, metad does not
// panic; one with a threshold outside 1..100 (or NaN), a negative
// bandwidth or an unknown action is refused with KindInvalid and
// schedules nothing; the moves it schedules are copies carrying the
// bandwidth asked for.
func FuzzBalanceRequest(f *testing.F) {
	f.Add(10.0, int64(1<<20), uint32(1))
	f.Add(0.0, int64(0), uint32(0))
	f.Add(math.Inf(1), int64(-1), uint32(2))
	f.Add(math.NaN(), int64(math.MaxInt64), uint32(1<<31))
	f.Fuzz(func(t *testing.T, threshold float64, bandwidth int64, action uint32) {
		s, _ := newBalanceSim(t)
		r := cairn.BalanceRequest{Threshold: threshold, Bandwidth: bandwidth, Action: cairn.BalanceAction(action)}
		_, err := s.m.Balance(context.Background(), r)
		bad := math.IsNaN(threshold) || threshold < 1 || threshold > 100 || bandwidth < 0 || action > uint32(cairn.BalanceStop)
		pending, _, _ := s.m.repl.moves()
		if bad {
			if cairn.KindOf(err) != cairn.KindInvalid || pending != 0 {
				t.Fatalf("Balance(%+v): %v, %d moves; want KindInvalid and none", r, err, pending)
			}
			return
		}
		if err != nil {
			t.Fatalf("Balance(%+v): %v", r, err)
		}
		for _, n := range s.nodes {
			for _, c := range s.beat(n) {
				if c.Kind == cairn.CmdTransfer && c.Bandwidth != bandwidth {
					t.Fatalf("a move's copy carries bandwidth %d, asked %d", c.Bandwidth, bandwidth)
				}
			}
		}
	})
}
