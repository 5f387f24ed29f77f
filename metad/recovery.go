package metad

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"go.uber.org/zap"

	"cairn"
	"cairn/metad/metapb"
	"cairn/trust"
)

// Block recovery, as HDFS's: a file whose writer is gone is closed only
// once the replicas of its last block agree. Lease recovery hands the file
// to metad (its lease holder becomes recoveryHolder, so the old writer can
// do nothing more), gives the block a recovery ID (a new generation stamp),
// and names a primary among the blockds that may hold a replica (CmdRecover
// on its next heartbeat). The primary asks every replica for its state and
// length, has each cut to the length all surviving replicas hold and
// finalized at the recovery ID, and reports back
// (CommitBlockSynchronization); only then does metad record the block's
// new stamp and length and close the file. A recovery that does not report
// back within recoveryTimeout is begun again with a new ID, which
// supersedes the old one on every blockd.

// recoveryHolder is the lease holder of a file under block recovery. No
// client may name itself so (validClient refuses the "metad/" prefix).
const recoveryHolder = "metad/recovery"

// recoveryTimeout is how long metad waits for a recovery's primary before
// it begins the recovery again.
func (m *Metad) recoveryTimeout() time.Duration {
	return max(10*m.cfg.Heartbeat, 5*time.Second)
}

// recovery is a block recovery under way.
type recovery struct {
	ino     uint64
	block   cairn.Block // as metad recorded it when the recovery began
	id      cairn.GenStamp
	primary string
	targets []cairn.Node
	sent    bool // the command went out on a heartbeat
}

// recoveries are the block recoveries under way, in memory only: a
// restarted metad begins any again when the lease monitor finds the file
// still held by recoveryHolder.
type recoveries struct {
	mu      sync.Mutex
	byBlock map[cairn.BlockID]*recovery
}

func newRecoveries() *recoveries { return &recoveries{byBlock: map[cairn.BlockID]*recovery{}} }

func (rs *recoveries) start(r *recovery) {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	rs.byBlock[r.block.ID] = r
}

// take returns up to limit recovery commands for node, each once.
func (rs *recoveries) take(node string, limit int) []cairn.Command {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	var out []cairn.Command
	for _, r := range rs.byBlock {
		if r.primary == node && !r.sent && len(out) < limit {
			r.sent = true
			out = append(out, cairn.Command{Kind: cairn.CmdRecover, Blocks: []cairn.Block{r.block}, Targets: r.targets, RecoveryID: r.id})
		}
	}
	return out
}

// current returns the recovery of block id, if one is under way.
func (rs *recoveries) current(id cairn.BlockID) (recovery, bool) {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	r, ok := rs.byBlock[id]
	if !ok {
		return recovery{}, false
	}
	return *r, true
}

func (rs *recoveries) done(id cairn.BlockID, rid cairn.GenStamp) {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	if r, ok := rs.byBlock[id]; ok && r.id == rid {
		delete(rs.byBlock, id)
	}
}

// recoveryCandidates are the live blockds that may hold a replica of b at
// its stamp or newer, in any state: those that reported one, and the
// nodes of its last pipeline.
func (m *Metad) recoveryCandidates(b cairn.Block, now time.Time) []cairn.Node {
	seen := map[string]bool{}
	var nodes []cairn.Node
	for _, r := range m.blocks.replicasOf(b.ID) {
		if r.GenStamp < b.GenStamp {
			continue
		}
		if n, live, _ := m.nodes.isLive(r.StorageID, now); live {
			seen[r.StorageID] = true
			nodes = append(nodes, n)
		}
	}
	for _, n := range m.pipelines.get(b.ID) {
		if seen[n.StorageID] {
			continue
		}
		if _, live, _ := m.nodes.isLive(n.StorageID, now); live {
			seen[n.StorageID] = true
			nodes = append(nodes, n)
		}
	}
	return nodes
}

