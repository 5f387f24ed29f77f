package metad

import (
	"context"
	"sync"
	"time"

	"go.uber.org/zap"

	"cairn"
)

// The replication monitor restores each block's replica count by itself,
// as HDFS's NameNode does: a block with fewer live, good replicas than its
// file asks for is copied from a live replica to another blockd (a
// CmdTransfer on the source's next heartbeat); one with more loses the
// replica on the fullest blockd; a block with its full count again has its
// corrupt replicas deleted (invalidateCorrupt), and never before. Blocks of
// files being written are left to their writer's pipeline.

// replicationPending is how long a transfer may take before the monitor
// schedules the block again.
const replicationPending = 5 * time.Minute

// replQueue is the work the monitor hands out on heartbeats.
type replQueue struct {
	mu        sync.Mutex
	transfers map[string][]cairn.Command  // source storage ID -> commands
	pending   map[cairn.BlockID]time.Time // block -> when its transfer is due to have happened
}

func newReplQueue() *replQueue {
	return &replQueue{transfers: map[string][]cairn.Command{}, pending: map[cairn.BlockID]time.Time{}}
}

func (q *replQueue) take(node string) []cairn.Command {
	q.mu.Lock()
	defer q.mu.Unlock()
	c := q.transfers[node]
	delete(q.transfers, node)
	return c
}

// fullCheckEvery: most rounds look only at blocks whose live replica count
// differs from the default replication (an in-memory test); every this
// many rounds, every block is checked against its own file's replication.
const fullCheckEvery = 200

// runReplicationMonitor checks replication every interval until ctx ends.
func (m *Metad) runReplicationMonitor(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for round := 1; ; round++ {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if m.safe.check(m.clock.Now()); m.safe.isOn() {
				continue // no copies, trims or deletions in safe mode
			}
			if err := m.checkReplication(round%fullCheckEvery == 0); err != nil {
				m.log.Error("replication monitor", zap.Error(err))
			}
		}
	}
}

// checkReplication schedules one round of copies, trims and deletions of
// corrupt replicas.
func (m *Metad) checkReplication(full bool) error {
	now := m.clock.Now()
	racks := m.nodes.rackCount(now)
	// The walk goes in slices (blockMap.scan), letting go of the lock
	// between them.
	var cands []cairn.BlockID
	for cursor := 0; cursor >= 0; {
		cursor = m.blocks.scan(cursor, func(id cairn.BlockID, reps []nodeReplica) {
			if full || !m.settledBlock(id, reps, now, racks) {
				cands = append(cands, id)
			}
		})
	}

	scheduled, trimmed, invalidated, moved := 0, 0, 0, 0
	for _, id := range cands {
		stored, writing, ok, err := m.storedBlock(id)
		if err != nil {
			return err
		}
		if !ok || writing {
			continue
		}
		m.rejudge(stored)
		var live []cairn.Node
		for _, node := range m.blocks.holders(stored) {
			if n, isLive, _ := m.nodes.isLive(node, now); isLive {
				live = append(live, n)
			}
		}
		want, err := m.wantReplicas(stored.ID)
		if err != nil {
			return err
		}
		switch {
		case len(live) == 0:
			// Missing, or every replica bad: nothing to copy from; fsck
			// reports it, and no replica of it is deleted.
		case len(live) < want:
			if m.scheduleCopies(stored, live, want-len(live), now, false) {
				scheduled++
			}
		case len(live) > want:
			m.trim(stored, live, len(live)-want)
			trimmed++
		case misplaced(rackSpan(live), want, racks):
			// The full count on too few racks: one more copy on another
			// rack, then the trim takes one off a crowded rack.
			if m.scheduleCopies(stored, live, 1, now, true) {
				moved++
			}
		}
		invalidated += m.invalidateCorrupt(stored, want, now)
	}
	if scheduled > 0 || trimmed > 0 || invalidated > 0 || moved > 0 {
		m.log.Info("replication monitor", zap.Int("blocks_to_copy", scheduled), zap.Int("blocks_trimmed", trimmed),
			zap.Int("corrupt_replicas_deleted", invalidated), zap.Int("misplaced_blocks_to_copy", moved))
	}
	return nil
}

// settledBlock is the monitor's in-memory test that a block needs no look:
// the default replication of finalized, unmarked replicas at one stamp, on
// live blockds, on enough of the cluster's racks. Caller holds blocks.mu;
// nodes.mu comes after it.
func (m *Metad) settledBlock(id cairn.BlockID, reps []nodeReplica, now time.Time, racks int) bool {
	if len(reps) != m.cfg.Replication || m.blocks.hasCorrupt(id) {
		return false
	}
	var gs cairn.GenStamp
	var on []cairn.Node
	for _, r := range reps {
		node := r.StorageID
		if r.State != cairn.ReplicaFinalized || (gs != 0 && r.GenStamp != gs) {
			return false
		}
		gs = r.GenStamp
		n, live, _ := m.nodes.isLive(node, now)
		if !live {
			return false
		}
		on = append(on, n)
	}
	return !misplaced(rackSpan(on), m.cfg.Replication, racks)
}

