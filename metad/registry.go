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
	// admin is the admin state of every blockd not in service
	// (decommission.go), registered or not; exclude is the exclude file's
	// list as last read.
	admin   map[string]adminRecord
	exclude map[string]bool
}

type nodeState struct {
	cairn.Node
	hb   cairn.Heartbeat
	last time.Time
	// heard: a heartbeat came since the blockd registered (hb is its).
	heard bool
	// deadSeen: the replication monitor saw it dead and dropped the copies
	// it was the source of (newlyDead).
	deadSeen bool
	// reported: a full block report came since the blockd registered.
	reported bool
}

// hasRoom reports whether n can take a block of blockSize bytes, as its
// last heartbeat said, by placement's rule: one not heard from since it
// registered counts as having room; one that reports no capacity has none.
func (n *nodeState) hasRoom(blockSize int64) bool {
	return !n.heard || n.hb.Remaining >= blockSize
}

// newlyDead lists the blockds dead now that were not when last asked
// (since they registered).
func (ns *nodeSet) newlyDead(now time.Time) map[string]bool {
	ns.mu.Lock()
	defer ns.mu.Unlock()
	var out map[string]bool
	for id, n := range ns.nodes {
		if ns.live(n, now) {
			n.deadSeen = false
			continue
		}
		if !n.deadSeen {
			n.deadSeen = true
			if out == nil {
				out = map[string]bool{}
			}
			out[id] = true
		}
	}
	return out
}

func (ns *nodeSet) live(n *nodeState, now time.Time) bool {
	return now.Sub(n.last) < ns.deadAfter
}

// unheardSince counts the blockds known and those of them not heard from
// (by registration or heartbeat) since t.
func (ns *nodeSet) unheardSince(t time.Time) (known, unheard int) {
	ns.mu.Lock()
	defer ns.mu.Unlock()
	for _, n := range ns.nodes {
		known++
		if n.last.Before(t) {
			unheard++
		}
	}
	return known, unheard
}

func (ns *nodeSet) stale(n *nodeState, now time.Time) bool {
	return now.Sub(n.last) >= ns.staleAfter
}

// maxStaleRatio: while at most this share of the live blockds is stale, no
// new replica is placed on a stale one (HDFS's
// dfs.namenode.write.stale.datanode.ratio); past it, staleness is more
// likely metad's own trouble than theirs, and every live blockd is used.
const maxStaleRatio = 0.5

// isLive returns a live node and whether it is stale (silent past the
// stale interval, so likely hung or dying).
func (ns *nodeSet) isLive(id string, now time.Time) (n cairn.Node, live, stale bool) {
	ns.mu.Lock()
	defer ns.mu.Unlock()
	st, ok := ns.nodes[id]
	if !ok || !ns.live(st, now) {
		return cairn.Node{}, false, false
	}
	return st.Node, true, ns.stale(st, now)
}

// node returns what metad knows of blockd id, live or not: at least its
// storage ID.
func (ns *nodeSet) node(id string) cairn.Node {
	ns.mu.Lock()
	defer ns.mu.Unlock()
	if st, ok := ns.nodes[id]; ok {
		return st.Node
	}
	return cairn.Node{StorageID: id}
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
			AdminState: ns.admin[n.StorageID].state.String(), FailedVolumes: n.hb.FailedVolumes,
			MaintenanceExpires: ns.admin[n.StorageID].expires,
		})
	}
	ns.mu.Unlock()
	for i := range out {
		out[i].Blocks = bm.countOn(out[i].StorageID)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].DataAddr < out[j].DataAddr })
	return out
}

// liveReplicas lists the live holders of b in a random order, stale ones
// and then those out of service (being decommissioned, decommissioned, or
// in maintenance) last.
func (m *Metad) liveReplicas(b cairn.Block, now time.Time) []cairn.Node {
	var fresh, stale, out []cairn.Node
	for _, id := range m.blocks.holders(b) {
		switch n, live, isStale, in := m.nodes.status(id, now); {
		case live && !in:
			out = append(out, n)
		case live && !isStale:
			fresh = append(fresh, n)
		case live:
			stale = append(stale, n)
		}
	}
	rand.Shuffle(len(fresh), func(i, j int) { fresh[i], fresh[j] = fresh[j], fresh[i] })
	return append(append(fresh, stale...), out...)
}