// recoverLease closes in, a file being written whose writer is gone, or
// begins the block recovery that will close it. A file without blocks, or
// whose last block is empty with no replica anywhere, is closed in b at
// once; any other waits for its last block's recovery, even when every
// replica looks finalized: only the blockds know their replicas' states. Otherwise the last block gets a recovery: the lease passes to
// recoveryHolder, and afterRecovery (called by the caller once b is
// durable) hands the primary its command. With no live node that may hold
// a replica, the file stays open, held by recoveryHolder, and the lease
// monitor tries again after recoveryTimeout: bytes that were acknowledged
// are never given up for want of a blockd. Caller holds the lock.
func (m *Metad) recoverLease(op, path string, b *pebble.Batch, in *metapb.Inode, why string) (*recovered, error) {
	r := &recovered{path: path, holder: in.LeaseHolder, why: why, lengthFrom: "no blocks"}
	now := m.clock.Now()
	if in.Blocks > 0 {
		key := fileBlockKey(in.Id, in.Blocks-1)
		v, err := m.st.get(key)
		if err != nil {
			return nil, fmt.Errorf("%s: last block of %s: %w", op, path, err)
		}
		last, err := decodeBlock(v)
		if err != nil {
			return nil, err
		}
		r.last = last.ID
		cands := m.recoveryCandidates(last, now)
		switch {
		case len(cands) == 0 && last.Len == 0 && !m.blocks.anyReplica(last.ID):
			_ = b.Delete(key, nil)
			_ = b.Delete(blockKey(last.ID), nil)
			in.Blocks--
			r.freed = []cairn.Block{last}
			r.lengthFrom = "empty last block dropped"
		case len(cands) == 0:
			// Nothing to recover from now; hold the file and try again.
			in.LeaseHolder = recoveryHolder
			in.LeaseNs = now.UnixNano()
			r.lengthFrom = "waiting for a blockd that holds a replica"
			r.waiting = true
			return r, setInode(b, in)
		default:
			rid := cairn.GenStamp(m.st.nextGS)
			m.st.nextGS++
			primary := pickPrimary(cands, m, now)
			r.rec = &recovery{ino: in.Id, block: last, id: rid, primary: primary.StorageID, targets: cands}
			in.LeaseHolder = recoveryHolder
			in.LeaseNs = now.UnixNano()
			r.lengthFrom = fmt.Sprintf("block recovery %d by %s over %d nodes", rid, primary.DataAddr, len(cands))
			return r, setInode(b, in)
		}
	}
	r.closed = true
	in.LeaseHolder = ""
	in.LeaseNs = 0
	in.MtimeNs = now.UnixNano()
	in.CtimeNs = in.MtimeNs
	r.size = in.Size
	freed, err := m.closed(b, in)
	r.freed = append(r.freed, freed...)
	return r, err
}

// pickPrimary prefers a blockd that is not stale, at random.
func pickPrimary(cands []cairn.Node, m *Metad, now time.Time) cairn.Node {
	var fresh []cairn.Node
	for _, n := range cands {
		if _, _, stale := m.nodes.isLive(n.StorageID, now); !stale {
			fresh = append(fresh, n)
		}
	}
	if len(fresh) == 0 {
		fresh = cands
	}
	return fresh[rand.IntN(len(fresh))]
}

// closed finishes closing in, whose lease was just released, in b: an
// unlinked file (an orphan) with no other holder is freed, and its blocks
// returned, to be freed once b is durable. Caller holds the lock.
func (m *Metad) closed(b *pebble.Batch, in *metapb.Inode) ([]cairn.Block, error) {
	if in.Parent == 0 && in.Id != RootIno {
		return m.freeOrphan(b, in)
	}
	return nil, setInode(b, in)
}