// rackSpan is how many racks nodes are on.
func rackSpan(nodes []cairn.Node) int {
	racks := map[string]bool{}
	for _, n := range nodes {
		racks[n.Rack] = true
	}
	return len(racks)
}

// rejudge marks the replicas of b, a closed file's block, that disagree
// with metad's record: those recorded while the file was being written
// are judged once it is closed.
func (m *Metad) rejudge(b cairn.Block) {
	bm := m.blocks
	bm.mu.Lock()
	defer bm.mu.Unlock()
	for _, r := range bm.replicasLocked(b.ID) {
		if j, why := judge(r.Replica, b, true, false); j == replicaCorrupt {
			bm.mark(r.StorageID, r.Replica, why)
		}
	}
}

// wantReplicas is the replication of the file owning block id.
func (m *Metad) wantReplicas(id cairn.BlockID) (int, error) {
	v, err := m.st.get(blockKey(id))
	if err != nil {
		return 0, err
	}
	ino, err := parseU64(v)
	if err != nil {
		return 0, err
	}
	in, err := m.st.inode(ino)
	if err != nil {
		return 0, err
	}
	return int(in.Replication), nil
}

// scheduleCopies asks a live holder of b to copy it to n other blockds;
// with newRack, only when the copies put it on another rack.
func (m *Metad) scheduleCopies(b cairn.Block, live []cairn.Node, n int, now time.Time, newRack bool) bool {
	q := m.repl
	q.mu.Lock()
	due, busy := q.pending[b.ID]
	q.mu.Unlock()
	if busy && now.Before(due) {
		return false
	}
	// Not onto a blockd holding any replica of it, even a corrupt or stale
	// one: that one is deleted first.
	have := map[string]bool{}
	for _, r := range m.blocks.replicasOf(b.ID) {
		have[r.StorageID] = true // marked corrupt or not
	}
	for _, h := range live {
		have[h.StorageID] = true
	}
	src := live[int(uint64(b.ID)%uint64(len(live)))]
	var skip []cairn.Node
	for id := range have {
		skip = append(skip, cairn.Node{StorageID: id})
	}
	// The source stands for the writer; the live replicas are the
	// replicas chosen so far, so the rack rule goes on from them.
	targets := m.nodes.placement(b.Len, now).choose(n, location{hostOf(src.DataAddr), src.Rack}, live, skip)
	if len(targets) == 0 {
		return false
	}
	if newRack && rackSpan(append(live[:len(live):len(live)], targets...)) == rackSpan(live) {
		return false // no other rack has a blockd that can take it
	}
	q.mu.Lock()
	q.transfers[src.StorageID] = append(q.transfers[src.StorageID], cairn.Command{Kind: cairn.CmdTransfer, Blocks: []cairn.Block{b}, Targets: targets})
	q.pending[b.ID] = now.Add(replicationPending)
	q.mu.Unlock()
	m.log.Info("block under-replicated: copying", zap.Stringer("block", b), zap.String("from", src.DataAddr), zap.Int("copies", len(targets)))
	return true
}

// trim deletes extra replicas, keeping the block on as many racks, from
// the blockds with the least room (chooseExcess).
func (m *Metad) trim(b cairn.Block, live []cairn.Node, extra int) {
	rem := map[string]int64{}
	m.nodes.mu.Lock()
	for _, n := range live {
		if st := m.nodes.nodes[n.StorageID]; st != nil {
			rem[n.StorageID] = st.hb.Remaining
		}
	}
	m.nodes.mu.Unlock()
	m.blocks.mu.Lock()
	for _, n := range chooseExcess(live, rem, extra) {
		r, ok := m.blocks.replica(n.StorageID, b.ID)
		if !ok {
			continue
		}
		m.blocks.queueDelete(n.StorageID, r.Block)
		m.blocks.remove(n.StorageID, b.ID)
	}
	m.blocks.mu.Unlock()
	m.log.Info("block over-replicated: trimming", zap.Stringer("block", b), zap.Int("replicas", extra))
}

// settled forgets a pending copy once the block's replicas change (a new one
// reported, one deleted), so the next round looks at it afresh.
func (q *replQueue) settled(id cairn.BlockID) {
	q.mu.Lock()
	delete(q.pending, id)
	q.mu.Unlock()
}
