package metad

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sort"
	"sync"
	"time"

	"go.uber.org/zap"

	"cairn"
)

var _ cairn.Registry = (*Metad)(nil)

// nodeSet is metad's view of the blockds: who they are, when they last
// spoke, what they hold room for.
type nodeSet struct {
	mu         sync.Mutex
	deadAfter  time.Duration
	staleAfter time.Duration
	nodes      map[string]*nodeState
}

type nodeState struct {
	cairn.Node
	hb   cairn.Heartbeat
	last time.Time
}

func (ns *nodeSet) live(n *nodeState, now time.Time) bool {
	return now.Sub(n.last) < ns.deadAfter
}

// choose picks up to n distinct live blockds with room for a block, in a
// random order.
func (ns *nodeSet) choose(n int, blockSize int64, now time.Time) []cairn.Node {
	ns.mu.Lock()
	defer ns.mu.Unlock()
	var cands []cairn.Node
	for _, st := range ns.nodes {
		if !ns.live(st, now) {
			continue
		}
		if st.hb.Capacity > 0 && st.hb.Remaining < blockSize {
			continue
		}
		cands = append(cands, st.Node)
	}
	rand.Shuffle(len(cands), func(i, j int) { cands[i], cands[j] = cands[j], cands[i] })
	if len(cands) > n {
		cands = cands[:n]
	}
	return cands
}

// isLive returns a live node and whether it is stale (silent for two
// heartbeats, so likely dying).
func (ns *nodeSet) isLive(id string, now time.Time) (n cairn.Node, live, stale bool) {
	ns.mu.Lock()
	defer ns.mu.Unlock()
	st, ok := ns.nodes[id]
	if !ok || !ns.live(st, now) {
		return cairn.Node{}, false, false
	}
	return st.Node, true, now.Sub(st.last) >= ns.staleAfter
}

func (ns *nodeSet) totals(now time.Time) cairn.FsStats {
	ns.mu.Lock()
	defer ns.mu.Unlock()
	var st cairn.FsStats
	for _, n := range ns.nodes {
		if !ns.live(n, now) {
			continue
		}
		st.LiveNodes++
		st.Capacity += n.hb.Capacity
		st.Used += n.hb.Used
		st.Remaining += n.hb.Remaining
	}
	return st
}

func (ns *nodeSet) report(now time.Time, bm *blockMap) []cairn.NodeReport {
	ns.mu.Lock()
	out := make([]cairn.NodeReport, 0, len(ns.nodes))
	for _, n := range ns.nodes {
		out = append(out, cairn.NodeReport{
			Node: n.Node, Capacity: n.hb.Capacity, Used: n.hb.Used, Remaining: n.hb.Remaining,
			LastHeartbeat: n.last, Live: ns.live(n, now),
		})
	}
	ns.mu.Unlock()
	for i := range out {
		out[i].Blocks = bm.countOn(out[i].StorageID)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].DataAddr < out[j].DataAddr })
	return out
}

// blockMap is where replicas are, as the blockds report them. Like HDFS's
// block map it lives only in memory and is rebuilt from block reports.
type blockMap struct {
	mu       sync.Mutex
	replicas map[cairn.BlockID]map[string]cairn.Block // block -> storage ID -> replica
	corrupt  map[cairn.BlockID]map[string]string      // block -> storage ID -> why
	toDelete map[string][]cairn.Block                 // storage ID -> replicas to delete
}

func newBlockMap() *blockMap {
	return &blockMap{
		replicas: map[cairn.BlockID]map[string]cairn.Block{},
		corrupt:  map[cairn.BlockID]map[string]string{},
		toDelete: map[string][]cairn.Block{},
	}
}

// markCorrupt records a bad replica: it is no longer offered to readers and
// no longer counts as a replica.
func (bm *blockMap) markCorrupt(node string, b cairn.Block, why string) {
	bm.mu.Lock()
	defer bm.mu.Unlock()
	c := bm.corrupt[b.ID]
	if c == nil {
		c = map[string]string{}
		bm.corrupt[b.ID] = c
	}
	c[node] = why
}

func (bm *blockMap) isCorrupt(node string, id cairn.BlockID) bool {
	_, bad := bm.corrupt[id][node]
	return bad
}

// corruptCount is how many replicas of id are known bad.
func (bm *blockMap) corruptCount(id cairn.BlockID) int {
	bm.mu.Lock()
	defer bm.mu.Unlock()
	return len(bm.corrupt[id])
}

func (bm *blockMap) add(node string, b cairn.Block) {
	r := bm.replicas[b.ID]
	if r == nil {
		r = map[string]cairn.Block{}
		bm.replicas[b.ID] = r
	}
	r[node] = b
}

