package metad

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"time"

	"go.uber.org/zap"

	"cairn"
)

// The balancer, as HDFS's Balancer, with its planning in metad: `cairn
// balancer` calls Balance once an iteration and polls it until the
// iteration's moves are over. Each blockd in service's use is its used
// bytes over its capacity, in percent; the cluster's mean is all used
// over all capacity. A blockd more than the threshold above the mean is
// over-utilized, one more than the threshold below it under-utilized, and
// the others above or below average. Sources (above the mean) are paired
// with targets (below it) as HDFS's chooseStorageGroups does: over with
// under, then over with below average, then under with above average;
// first within a rack, then across racks. A pair moves at most the
// threshold's worth of either blockd's capacity (or the distance to the
// mean, if less).
//
// A move is a copy of one replica from its source to its target (a
// CmdTransfer on the source's next heartbeat, throttled there to the
// balancer's bandwidth), queued in the replication queue at the lowest
// priority (prioBalance) and bounded by the source's streams, and then,
// once the target reports its finalized replica, the deletion of the
// source's replica, only if the block keeps its full count of good
// replicas on live blockds in service and is on no fewer racks than before
// the copy. A replica moves only to a blockd holding none of its block, and
// only when the move leaves the block on as many racks; blocks of files
// being written, or short of their count, are left to the writer and the
// replication monitor. Whatever stops halfway (the balancer, metad, a
// blockd) leaves at worst one extra replica, which the monitor trims.

// balanceScan bounds the replicas of one source looked at for one
// iteration's moves, so a step costs no walk of a whole node's list.
const balanceScan = 1 << 16

// balanceSlice is how many of a source's replicas are listed under one
// hold of the block map's lock.
const balanceSlice = 1024

// balanceNode is one blockd in service as the balancer sees it; room is
// how many more bytes it may send (a source) or take (a target) in this
// iteration.
type balanceNode struct {
	cairn.Node
	capacity, used, remaining int64
	util                      float64
	room                      int64
}

// balancePlan is one iteration's classification of the blockds.
type balancePlan struct {
	avg                             float64
	over, aboveAvg, belowAvg, under []*balanceNode
	bytesLeft                       int64 // to bring every blockd within the threshold
}

// planBalance classifies nodes against their mean use with threshold
// percentage points (HDFS's Balancer.init) and sets each one's room.
func planBalance(nodes []*balanceNode, threshold float64) balancePlan {
	var p balancePlan
	var used, capacity int64
	for _, n := range nodes {
		used += n.used
		capacity += n.capacity
	}
	if capacity <= 0 {
		return p
	}
	p.avg = 100 * float64(used) / float64(capacity)
	var overBytes, underBytes int64
	for _, n := range nodes {
		n.util = 100 * float64(n.used) / float64(n.capacity)
		diff := n.util - p.avg
		beyond := math.Abs(diff) - threshold
		n.room = percentBytes(min(threshold, math.Abs(diff)), n.capacity)
		if diff > 0 {
			if beyond <= 0 {
				p.aboveAvg = append(p.aboveAvg, n)
			} else {
				overBytes += percentBytes(beyond, n.capacity)
				p.over = append(p.over, n)
			}
			continue
		}
		n.room = min(n.room, n.remaining)
		if beyond <= 0 {
			p.belowAvg = append(p.belowAvg, n)
		} else {
			underBytes += percentBytes(beyond, n.capacity)
			p.under = append(p.under, n)
		}
	}
	p.bytesLeft = max(overBytes, underBytes)
	return p
}

func percentBytes(pct float64, capacity int64) int64 { return int64(pct * float64(capacity) / 100) }

// pairing is a source, a target and the bytes to move between them.
type pairing struct {
	src, dst *balanceNode
	bytes    int64
}