// CommitBlockSynchronization records a block recovery's outcome and closes
// the file. Only the recovery under way counts: a report of a superseded
// recovery, or one metad forgot (it restarted), is refused, and the lease
// monitor begins a new one in time.
func (m *Metad) CommitBlockSynchronization(ctx context.Context, c cairn.CommitSync) error {
	const op = "metad.CommitBlockSynchronization"
	if err := m.refusal(op, ""); err != nil {
		return err // the recovery is begun again once metad leaves safe mode
	}
	cur, ok := m.recoveries.current(c.Block.ID)
	if !ok || cur.id != c.RecoveryID {
		return cairn.E(op, cairn.KindInvalid, "", fmt.Sprintf("recovery %d of blk_%d is not under way", c.RecoveryID, c.Block.ID))
	}
	if p, ok := trust.PeerFrom(ctx); ok && (p.Role != trust.RoleBlockd || p.Name != cur.primary) {
		// Recovery IDs are generation stamps, easily guessed: only the
		// primary metad named may report the outcome.
		m.log.Warn("refused a block recovery's outcome from a blockd other than its primary", zap.Stringer("peer", p),
			zap.String("primary", cur.primary), zap.Uint64("block", uint64(c.Block.ID)), zap.Uint64("recovery", uint64(c.RecoveryID)))
		return cairn.E(op, cairn.KindPermission, "", fmt.Sprintf("recovery %d of blk_%d was handed to %s, not %s", c.RecoveryID, c.Block.ID, cur.primary, p))
	}
	if c.NewGenStamp != c.RecoveryID {
		return cairn.E(op, cairn.KindInvalid, "", fmt.Sprintf("recovery %d finalized at stamp %d", c.RecoveryID, c.NewGenStamp))
	}
	var r *recovered
	err := m.mutate(ctx, func(b *pebble.Batch) error {
		in, err := m.st.inode(cur.ino)
		if isNotFound(err) {
			return cairn.E(op, cairn.KindInvalid, "", fmt.Sprintf("the file of blk_%d is gone", c.Block.ID))
		}
		if err != nil {
			return err
		}
		if in.LeaseHolder != recoveryHolder || in.Blocks == 0 {
			return cairn.E(op, cairn.KindInvalid, "", fmt.Sprintf("the file of blk_%d is not under recovery", c.Block.ID))
		}
		path := m.pathOf(in)
		last, key, err := m.lastBlock(op, path, in, c.Block.ID)
		if err != nil {
			return err
		}
		if last.GenStamp != cur.block.GenStamp {
			return cairn.E(op, cairn.KindInvalid, path, fmt.Sprintf("%s changed since recovery %d began", last, c.RecoveryID))
		}
		r = &recovered{path: path, holder: recoveryHolder, why: fmt.Sprintf("block recovery %d", c.RecoveryID), last: last.ID, closed: true}
		switch {
		case c.Delete || len(c.Nodes) == 0:
			if last.Len > 0 {
				// Bytes were acknowledged: no blockd claiming it has nothing
				// makes them less so. Keep the block and try again later.
				return cairn.E(op, cairn.KindInvalid, path, fmt.Sprintf("%s holds %d acknowledged bytes; no replica reported", last, last.Len))
			}
			_ = b.Delete(key, nil)
			_ = b.Delete(blockKey(last.ID), nil)
			in.Blocks--
			r.freed = []cairn.Block{last}
			r.lengthFrom = "no replica: empty last block dropped"
		default:
			if c.NewLen < 0 || c.NewLen > in.BlockSize {
				return cairn.E(op, cairn.KindInvalid, path, fmt.Sprintf("recovered length %d outside 0..%d", c.NewLen, in.BlockSize))
			}
			nb := cairn.Block{ID: last.ID, GenStamp: c.NewGenStamp, Len: c.NewLen}
			in.Size += nb.Len - last.Len
			if err := b.Set(key, encodeBlock(nb), nil); err != nil {
				return err
			}
			r.lengthFrom = fmt.Sprintf("recovered by %d replicas", len(c.Nodes))
			if c.NewLen < last.Len {
				m.log.Warn("block recovery ended below metad's recorded length", zap.String("path", path),
					zap.Stringer("block", nb), zap.Int64("recorded", last.Len))
			}
		}
		in.LeaseHolder = ""
		in.LeaseNs = 0
		in.MtimeNs = m.clock.Now().UnixNano()
		in.CtimeNs = in.MtimeNs
		r.size = in.Size
		freed, err := m.closed(b, in)
		r.freed = append(r.freed, freed...)
		return err
	})
	if err != nil {
		return err
	}
	m.recoveries.done(c.Block.ID, c.RecoveryID)
	nb := cairn.Block{ID: c.Block.ID, GenStamp: c.NewGenStamp, Len: c.NewLen}
	if !c.Delete && len(c.Nodes) > 0 {
		m.blocks.mu.Lock()
		for _, n := range c.Nodes {
			m.blocks.add(n, cairn.Replica{Block: nb, State: cairn.ReplicaFinalized})
		}
		m.blocks.mu.Unlock()
	}
	m.afterRecovery(r)
	return nil
}

// validHolderName refuses the names metad keeps for itself.
func validHolderName(client string) bool { return !strings.HasPrefix(client, "metad/") }