func (bm *blockMap) remove(node string, id cairn.BlockID) {
	if c := bm.corrupt[id]; c != nil {
		delete(c, node)
		if len(c) == 0 {
			delete(bm.corrupt, id)
		}
	}
	if r := bm.replicas[id]; r != nil {
		delete(r, node)
		if len(r) == 0 {
			delete(bm.replicas, id)
		}
	}
}

// replicaCount counts reported replicas of b at b's generation stamp or newer.
func (bm *blockMap) replicaCount(b cairn.Block) int {
	bm.mu.Lock()
	defer bm.mu.Unlock()
	n := 0
	for node, r := range bm.replicas[b.ID] {
		if r.GenStamp >= b.GenStamp && !bm.isCorrupt(node, b.ID) {
			n++
		}
	}
	return n
}

func (bm *blockMap) holders(b cairn.Block) []string {
	bm.mu.Lock()
	defer bm.mu.Unlock()
	var out []string
	for node, r := range bm.replicas[b.ID] {
		if r.GenStamp >= b.GenStamp && !bm.isCorrupt(node, b.ID) {
			out = append(out, node)
		}
	}
	return out
}

func (bm *blockMap) count() int {
	bm.mu.Lock()
	defer bm.mu.Unlock()
	return len(bm.replicas)
}

func (bm *blockMap) countOn(node string) int64 {
	bm.mu.Lock()
	defer bm.mu.Unlock()
	var n int64
	for _, r := range bm.replicas {
		if _, ok := r[node]; ok {
			n++
		}
	}
	return n
}

// free forgets blocks whose files are gone and queues their replicas for
// deletion on the blockds that hold them.
func (bm *blockMap) free(blocks []cairn.Block) {
	if len(blocks) == 0 {
		return
	}
	bm.mu.Lock()
	defer bm.mu.Unlock()
	for _, b := range blocks {
		for node, r := range bm.replicas[b.ID] {
			bm.toDelete[node] = append(bm.toDelete[node], r)
		}
		delete(bm.replicas, b.ID)
		delete(bm.corrupt, b.ID)
	}
}

func (bm *blockMap) takeDeletes(node string) []cairn.Block {
	bm.mu.Lock()
	defer bm.mu.Unlock()
	d := bm.toDelete[node]
	delete(bm.toDelete, node)
	return d
}

// liveReplicas lists the live holders of b in a random order, stale ones
// last.
func (m *Metad) liveReplicas(b cairn.Block, now time.Time) []cairn.Node {
	var fresh, stale []cairn.Node
	for _, id := range m.blocks.holders(b) {
		switch n, live, isStale := m.nodes.isLive(id, now); {
		case live && !isStale:
			fresh = append(fresh, n)
		case live:
			stale = append(stale, n)
		}
	}
	rand.Shuffle(len(fresh), func(i, j int) { fresh[i], fresh[j] = fresh[j], fresh[i] })
	return append(fresh, stale...)
}

func (m *Metad) Register(ctx context.Context, r cairn.Registration) (string, error) {
	const op = "metad.Register"
	if r.StorageID == "" || r.DataAddr == "" {
		return "", cairn.E(op, cairn.KindInvalid, "", "registration without storage ID or data address")
	}
	if r.NamespaceID != "" && r.NamespaceID != m.namespaceID {
		m.log.Warn("refused a blockd from another namespace", zap.String("storage_id", r.StorageID),
			zap.String("blockd_namespace", r.NamespaceID), zap.String("namespace", m.namespaceID))
		return "", cairn.E(op, cairn.KindNamespace, "", fmt.Sprintf("blockd %s is formatted for namespace %s, this metad serves namespace %s", r.StorageID, r.NamespaceID, m.namespaceID))
	}
	if r.Rack == "" {
		r.Rack = "/default-rack"
	}
	m.nodes.mu.Lock()
	m.nodes.nodes[r.StorageID] = &nodeState{Node: r.Node, last: m.clock.Now()}
	m.nodes.mu.Unlock()
	m.log.Info("blockd registered", zap.String("storage_id", r.StorageID), zap.String("data", r.DataAddr), zap.String("rack", r.Rack))
	return m.namespaceID, nil
}

func (m *Metad) Heartbeat(ctx context.Context, h cairn.Heartbeat) ([]cairn.Command, error) {
	m.nodes.mu.Lock()
	st, ok := m.nodes.nodes[h.StorageID]
	if ok {
		st.hb = h
		st.last = m.clock.Now()
	}
	m.nodes.mu.Unlock()
	if !ok {
		return []cairn.Command{{Kind: cairn.CmdReregister}}, nil
	}
	cmds := append(m.repl.take(h.StorageID), m.recoveries.take(h.StorageID)...)
	if del := m.blocks.takeDeletes(h.StorageID); len(del) > 0 {
		cmds = append(cmds, cairn.Command{Kind: cairn.CmdDelete, Blocks: del})
	}
	return cmds, nil
}