// pairs matches sources with targets as HDFS's chooseStorageGroups does:
// within a rack first, then across racks; in each, over-utilized with
// under-utilized, over-utilized with below average, then under-utilized
// with above average. Each pair takes what both have room for.
func (p *balancePlan) pairs() []pairing {
	var out []pairing
	match := func(a, b *balanceNode, sameRack bool) bool { return !sameRack || a.Rack == b.Rack }
	pair := func(groups, cands []*balanceNode, groupIsSource, sameRack bool) {
		for _, g := range groups {
			for _, c := range cands {
				if g.room <= 0 {
					break
				}
				if c.room <= 0 || !match(g, c, sameRack) {
					continue
				}
				n := min(g.room, c.room)
				g.room -= n
				c.room -= n
				if groupIsSource {
					out = append(out, pairing{src: g, dst: c, bytes: n})
				} else {
					out = append(out, pairing{src: c, dst: g, bytes: n})
				}
			}
		}
	}
	for _, sameRack := range []bool{true, false} {
		pair(p.over, p.under, true, sameRack)
		pair(p.over, p.belowAvg, true, sameRack)
		pair(p.under, p.aboveAvg, false, sameRack)
	}
	return out
}

// keepsRacks reports whether moving a replica from src to dst leaves its
// block, now on holders, on no fewer racks, and not two replicas on one
// blockd.
func keepsRacks(holders []cairn.Node, src, dst cairn.Node) bool {
	after := make([]cairn.Node, 0, len(holders))
	for _, h := range holders {
		if h.StorageID == dst.StorageID {
			return false
		}
		if h.StorageID != src.StorageID {
			after = append(after, h)
		}
	}
	if len(after) == len(holders) {
		return false // src holds none
	}
	return rackSpan(append(after, dst)) >= rackSpan(holders)
}

// Balance is one step of the balancer (cairn.Admin). The use it reports
// counts the moves under way as done.
func (m *Metad) Balance(ctx context.Context, r cairn.BalanceRequest) (cairn.BalanceStatus, error) {
	const op = "metad.Balance"
	if err := m.adminOnly(ctx, op, "run the balancer"); err != nil {
		return cairn.BalanceStatus{}, err
	}
	if math.IsNaN(r.Threshold) || r.Threshold < 1 || r.Threshold > 100 {
		return cairn.BalanceStatus{}, cairn.E(op, cairn.KindInvalid, "", fmt.Sprintf("threshold %v: want a number of percentage points from 1 to 100", r.Threshold))
	}
	if r.Bandwidth < 0 {
		return cairn.BalanceStatus{}, cairn.E(op, cairn.KindInvalid, "", fmt.Sprintf("bandwidth %d bytes a second is negative", r.Bandwidth))
	}
	if r.Action < cairn.BalanceStatusOnly || r.Action > cairn.BalanceStop {
		return cairn.BalanceStatus{}, cairn.E(op, cairn.KindInvalid, "", fmt.Sprintf("unknown balancer action %d", r.Action))
	}
	if err := m.refusal(op, ""); err != nil {
		return cairn.BalanceStatus{}, err // no moves in safe mode
	}
	now := m.clock.Now()
	if err := m.balancer.acquire(r.ID, now, m.cfg.BalancerLease); err != nil {
		m.log.Warn("refused a second balancer", zap.String("balancer", r.ID), zap.Error(err))
		return cairn.BalanceStatus{}, cairn.E(op, cairn.KindBusy, "", err.Error())
	}
	nodes := m.balanceNodes(now)
	// The moves under way count as done: a new iteration plans from where
	// they leave the cluster.
	deltas := m.repl.moveDeltas()
	for _, n := range nodes {
		n.used = max(0, n.used+deltas[n.StorageID])
		n.remaining = max(0, n.remaining-deltas[n.StorageID])
	}
	plan := planBalance(nodes, r.Threshold)
	var scheduled int
	switch r.Action {
	case cairn.BalanceStop:
		if n := m.repl.dropMoves(); n > 0 {
			m.log.Info("balancer stopped: moves not yet sent dropped", zap.Int("moves", n))
		}
		m.balancer.release(r.ID)
	case cairn.BalanceSchedule:
		if plan.bytesLeft > 0 {
			var err error
			if scheduled, err = m.scheduleMoves(plan.pairs(), r.Bandwidth, now); err != nil {
				return cairn.BalanceStatus{}, cairn.E(op, cairn.KindIO, "", err.Error())
			}
			m.log.Info("balancer iteration", zap.Float64("threshold", r.Threshold), zap.Float64("average_use_pct", plan.avg),
				zap.Int("over_utilized", len(plan.over)), zap.Int("under_utilized", len(plan.under)),
				zap.Int64("bytes_left_to_move", plan.bytesLeft), zap.Int("moves_scheduled", scheduled), zap.Int64("bandwidth", r.Bandwidth))
		}
	}
	pending, being, tally := m.repl.moves()
	st := cairn.BalanceStatus{
		BytesLeftToMove: plan.bytesLeft, BytesBeingMoved: being, BytesMoved: tally.bytes,
		MovesScheduled: int64(scheduled), MovesPending: int64(pending), MovesDone: tally.done, MovesFailed: tally.failed,
		Average: plan.avg,
	}
	for _, n := range nodes {
		st.Nodes = append(st.Nodes, cairn.BalanceNode{Node: n.Node, Capacity: n.capacity, Used: n.used})
	}
	return st, nil
}

