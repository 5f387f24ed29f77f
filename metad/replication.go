package metad

import (
	"context"
	"sort"
	"sync"
	"time"

	"go.uber.org/zap"

	"cairn"
)

// The replication monitor restores each block's replica count by itself,
// as HDFS's NameNode does: a block with fewer live, good replicas than its
// file asks for is copied from a live replica to another blockd (a
// CmdTransfer on the source's next heartbeat); one with more loses the
// replica on the fullest blockd. Blocks of files being written are left to
// their writer's pipeline.

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
			if err := m.checkReplication(round%fullCheckEvery == 0); err != nil {
				m.log.Error("replication monitor", zap.Error(err))
			}
		}
	}
}

// checkReplication schedules one round of copies and trims.
func (m *Metad) checkReplication(full bool) error {
	now := m.clock.Now()
	type cand struct {
		b       cairn.Block
		holders []string
	}
	var cands []cand
	m.blocks.mu.Lock()
	for id, reps := range m.blocks.replicas {
		var b cairn.Block
		var holders []string
		for node, r := range reps {
			if m.blocks.isCorrupt(node, id) {
				continue
			}
			if r.GenStamp > b.GenStamp {
				b = r
			}
			holders = append(holders, node)
		}
		if len(holders) == 0 {
			continue
		}
		if !full && len(holders) == m.cfg.Replication && len(m.blocks.corrupt[id]) == 0 && m.allLive(holders, now) {
			continue
		}
		cands = append(cands, cand{b, holders})
	}
	m.blocks.mu.Unlock()

	scheduled, trimmed := 0, 0
	for _, c := range cands {
		stored, writing, ok, err := m.storedBlock(c.b.ID)
		if err != nil {
			return err
		}
		if !ok || writing {
			continue
		}
		var live []cairn.Node
		for _, id := range m.blocks.holders(stored) {
			if n, isLive, _ := m.nodes.isLive(id, now); isLive {
				live = append(live, n)
			}
		}
		want, err := m.wantReplicas(stored.ID)
		if err != nil {
			return err
		}
		switch {
		case len(live) == 0:
			// Missing: nothing to copy from; fsck reports it.
		case len(live) < want:
			if m.scheduleCopies(stored, live, want-len(live), now) {
				scheduled++
			}
		case len(live) > want:
			m.trim(stored, live, len(live)-want)
			trimmed++
		}
	}
	if scheduled > 0 || trimmed > 0 {
		m.log.Info("replication monitor", zap.Int("blocks_to_copy", scheduled), zap.Int("blocks_trimmed", trimmed))
	}
	return nil
}

// allLive reports whether every node is live. Caller holds blocks.mu;
// nodes.mu comes after it.
func (m *Metad) allLive(ids []string, now time.Time) bool {
	for _, id := range ids {
		if _, live, _ := m.nodes.isLive(id, now); !live {
			return false
		}
	}
	return true
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

// scheduleCopies asks a live holder of b to copy it to n other blockds.
func (m *Metad) scheduleCopies(b cairn.Block, live []cairn.Node, n int, now time.Time) bool {
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
	m.blocks.mu.Lock()
	for node := range m.blocks.replicas[b.ID] {
		have[node] = true
	}
	for node := range m.blocks.corrupt[b.ID] {
		have[node] = true
	}
	m.blocks.mu.Unlock()
	for _, h := range live {
		have[h.StorageID] = true
	}
	var targets []cairn.Node
	for _, t := range m.nodes.choose(len(live)+n+8, b.Len, now) {
		if !have[t.StorageID] && len(targets) < n {
			targets = append(targets, t)
		}
	}
	if len(targets) == 0 {
		return false
	}
	src := live[int(uint64(b.ID)%uint64(len(live)))]
	q.mu.Lock()
	q.transfers[src.StorageID] = append(q.transfers[src.StorageID], cairn.Command{Kind: cairn.CmdTransfer, Blocks: []cairn.Block{b}, Targets: targets})
	q.pending[b.ID] = now.Add(replicationPending)
	q.mu.Unlock()
	m.log.Info("block under-replicated: copying", zap.Stringer("block", b), zap.String("from", src.DataAddr), zap.Int("copies", len(targets)))
	return true
}

// trim deletes extra replicas from the blockds with the least room.
func (m *Metad) trim(b cairn.Block, live []cairn.Node, extra int) {
	rem := map[string]int64{}
	m.nodes.mu.Lock()
	for _, n := range live {
		if st := m.nodes.nodes[n.StorageID]; st != nil {
			rem[n.StorageID] = st.hb.Remaining
		}
	}
	m.nodes.mu.Unlock()
	sort.Slice(live, func(i, j int) bool { return rem[live[i].StorageID] < rem[live[j].StorageID] })
	m.blocks.mu.Lock()
	for _, n := range live[:extra] {
		m.blocks.toDelete[n.StorageID] = append(m.blocks.toDelete[n.StorageID], b)
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