func (m *Metad) known(op, id string) error {
	m.nodes.mu.Lock()
	_, ok := m.nodes.nodes[id]
	m.nodes.mu.Unlock()
	if !ok {
		return cairn.E(op, cairn.KindInvalid, "", fmt.Sprintf("blockd %s is not registered", id))
	}
	return nil
}

// replicaFate says what to do with a reported replica.
type replicaFate int

const (
	fateKeep   replicaFate = iota // a replica of a file's block, current
	fateIgnore                    // stale, of a file being written: pipeline recovery or append will settle it
	fateDrop                      // of no file, or stale: delete it
)

// fate decides on a reported replica. A replica with an older generation
// stamp than metad's is stale; while its file is being written it may be
// the very replica an append or a pipeline recovery is about to reopen,
// so it is left alone rather than deleted.
func (m *Metad) fate(b cairn.Block) (replicaFate, error) {
	stored, writing, ok, err := m.storedBlock(b.ID)
	switch {
	case err != nil:
		return fateIgnore, err
	case !ok:
		return fateDrop, nil
	case b.GenStamp >= stored.GenStamp:
		return fateKeep, nil
	case writing:
		return fateIgnore, nil
	}
	return fateDrop, nil
}

func (m *Metad) accept(node string, blocks []cairn.Block, replace bool) error {
	keep := make([]cairn.Block, 0, len(blocks))
	var drop []cairn.Block
	for _, b := range blocks {
		f, err := m.fate(b)
		if err != nil {
			return err
		}
		switch f {
		case fateKeep:
			keep = append(keep, b)
		case fateDrop:
			drop = append(drop, b)
		}
	}
	bm := m.blocks
	bm.mu.Lock()
	if replace {
		for id, r := range bm.replicas {
			if _, ok := r[node]; ok {
				bm.remove(node, id)
			}
		}
	}
	for _, b := range keep {
		bm.add(node, b)
	}
	bm.toDelete[node] = append(bm.toDelete[node], drop...)
	bm.mu.Unlock()
	if len(drop) > 0 {
		m.log.Info("replicas of no file queued for deletion", zap.String("storage_id", node), zap.Int("replicas", len(drop)))
	}
	return nil
}

// byState splits reported replicas into finalized ones and the rest.
func byState(reps []cairn.Replica) (finalized, unfinished []cairn.Block) {
	for _, r := range reps {
		if r.State == cairn.ReplicaFinalized {
			finalized = append(finalized, r.Block)
		} else {
			unfinished = append(unfinished, r.Block)
		}
	}
	return finalized, unfinished
}

func (m *Metad) BlockReport(ctx context.Context, id string, reps []cairn.Replica) error {
	if err := m.known("metad.BlockReport", id); err != nil {
		return err
	}
	m.log.Info("block report", zap.String("storage_id", id), zap.Int("replicas", len(reps)))
	finalized, unfinished := byState(reps)
	if err := m.accept(id, finalized, true); err != nil {
		return err
	}
	return m.recovering(id, unfinished)
}

func (m *Metad) BlocksReceived(ctx context.Context, id string, reps []cairn.Replica) error {
	if err := m.known("metad.BlocksReceived", id); err != nil {
		return err
	}
	finalized, _ := byState(reps)
	for _, b := range finalized {
		m.repl.settled(b.ID)
	}
	return m.accept(id, finalized, false)
}

// anyReplica reports whether any blockd reported a replica of id, in any
// state or stamp.
func (bm *blockMap) anyReplica(id cairn.BlockID) bool {
	bm.mu.Lock()
	defer bm.mu.Unlock()
	return len(bm.replicas[id]) > 0
}

func (m *Metad) BlocksDeleted(ctx context.Context, id string, blocks []cairn.Block) error {
	if err := m.known("metad.BlocksDeleted", id); err != nil {
		return err
	}
	m.blocks.mu.Lock()
	for _, b := range blocks {
		// A deletion of an older stamp leaves a newer replica alone.
		if r, ok := m.blocks.replicas[b.ID][id]; !ok || r.GenStamp <= b.GenStamp {
			m.blocks.remove(id, b.ID)
			m.repl.settled(b.ID) // the replica count changed: look again soon
		}
	}
	m.blocks.mu.Unlock()
	return nil
}