// balanceNodes lists the live blockds in service that have told their
// capacity, the only ones the balancer moves replicas from or to.
func (m *Metad) balanceNodes(now time.Time) []*balanceNode {
	m.nodes.mu.Lock()
	defer m.nodes.mu.Unlock()
	var out []*balanceNode
	for _, st := range m.nodes.nodes {
		if !m.nodes.live(st, now) || m.nodes.admin[st.StorageID].state != adminNormal || !st.heard || st.hb.Capacity <= 0 {
			continue
		}
		out = append(out, &balanceNode{Node: st.Node, capacity: st.hb.Capacity, used: st.hb.Used, remaining: st.hb.Remaining})
	}
	return out
}

// scheduleMoves queues moves for each pair, up to its bytes and its
// source's streams, and returns how many.
func (m *Metad) scheduleMoves(ps []pairing, bandwidth int64, now time.Time) (int, error) {
	total := 0
	for _, pr := range ps {
		n, err := m.schedulePair(pr, bandwidth, now)
		if err != nil {
			return total, err
		}
		total += n
	}
	return total, nil
}

// schedulePair queues moves of replicas from pr.src to pr.dst, looking at
// up to balanceScan of the source's replicas from a random place in its
// list, in slices.
func (m *Metad) schedulePair(pr pairing, bandwidth int64, now time.Time) (int, error) {
	left, done := pr.bytes, 0
	total := m.blocks.countOn(pr.src.StorageID)
	if total == 0 {
		return 0, nil
	}
	start := rand.IntN(int(total))
	for seen := 0; seen < int(min(total, balanceScan)) && left > 0; {
		if !m.repl.room(pr.src.StorageID, prioBalance) {
			break
		}
		ids := m.blocks.blocksOnSlice(pr.src.StorageID, (start+seen)%int(total), balanceSlice)
		if len(ids) == 0 {
			break
		}
		seen += len(ids)
		for _, id := range ids {
			if left <= 0 || !m.repl.room(pr.src.StorageID, prioBalance) {
				break
			}
			size, ok, err := m.tryMove(id, pr, left, bandwidth, now)
			if err != nil {
				return done, err
			}
			if ok {
				left -= size
				done++
			}
		}
	}
	return done, nil
}

// tryMove queues the move of block id from pr.src to pr.dst if the rules
// allow it and it is no bigger than left; it returns the block's size.
func (m *Metad) tryMove(id cairn.BlockID, pr pairing, left, bandwidth int64, now time.Time) (int64, bool, error) {
	if m.repl.busy(id) {
		return 0, false, nil
	}
	b, writing, ok, err := m.storedBlock(id)
	if err != nil || !ok || writing || b.Len == 0 || b.Len > left {
		return 0, false, err
	}
	for _, r := range m.blocks.replicasOf(id) {
		if r.StorageID == pr.dst.StorageID {
			return 0, false, nil // any replica of it there, even a bad one
		}
	}
	var holders []cairn.Node
	for _, h := range m.blocks.holders(b) {
		if n, live, _, in := m.nodes.status(h, now); live && in {
			holders = append(holders, n)
		}
	}
	want, err := m.wantReplicas(id)
	if err != nil {
		return 0, false, err
	}
	if len(holders) < want || !keepsRacks(holders, pr.src.Node, pr.dst.Node) {
		return 0, false, nil
	}
	if n, live, stale, in := m.nodes.status(pr.dst.StorageID, now); !live || stale || !in || !m.nodes.roomFor(n.StorageID, b.Len) {
		return 0, false, nil
	}
	c := cairn.Command{Kind: cairn.CmdTransfer, Blocks: []cairn.Block{b}, Targets: []cairn.Node{pr.dst.Node}, Bandwidth: bandwidth}
	if !m.repl.addMove(pr.src.StorageID, c, pr.dst.StorageID, b.Len) {
		return 0, false, nil
	}
	m.log.Debug("balancer: moving a replica", zap.Stringer("block", b), zap.String("from", pr.src.DataAddr), zap.String("to", pr.dst.DataAddr))
	return b.Len, true, nil
}