// readReplicas lists the replicas of b to offer readers: its live good
// replicas (liveReplicas) or, when it has none, as a last resort (as HDFS
// does for a block whose every replica is corrupt), the live replicas
// marked corrupt that are finalized at b's stamp or newer: a reader
// verifies every chunk, so it may still read the parts that are sound.
func (m *Metad) readReplicas(b cairn.Block, now time.Time) []cairn.Node {
	if locs := m.liveReplicas(b, now); len(locs) > 0 {
		return locs
	}
	var out []cairn.Node
	for _, r := range m.blocks.replicasOf(b.ID) {
		if r.Corrupt == "" || r.State != cairn.ReplicaFinalized || r.GenStamp < b.GenStamp || r.Len < b.Len {
			continue
		}
		if n, live, _ := m.nodes.isLive(r.StorageID, now); live {
			out = append(out, n)
		}
	}
	return out
}

func (m *Metad) Register(ctx context.Context, r cairn.Registration) (cairn.Registered, error) {
	const op = "metad.Register"
	if r.StorageID == "" || r.DataAddr == "" {
		return cairn.Registered{}, cairn.E(op, cairn.KindInvalid, "", "registration without storage ID or data address")
	}
	if r.NamespaceID != "" && r.NamespaceID != m.namespaceID {
		m.log.Warn("refused a blockd from another namespace", zap.String("storage_id", r.StorageID),
			zap.String("blockd_namespace", r.NamespaceID), zap.String("namespace", m.namespaceID))
		return cairn.Registered{}, cairn.E(op, cairn.KindNamespace, "", fmt.Sprintf("blockd %s is formatted for namespace %s, this metad serves namespace %s", r.StorageID, r.NamespaceID, m.namespaceID))
	}
	claimed := r.Rack
	if claimed == "" {
		claimed = DefaultRack
	}
	if err := validRack(claimed); err != nil {
		return cairn.Registered{}, cairn.E(op, cairn.KindInvalid, "", fmt.Sprintf("blockd %s: --rack: %v", r.StorageID, err))
	}
	r.Rack = claimed
	m.checkDataAddr(ctx, r)
	if m.topo.script != "" {
		// The script decides, by the blockd's address, as HDFS's
		// NameNode does; the blockd's own word is logged only.
		host := hostOf(r.DataAddr)
		r.Rack = m.topo.resolve([]string{host})[host]
	}
	m.nodes.mu.Lock()
	m.nodes.nodes[r.StorageID] = &nodeState{Node: r.Node, last: m.clock.Now()}
	m.nodes.mu.Unlock()
	m.repl.forget(r.StorageID) // copies it was asked for before are gone with its old self
	m.admitted(r.Node)
	keys, err := m.tokens.Keys()
	if err != nil {
		return cairn.Registered{}, cairn.E(op, cairn.KindIO, "", "block token keys: "+err.Error())
	}
	m.log.Info("blockd registered", zap.String("storage_id", r.StorageID), zap.String("data", r.DataAddr), zap.String("rack", r.Rack), zap.String("rack_claimed", claimed))
	return cairn.Registered{NamespaceID: m.namespaceID, Keys: keys, EncryptData: m.cfg.EncryptData}, nil
}

// maxFailedVolumes and maxVolumeReason bound what a heartbeat's failed
// volumes may make metad keep.
const (
	maxFailedVolumes = 64
	maxVolumeReason  = 512
)

func (m *Metad) Heartbeat(ctx context.Context, h cairn.Heartbeat) ([]cairn.Command, error) {
	rep, err := m.HeartbeatReply(ctx, h)
	return rep.Commands, err
}

