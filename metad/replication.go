package metad

import (
	"context"
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
// files being written are left to their writer's pipeline. Replicas on
// blockds in maintenance count apart (maintenance.go).

// fullCheckEvery: most rounds look only at blocks whose live replica count
// differs from the default replication (an in-memory test); every this
// many rounds, and the round after a file's replication factor changed
// (setrep), every block is checked against its own file's replication.
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
			m.leaderWork(func() {
				m.rejudgeDoubtful()
				if err := m.checkReplication(round%fullCheckEvery == 0); err != nil {
					m.log.Error("replication monitor", zap.Error(err))
				}
			})
		}
	}
}

// checkReplication schedules one round of copies, trims and deletions of
// corrupt replicas. The copies are handed out by priority (replqueue.go):
// the blocks with one live replica first, then the under-replicated, then
// those whose full count leans on blockds being decommissioned or sits on
// too few racks.
func (m *Metad) checkReplication(full bool) error {
	// A changed factor is seen now, not fullCheckEvery rounds later (as
	// HDFS's setReplication queues the file's blocks at once).
	full = m.replChanged.Swap(false) || full
	now := m.clock.Now()
	// A source that died will not take or finish its copies: they are
	// scheduled again from live holders in this round.
	if dead := m.nodes.newlyDead(now); len(dead) > 0 {
		m.repl.forgetAll(dead)
	}
	if gone := m.repl.expire(now); len(gone) > 0 {
		m.log.Warn("copies not reported within the pending timeout: scheduled again", zap.Int("blocks", len(gone)),
			zap.Duration("timeout", m.repl.timeout))
	}
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

	var needs [prioPlaced + 1][]need
	trimmed, invalidated := 0, 0
	tally := roundTally{candidates: len(cands)}
	var look *blockLookup
	defer func() {
		if look != nil {
			look.close()
		}
	}()
	for i, id := range cands {
		// One iterator a slice of candidates (blockLookup): a fresh view
		// of the store for each, none pinned for the whole round.
		if i%reportSlice == 0 {
			if look != nil {
				look.close()
			}
			l, err := m.newBlockLookup()
			if err != nil {
				look = nil
				return err
			}
			look = l
		}
		stored, f, ok, err := look.find(id)
		if err != nil {
			return err
		}
		if !ok || f.writing {
			continue
		}
		m.rejudge(stored)
		if m.blocks.corruptCount(stored.ID) > 0 {
			tally.corrupt++
		}
		var live, inService []cairn.Node
		maint := 0 // replicas on blockds entering or in maintenance, live or not
		for _, node := range m.blocks.holders(stored) {
			n, isLive, st := m.nodes.adminStatus(node, now)
			if st.maintenance() {
				maint++
			}
			if isLive {
				live = append(live, n)
				if st == adminNormal {
					inService = append(inService, n)
				}
			}
		}
		want := f.want
		// Replicas in maintenance lower the live count the block needs,
		// down to the maintenance minimum (maintenance.go).
		target := m.liveTarget(want, maint)
		nd := need{b: stored, live: live, inService: inService, n: target - len(inService)}
		switch {
		case len(live) == 0:
			// Missing, or every replica bad, or every one on blockds in
			// maintenance that are switched off: nothing to copy from;
			// fsck reports it, and no replica of it is deleted. Only the
			// first two are missing, as fsck says.
			if maint == 0 {
				tally.missing++
			}
		case len(inService) < target:
			switch {
			case len(live) == 1 && target > 1, len(inService) == 0:
				needs[prioHighest] = append(needs[prioHighest], nd)
			case len(live) < target:
				needs[prioLow] = append(needs[prioLow], nd)
			default:
				needs[prioPlaced] = append(needs[prioPlaced], nd)
			}
		case len(inService) > want && m.repl.moving(stored.ID):
			// A balancer move's copy has arrived: the move deletes its
			// source's replica (balancer.go).
		case len(inService) > want:
			// Only replicas in service are trimmed: a blockd being
			// decommissioned, or decommissioned, keeps what it holds.
			m.trim(stored, inService, len(inService)-want)
			trimmed++
		case maint == 0 && misplaced(rackSpan(inService), want, racks):
			// The full count on too few racks: one more copy on another
			// rack, then the trim takes one off a crowded rack.
			nd.n, nd.newRack = 1, true
			needs[prioPlaced] = append(needs[prioPlaced], nd)
		}
		invalidated += m.invalidateCorrupt(stored, want, now)
	}
	for prio, list := range needs {
		tally.queued[prio] = len(list)
	}
	tally.at = now
	m.health.store(tally)
	var scheduled [prioPlaced + 1]int
	// One snapshot of the blockds places every copy of the round: their
	// room and liveness come from heartbeats, which the round does not
	// wait for.
	var snap *placement
	if len(needs[prioHighest])+len(needs[prioLow])+len(needs[prioPlaced]) > 0 {
		snap = m.nodes.placement(0, now)
	}
	for prio, list := range needs {
		for _, nd := range list {
			if m.scheduleCopies(snap, nd, prio) {
				scheduled[prio]++
			}
		}
	}
	if scheduled[prioHighest]+scheduled[prioLow]+scheduled[prioPlaced] > 0 || trimmed > 0 || invalidated > 0 {
		m.log.Info("replication monitor", zap.Int("blocks_to_copy_one_replica_left", scheduled[prioHighest]),
			zap.Int("blocks_to_copy", scheduled[prioLow]), zap.Int("blocks_to_copy_decommissioning_or_misplaced", scheduled[prioPlaced]),
			zap.Int("blocks_waiting", len(needs[prioHighest])+len(needs[prioLow])+len(needs[prioPlaced])-scheduled[prioHighest]-scheduled[prioLow]-scheduled[prioPlaced]),
			zap.Int("blocks_trimmed", trimmed), zap.Int("corrupt_replicas_deleted", invalidated))
	}
	m.checkDecommissions(now)
	m.checkMaintenance(now)
	return nil
}