// roomFor reports whether blockd id has room for a block of size bytes.
func (ns *nodeSet) roomFor(id string, size int64) bool {
	ns.mu.Lock()
	defer ns.mu.Unlock()
	st, ok := ns.nodes[id]
	return ok && st.hasRoom(size)
}

// finishMove ends the balancer move of block id from src, whose target
// has reported its finalized replica: the source's replica is deleted if
// the target's counts and the block keeps its full count of good replicas
// on live blockds in service, on no fewer racks than before the copy;
// otherwise it stays, and the move counts as failed (the monitor trims
// whatever is extra).
func (m *Metad) finishMove(id cairn.BlockID, src, target string, now time.Time) error {
	b, writing, ok, err := m.storedBlock(id)
	if err != nil {
		return err
	}
	done := false
	if ok && !writing {
		want, err := m.wantReplicas(id)
		if err != nil {
			return err
		}
		done = m.dropMovedReplica(b, src, target, want, now)
	}
	m.repl.moveFinished(id, done)
	if done {
		m.log.Debug("balancer: replica moved", zap.Stringer("block", b), zap.String("from", src), zap.String("to", target))
	} else {
		m.log.Info("balancer: source replica kept, the move would break the block's count or racks", zap.Stringer("block", b), zap.String("from", src), zap.String("to", target))
	}
	return nil
}

// dropMovedReplica deletes src's replica of b if target holds a good one
// and the rules hold without src's; it reports whether it did. The check
// and the deletion are under one hold of the block map's lock, so no
// other deletion slips in between.
func (m *Metad) dropMovedReplica(b cairn.Block, src, target string, want int, now time.Time) bool {
	bm := m.blocks
	bm.mu.Lock()
	defer bm.mu.Unlock()
	var before, after []cairn.Node
	srcHas, targetHas := false, false
	var srcReplica cairn.Replica
	for _, r := range bm.replicasLocked(b.ID) {
		if r.Corrupt != "" || !wholeCopy(r.Replica, b) {
			continue
		}
		n, live, _, in := m.nodes.status(r.StorageID, now) // nodes.mu after blocks.mu
		if !live || !in {
			continue
		}
		switch r.StorageID {
		case src:
			srcHas, srcReplica = true, r.Replica
			before = append(before, n)
		case target:
			targetHas = true
			after = append(after, n)
		default:
			before = append(before, n)
			after = append(after, n)
		}
	}
	if !srcHas || !targetHas || len(after) < want || rackSpan(after) < rackSpan(before) {
		return false
	}
	bm.queueDelete(src, srcReplica.Block)
	bm.remove(src, b.ID)
	return true
}

// blocksOnSlice lists up to n of the blocks on blockd id's list from
// position from: one slice of a walk of its replicas.
func (bm *blockMap) blocksOnSlice(id string, from, n int) []cairn.BlockID {
	bm.mu.Lock()
	defer bm.mu.Unlock()
	ni := bm.t.nodeIndex(id, false)
	if ni == 0 {
		return nil
	}
	l := bm.t.lists[ni-1]
	if from >= len(l) {
		from = 0
	}
	end := min(from+n, len(l))
	out := make([]cairn.BlockID, 0, end-from)
	for _, p := range l[from:end] {
		out = append(out, bm.t.slab[p].id)
	}
	return out
}