// HeartbeatReply records a blockd's heartbeat and answers with the
// commands for it (cairn.LeaderRegistry). Every member of a group records
// heartbeats, but only the leader, once ready, sends commands: a follower
// answers with its block token keys alone (or CmdReregister) and says it
// is one, so the work queued on the leader is neither taken nor lost here.
func (m *Metad) HeartbeatReply(ctx context.Context, h cairn.Heartbeat) (cairn.HeartbeatReply, error) {
	if len(h.FailedVolumes) > maxFailedVolumes {
		h.FailedVolumes = h.FailedVolumes[:maxFailedVolumes]
	}
	for i, v := range h.FailedVolumes {
		if len(v) > maxVolumeReason {
			h.FailedVolumes[i] = v[:maxVolumeReason]
		}
	}
	m.nodes.mu.Lock()
	st, ok := m.nodes.nodes[h.StorageID]
	if ok {
		st.hb, st.heard = h, true
		st.last = m.clock.Now()
	}
	m.nodes.mu.Unlock()
	if !ok {
		return cairn.HeartbeatReply{Commands: []cairn.Command{{Kind: cairn.CmdReregister}}, Follower: !m.leads(), Term: m.term()}, nil
	}
	term := m.term()
	if !m.leads() {
		return cairn.HeartbeatReply{Commands: m.keysCommand(), Follower: true, Term: term}, nil
	}
	var cmds []cairn.Command
	if !m.safe.isOn() {
		// In safe mode nothing is copied, recovered or deleted: the work
		// stays queued until metad leaves it.
		// Each kind is bounded, so the reply stays far below the blockd's
		// message limit whatever is queued; the rest stays queued for the
		// next heartbeats (replqueue.go).
		cmds = append(m.repl.take(h.StorageID, m.clock.Now()), m.recoveries.take(h.StorageID, maxRecoveriesPerReply)...)
		if del := m.blocks.takeDeletes(h.StorageID, m.cfg.InvalidateLimit); len(del) > 0 {
			cmds = append(cmds, cairn.Command{Kind: cairn.CmdDelete, Blocks: del})
		}
	}
	if v := m.blocks.takeVerifies(h.StorageID); len(v) > 0 {
		cmds = append(cmds, cairn.Command{Kind: cairn.CmdVerify, Blocks: v})
	}
	m.commandTokens(cmds)
	return cairn.HeartbeatReply{Commands: append(m.keysCommand(), cmds...), Term: term}, nil
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

// reportSlice is how many reported replicas accept records under one hold
// of the block map's lock: a report of a million replicas lets client RPCs
// (Complete, reads) in between its slices.
const reportSlice = 4096

// accept records the replicas node reports, judged against metad's
// record of their blocks (judge); with replace (a full report) node's
// replicas not in reps are forgotten. Replicas of no file are queued for
// deletion; no other replica is deleted here. The report is judged and
// recorded in slices (reportSlice), the lock let go between them.
func (m *Metad) accept(node string, reps []cairn.Replica, replace bool) error {
	bm := m.blocks
	if replace {
		bm.reports.Lock()
		defer bm.reports.Unlock()
		bm.beginReport(node)
	}
	var t reportTally
	for len(reps) > 0 {
		k := min(len(reps), reportSlice)
		if err := m.acceptSlice(node, reps[:k], &t); err != nil {
			return err
		}
		reps = reps[k:]
	}
	forgotten := 0
	if replace {
		forgotten = bm.sweepReport(node)
	}
	if t.noFile > 0 {
		m.log.Info("replicas of no file queued for deletion", zap.String("storage_id", node), zap.Int("replicas", t.noFile))
	}
	if t.corrupt > 0 {
		m.log.Warn("reported replicas disagree with metad's record; marked corrupt", zap.String("storage_id", node), zap.Int("replicas", t.corrupt))
	}
	if t.deferred > 0 {
		m.log.Debug("replicas recorded unjudged until this member leads", zap.String("storage_id", node), zap.Int("replicas", t.deferred))
	}
	if t.rwrKept+t.rwrDropped > 0 {
		m.log.Info("replicas being recovered", zap.String("storage_id", node), zap.Int("kept", t.rwrKept), zap.Int("dropped", t.rwrDropped))
	}
	if forgotten > 0 {
		m.log.Info("replicas missing from a full report forgotten", zap.String("storage_id", node), zap.Int("replicas", forgotten))
	}
	return nil
}

// reportTally counts what accept made of a report.
type reportTally struct {
	noFile, corrupt, rwrKept, rwrDropped int
	deferred                             int // recorded unjudged: this member does not lead
}

// acceptSlice judges reps (outside the block map's lock: the judging reads
// the store, through one iterator for the slice, blockLookup) and records
// them under one hold of it.
func (m *Metad) acceptSlice(node string, reps []cairn.Replica, t *reportTally) error {
	type verdict struct {
		r   cairn.Replica
		j   judgement
		why string
	}
	// A member that does not lead may be behind the log: it deletes and
	// marks nothing on its own judgement (doubtful.go). Read before the
	// judging, so a verdict acted on was made against a leader's store.
	// A leader whose process stood still lately may have been deposed
	// meanwhile and not know it yet: its store may be behind its
	// successor's, so it defers its verdicts too until it has confirmed
	// it leads (leaderWork's rejudgeDoubtful).
	lead := m.leads() && !m.stalledLately()
	vs := make([]verdict, 0, len(reps))
	var live []cairn.BlockID
	look, err := m.newBlockLookup()
	if err != nil {
		return err
	}
	for _, r := range reps {
		stored, f, known, err := look.find(r.ID)
		if err != nil {
			look.close()
			return err
		}
		j, why := judge(r, stored, known, f.writing)
		vs = append(vs, verdict{r, j, why})
		// Safe mode counts a block once a replica of it is reported
		// that is not corrupt: a good one, or one of a file being written
		// (recorded as it is; the writer or recovery settles it).
		if j == replicaLive || j == replicaAsIs {
			live = append(live, r.ID)
		}
		if r.State == cairn.ReplicaRWR {
			if j == replicaOfNoFile {
				t.rwrDropped++
			} else {
				t.rwrKept++
			}
		}
	}
	look.close()
	bm := m.blocks
	bm.mu.Lock()
	for _, v := range vs {
		if !lead && (v.j == replicaOfNoFile || v.j == replicaCorrupt) {
			bm.add(node, v.r)
			m.doubt.add(node, v.r.ID)
			t.deferred++
			continue
		}
		switch v.j {
		case replicaOfNoFile:
			bm.remove(node, v.r.ID)
			bm.queueDelete(node, v.r.Block)
			t.noFile++
		case replicaAsIs:
			// An RBW report of a finalized replica at the same stamp was
			// made before its finalize: the finalized record stands (and
			// is kept by a full report).
			if old, ok := bm.replica(node, v.r.ID); ok && v.r.State == cairn.ReplicaRBW &&
				old.State == cairn.ReplicaFinalized && old.GenStamp >= v.r.GenStamp {
				bm.add(node, old)
				continue
			}
			bm.add(node, v.r)
		case replicaLive:
			bm.add(node, v.r)
			bm.unmarkJudged(node, v.r)
		case replicaCorrupt:
			bm.add(node, v.r)
			bm.markJudged(node, v.r, v.why)
			t.corrupt++
		}
	}
	bm.mu.Unlock()
	m.safe.reported(live, m.clock.Now())
	return nil
}

func (m *Metad) BlockReport(ctx context.Context, id string, reps []cairn.Replica) error {
	if err := m.known("metad.BlockReport", id); err != nil {
		return err
	}
	m.log.Info("block report", zap.String("storage_id", id), zap.Int("replicas", len(reps)))
	if err := m.accept(id, reps, true); err != nil {
		return err
	}
	m.nodes.mu.Lock()
	if st := m.nodes.nodes[id]; st != nil {
		st.reported = true
	}
	m.nodes.mu.Unlock()
	return nil
}

func (m *Metad) BlocksReceived(ctx context.Context, id string, reps []cairn.Replica) error {
	if err := m.known("metad.BlocksReceived", id); err != nil {
		return err
	}
	type arrived struct {
		id  cairn.BlockID
		src string
	}
	var moved []arrived
	for _, r := range reps {
		if r.State != cairn.ReplicaFinalized {
			continue
		}
		if src, ok := m.repl.moveTo(r.ID, id); ok {
			moved = append(moved, arrived{r.ID, src}) // a balancer move: settled once its source's replica is dealt with
			continue
		}
		m.repl.settled(r.ID) // a copy arrived, or the block changed: look again
	}
	if err := m.accept(id, reps, false); err != nil {
		return err
	}
	for _, mv := range moved {
		if err := m.finishMove(mv.id, mv.src, id, m.clock.Now()); err != nil {
			return err
		}
	}
	return nil
}

// anyReplica reports whether any blockd reported a replica of id, in any
// state or stamp.
func (bm *blockMap) anyReplica(id cairn.BlockID) bool {
	bm.mu.Lock()
	defer bm.mu.Unlock()
	_, ok := bm.t.find(id)
	return ok
}

func (m *Metad) BlocksDeleted(ctx context.Context, id string, blocks []cairn.Block) error {
	if err := m.known("metad.BlocksDeleted", id); err != nil {
		return err
	}
	m.blocks.mu.Lock()
	for _, b := range blocks {
		// A deletion of an older stamp leaves a newer replica alone.
		if r, ok := m.blocks.replica(id, b.ID); !ok || r.GenStamp <= b.GenStamp {
			m.blocks.remove(id, b.ID)
			m.repl.settled(b.ID) // the replica count changed: look again soon
		}
	}
	m.blocks.mu.Unlock()
	return nil
}
