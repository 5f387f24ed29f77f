package metad

import (
	"sort"
	"sync"

	"go.uber.org/zap"

	"cairn"
)

// Replicas a follower could not judge. Every member of a metad group
// hears every blockd's reports (blockd/actor.go), but a follower applies
// the log a little behind the leader: a replica of a block whose entry it
// has not applied yet looks like one of no file, and one of a block whose
// new stamp or length it has not applied looks corrupt. So a member that
// does not lead deletes and marks nothing on a report's word (as HDFS's
// standby NameNode postpones such reports): the replica is recorded as it
// is reported and remembered here, and judged again, against a store that
// has every committed entry, when the member leads (becomeLeader) and at
// every round of its replication monitor.

// doubtful is the set of replicas recorded unjudged, by node.
type doubtful struct {
	mu    sync.Mutex
	nodes map[string]map[cairn.BlockID]struct{}
}

// add remembers node's replica of id as recorded unjudged.
func (d *doubtful) add(node string, id cairn.BlockID) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.nodes == nil {
		d.nodes = map[string]map[cairn.BlockID]struct{}{}
	}
	ids := d.nodes[node]
	if ids == nil {
		ids = map[cairn.BlockID]struct{}{}
		d.nodes[node] = ids
	}
	ids[id] = struct{}{}
}

// has reports whether node's replica of id is recorded unjudged.
func (d *doubtful) has(node string, id cairn.BlockID) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	_, ok := d.nodes[node][id]
	return ok
}

// take empties the set and returns what it held.
func (d *doubtful) take() map[string]map[cairn.BlockID]struct{} {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := d.nodes
	d.nodes = nil
	return out
}

// rejudgeDoubtful judges again, as the leader, the replicas recorded
// unjudged while this member did not lead: each as the block map holds it
// now (one forgotten since is let be). Run while this member leads; one
// that does not puts them back.
func (m *Metad) rejudgeDoubtful() {
	set := m.doubt.take()
	if len(set) == 0 {
		return
	}
	total := 0
	for node, ids := range set {
		list := make([]cairn.BlockID, 0, len(ids))
		for id := range ids {
			list = append(list, id)
		}
		sort.Slice(list, func(i, j int) bool { return list[i] < list[j] })
		reps := make([]cairn.Replica, 0, len(list))
		m.blocks.mu.Lock()
		for _, id := range list {
			if r, ok := m.blocks.replica(node, id); ok {
				reps = append(reps, r)
			}
		}
		m.blocks.mu.Unlock()
		if err := m.accept(node, reps, false); err != nil {
			m.log.Error("judge the replicas reported while not leading", zap.String("storage_id", node), zap.Error(err))
			for _, id := range list {
				m.doubt.add(node, id)
			}
			continue
		}
		total += len(reps)
	}
	m.log.Info("replicas reported while not leading judged again", zap.Int("replicas", total))
}