// need is a block that wants n more replicas: live are its live good
// replicas, inService those on blockds in service; with newRack the copy
// must put it on another rack.
type need struct {
	b               cairn.Block
	live, inService []cairn.Node
	n               int
	newRack         bool
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
		n, live, _, in := m.nodes.status(node, now)
		if !live || !in {
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
			bm.markJudged(r.StorageID, r.Replica, why)
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

// scheduleCopies asks a live holder of nd.b with a stream to spare for a
// copy of priority prio (a blockd being decommissioned first: it serves no
// writes) to copy it to nd.n other blockds, placed from the round's
// snapshot of the blockds; with nd.newRack, only when the copies put it on
// another rack. It reports whether it did.
func (m *Metad) scheduleCopies(snap *placement, nd need, prio int) bool {
	b, q := nd.b, m.repl
	if q.busy(b.ID) {
		return false
	}
	var free, freeOut []cairn.Node
	for _, h := range nd.live {
		if !q.room(h.StorageID, prio) {
			continue
		}
		free = append(free, h)
		if !m.nodes.inService(h.StorageID) {
			freeOut = append(freeOut, h)
		}
	}
	if len(freeOut) > 0 {
		free = freeOut
	}
	if len(free) == 0 {
		return false // every holder is busy: the block waits for a stream
	}
	// Not onto a blockd holding any replica of it, even a corrupt or stale
	// one: that one is deleted first.
	have := map[string]bool{}
	for _, r := range m.blocks.replicasOf(b.ID) {
		have[r.StorageID] = true // marked corrupt or not
	}
	for _, h := range nd.live {
		have[h.StorageID] = true
	}
	src := free[int(uint64(b.ID)%uint64(len(free)))]
	var skip []cairn.Node
	for id := range have {
		skip = append(skip, cairn.Node{StorageID: id})
	}
	// The source stands for the writer; the replicas in service are the
	// replicas chosen so far, so the rack rule goes on from them.
	targets := snap.sized(b.Len).choose(nd.n, location{hostOf(src.DataAddr), src.Rack}, nd.inService, skip)
	if len(targets) == 0 {
		return false
	}
	if nd.newRack && rackSpan(append(nd.inService[:len(nd.inService):len(nd.inService)], targets...)) == rackSpan(nd.inService) {
		return false // no other rack has a blockd that can take it
	}
	q.add(src.StorageID, cairn.Command{Kind: cairn.CmdTransfer, Blocks: []cairn.Block{b}, Targets: targets})
	m.log.Debug("block needs replicas: copying", zap.Stringer("block", b), zap.String("from", src.DataAddr), zap.Int("copies", len(targets)), zap.Int("priority", prio))
	return true
}

// trim deletes extra replicas, keeping the block on as many racks, from
// the blockds with the least room (chooseExcess). It keeps len(live) -
// extra of them: a replica of live deleted since the caller looked (a
// balancer move's source) counts as trimmed.
func (m *Metad) trim(b cairn.Block, live []cairn.Node, extra int) {
	rem := map[string]int64{}
	m.nodes.mu.Lock()
	for _, n := range live {
		if st := m.nodes.nodes[n.StorageID]; st != nil {
			rem[n.StorageID] = st.hb.Remaining
		}
	}
	m.nodes.mu.Unlock()
	keep := len(live) - extra
	m.blocks.mu.Lock()
	var still []cairn.Node
	for _, n := range live {
		if _, ok := m.blocks.replica(n.StorageID, b.ID); ok {
			still = append(still, n)
		}
	}
	for _, n := range chooseExcess(still, rem, len(still)-keep) {
		r, ok := m.blocks.replica(n.StorageID, b.ID)
		if !ok {
			continue
		}
		m.blocks.queueDelete(n.StorageID, r.Block)
		m.blocks.remove(n.StorageID, b.ID)
	}
	m.blocks.mu.Unlock()
	m.log.Debug("block over-replicated: trimming", zap.Stringer("block", b), zap.Int("replicas", extra))
}
