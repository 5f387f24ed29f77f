package metad

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"go.uber.org/zap"

	"cairn"
	"cairn/blocktoken"
	"cairn/metad/metapb"
)

// pipelines remembers, in memory only, which blockds hold the replicas of
// each block being written: readers of a file being written read its last
// block from them, up to the length its writer last synced.
type pipelines struct {
	mu    sync.Mutex
	nodes map[cairn.BlockID][]cairn.Node
}

func newPipelines() *pipelines { return &pipelines{nodes: map[cairn.BlockID][]cairn.Node{}} }

func (p *pipelines) set(id cairn.BlockID, nodes []cairn.Node) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.nodes[id] = append([]cairn.Node(nil), nodes...)
}

func (p *pipelines) get(id cairn.BlockID) []cairn.Node {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.nodes[id]
}

func (p *pipelines) forget(id cairn.BlockID) {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.nodes, id)
}

// pipelineReplicas adds to the finalized replicas of a block being written
// the live nodes of its pipeline, and those that reported a replica of it
// being written (or waiting for recovery) at its stamp or newer.
func (m *Metad) pipelineReplicas(b cairn.Block, locs []cairn.Node, now time.Time) []cairn.Node {
	have := map[string]bool{}
	for _, n := range locs {
		have[n.StorageID] = true
	}
	for _, n := range m.pipelines.get(b.ID) {
		if _, live, _ := m.nodes.isLive(n.StorageID, now); live && !have[n.StorageID] {
			have[n.StorageID] = true
			locs = append(locs, n)
		}
	}
	// The pipeline is kept in memory only: after a restart of metad the
	// replicas being written are known from the blockds' full reports.
	for _, r := range m.blocks.replicasOf(b.ID) {
		if have[r.StorageID] || r.Corrupt != "" || r.GenStamp < b.GenStamp || r.State == cairn.ReplicaFinalized {
			continue
		}
		if n, live, _ := m.nodes.isLive(r.StorageID, now); live {
			have[r.StorageID] = true
			locs = append(locs, n)
		}
	}
	return locs
}

// lastBlock returns the file's last block and its key.
func (m *Metad) lastBlock(op, path string, in *metapb.Inode, id cairn.BlockID) (cairn.Block, []byte, error) {
	if in.Blocks == 0 {
		return cairn.Block{}, nil, cairn.E(op, cairn.KindInvalid, path, "the file has no blocks")
	}
	key := fileBlockKey(in.Id, in.Blocks-1)
	v, err := m.st.get(key)
	if err != nil {
		return cairn.Block{}, nil, fmt.Errorf("%s: last block of %s: %w", op, path, err)
	}
	cur, err := decodeBlock(v)
	if err != nil {
		return cairn.Block{}, nil, err
	}
	if id != 0 && cur.ID != id {
		return cairn.Block{}, nil, cairn.E(op, cairn.KindInvalid, path, fmt.Sprintf("the last block is %s, not blk_%d", cur, id))
	}
	return cur, key, nil
}

// Append reopens a closed file for client. When the file ends inside a
// block, that block gets a new generation stamp and is returned with the
// live replicas to continue it on.
func (m *Metad) Append(ctx context.Context, path, client string) (cairn.FileInfo, *cairn.LocatedBlock, error) {
	const op = "metad.Append"
	var fi cairn.FileInfo
	var last *cairn.LocatedBlock
	// A takeover of an abandoned writer's file is committed on its own
	// first, then the append runs on the recovered file.
	for attempt := 0; ; attempt++ {
		var rec *recovered
		err := m.mutate(ctx, func(b *pebble.Batch) error {
			last = nil
			in, r, err := m.appendable(ctx, op, path, client, b)
			if err != nil {
				return err
			}
			if r != nil {
				rec = r
				return nil
			}
			now := m.clock.Now()
			if in.Blocks > 0 {
				cur, _, err := m.lastBlock(op, path, in, 0)
				if err != nil {
					return err
				}
				if cur.Len < in.BlockSize {
					nodes := m.liveReplicas(cur, now)
					if len(nodes) == 0 {
						return cairn.E(op, cairn.KindIO, path, fmt.Sprintf("no live replica of the last block %s to append to", cur))
					}
					// The block keeps its stamp here: the writer asks for a
					// new one (UpdateBlockForPipeline), sets up its pipeline
					// with it, and commits it (UpdatePipeline) before it
					// writes a byte. An appender that dies before that
					// leaves the file as it was.
					last = &cairn.LocatedBlock{Block: cur, Offset: in.Size - cur.Len, Locations: nodes}
				}
			}
			in.LeaseHolder = client
			in.LeaseNs = now.UnixNano()
			fi = m.infoAt(in, nameOf(path))
			return setInode(b, in)
		})
		if err != nil {
			return cairn.FileInfo{}, nil, err
		}
		if rec == nil {
			break
		}
		m.afterRecovery(rec)
		if attempt > 0 {
			return cairn.FileInfo{}, nil, cairn.E(op, cairn.KindRetry, path, "the file is being recovered")
		}
	}
	if last != nil {
		m.pipelines.set(last.ID, last.Locations)
	}
	return fi, last, nil
}

// AbandonBlock drops the file's last block when nothing was written to it:
// its pipeline could not be set up.
func (m *Metad) AbandonBlock(ctx context.Context, w cairn.WriterRef, blk cairn.Block) error {
	const op = "metad.AbandonBlock"
	path := w.Path
	err := m.mutate(ctx, func(b *pebble.Batch) error {
		in, err := m.writable(op, w)
		if err != nil {
			return err
		}
		cur, key, err := m.lastBlock(op, path, in, blk.ID)
		if err != nil {
			return err
		}
		if cur.Len != 0 {
			return cairn.E(op, cairn.KindInvalid, path, fmt.Sprintf("%s holds %d bytes", cur, cur.Len))
		}
		_ = b.Delete(key, nil)
		_ = b.Delete(blockKey(cur.ID), nil)
		in.Blocks--
		return setInode(b, in)
	})
	if err == nil {
		m.pipelines.forget(blk.ID)
		m.blocks.free([]cairn.Block{blk})
	}
	return err
}

// Fsync records that the pipeline of the file's last block holds blk.Len
// bytes (hflush, hsync): new readers see them.
func (m *Metad) Fsync(ctx context.Context, w cairn.WriterRef, blk cairn.Block) error {
	const op = "metad.Fsync"
	path := w.Path
	var err error
	defer func() { m.logWrite(op, w, blk, err) }()
	err = m.mutate(ctx, func(b *pebble.Batch) error {
		in, err := m.writable(op, w)
		if err != nil {
			return err
		}
		cur, _, err := m.lastBlock(op, path, in, blk.ID)
		if err != nil {
			return err
		}
		if blk.Len <= cur.Len {
			return nil // lengths only grow
		}
		if err := m.settleLast(op, path, b, in, &blk); err != nil {
			return err
		}
		in.LeaseNs = m.clock.Now().UnixNano()
		return setInode(b, in)
	})
	return err
}

// UpdateBlockForPipeline hands out a new generation stamp for the file's
// last block, the first step of pipeline recovery.
func (m *Metad) UpdateBlockForPipeline(ctx context.Context, w cairn.WriterRef, blk cairn.Block) (cairn.LocatedBlock, error) {
	const op = "metad.UpdateBlockForPipeline"
	path := w.Path
	var gs, was cairn.GenStamp
	err := m.mutate(ctx, func(b *pebble.Batch) error {
		in, err := m.writable(op, w)
		if err != nil {
			return err
		}
		cur, _, err := m.lastBlock(op, path, in, blk.ID)
		if err != nil {
			return err
		}
		was = cur.GenStamp
		gs = cairn.GenStamp(m.st.nextGS)
		m.st.nextGS++
		return nil
	})
	m.logWrite(op, w, cairn.Block{ID: blk.ID, GenStamp: gs, Len: blk.Len}, err)
	if err != nil {
		return cairn.LocatedBlock{}, err
	}
	// The token covers every stamp from metad's to the new one: the
	// survivors' replicas are at one of them (TRANSFER_BLOCK names it),
	// the pipeline is set up again at the new one.
	lb := cairn.LocatedBlock{Block: cairn.Block{ID: blk.ID, GenStamp: gs, Len: blk.Len}}
	lb.Token = m.token(tokenUser(ctx), blk.ID, was, gs, blocktoken.Write|blocktoken.Copy|blocktoken.Replace)
	return lb, nil
}

// UpdatePipeline commits a recovered pipeline: the last block now has
// updated's generation stamp, at least updated.Len bytes, on nodes.
func (m *Metad) UpdatePipeline(ctx context.Context, w cairn.WriterRef, old, updated cairn.Block, nodes []cairn.Node) error {
	const op = "metad.UpdatePipeline"
	path := w.Path
	if old.ID != updated.ID || updated.GenStamp <= old.GenStamp {
		return cairn.E(op, cairn.KindInvalid, path, fmt.Sprintf("cannot move %s to %s", old, updated))
	}
	err := m.mutate(ctx, func(b *pebble.Batch) error {
		in, err := m.writable(op, w)
		if err != nil {
			return err
		}
		cur, key, err := m.lastBlock(op, path, in, old.ID)
		if err != nil {
			return err
		}
		if updated.GenStamp >= cairn.GenStamp(m.st.nextGS) || updated.GenStamp < cur.GenStamp {
			return cairn.E(op, cairn.KindInvalid, path, fmt.Sprintf("generation stamp %d was not handed out for %s", updated.GenStamp, cur))
		}
		nb := cur
		nb.GenStamp = updated.GenStamp
		if updated.Len > nb.Len {
			if updated.Len > in.BlockSize {
				return cairn.E(op, cairn.KindInvalid, path, fmt.Sprintf("block length %d beyond %d", updated.Len, in.BlockSize))
			}
			in.Size += updated.Len - nb.Len
			nb.Len = updated.Len
		}
		if err := b.Set(key, encodeBlock(nb), nil); err != nil {
			return err
		}
		in.LeaseNs = m.clock.Now().UnixNano()
		return setInode(b, in)
	})
	m.logWrite(op, w, updated, err)
	if err == nil {
		m.pipelines.set(old.ID, nodes)
		m.log.Info("pipeline recovered", zap.String("path", path), zap.Stringer("block", updated), zap.Int("nodes", len(nodes)))
	}
	return err
}

// AdditionalNode picks a live blockd with room that is neither in the
// pipeline nor excluded, to bring a shrunken pipeline back up.
func (m *Metad) AdditionalNode(ctx context.Context, w cairn.WriterRef, blk cairn.Block, existing, excluded []cairn.Node) (cairn.Node, error) {
	const op = "metad.AdditionalNode"
	path := w.Path
	in, err := m.writable(op, w)
	if err != nil {
		return cairn.Node{}, err
	}
	if n := m.chooseTargets(1, in.BlockSize, m.locate(ctx), existing, excluded); len(n) > 0 {
		return n[0], nil
	}
	return cairn.Node{}, cairn.E(op, cairn.KindNoSpace, path, m.noNodeDetail("no other blockd for the pipeline", in.BlockSize, append(append([]cairn.Node(nil), existing...), excluded...)))
}

// noNodeDetail says why no blockd could be chosen: how many are live, how
// many of those the writer excluded or already has, and how many lack
// room for a block.
func (m *Metad) noNodeDetail(what string, blockSize int64, skipped []cairn.Node) string {
	skip := make(map[string]bool, len(skipped))
	for _, n := range skipped {
		skip[n.StorageID] = true
	}
	live, taken, full := 0, 0, 0
	for _, n := range m.nodes.report(m.clock.Now(), m.blocks) {
		switch {
		case !n.Live:
		case skip[n.StorageID]:
			live++
			taken++
		case n.Capacity > 0 && n.Remaining < blockSize:
			live++
			full++
		default:
			live++
		}
	}
	return fmt.Sprintf("%s: %d live blockd(s), %d excluded by the writer or already in its pipeline, %d without room for a %d-byte block",
		what, live, taken, full, blockSize)
}

// noBlockdErr is AddBlock's answer when no blockd could be chosen for a
// new block: KindNoSpace, saying why (noNodeDetail); but KindRetry while
// this metad has only just begun to serve (awaitingBlockds), since the
// blockds may not have reached it yet. A member cut off from the network
// marks every blockd dead meanwhile, and one elected soon after its return
// has heard from none of them yet: told "no room", its writer would fail
// (ENOSPC through the mount) where one more heartbeat would have found
// three blockds with room; told to try again, it does (client/writer.go).
func (m *Metad) noBlockdErr(op, path string, blockSize int64, excluded []cairn.Node) error {
	if why, ok := m.awaitingBlockds(m.clock.Now()); ok {
		return cairn.E(op, cairn.KindRetry, path, why)
	}
	return cairn.E(op, cairn.KindNoSpace, path, m.noNodeDetail("no blockd for a new block", blockSize, excluded))
}

// awaitingBlockds reports whether this metad began to serve writers
// (servingSince) less than --dead-after ago and a blockd may still be on
// its way: it knows none yet, or one it knows has not been heard from
// since. Past --dead-after a blockd silent since is dead by metad's own
// rule, and one that has been heard from needs no waiting for. The string
// is the writer's detail.
func (m *Metad) awaitingBlockds(now time.Time) (string, bool) {
	since := time.Unix(0, m.servingSince.Load())
	ago := now.Sub(since)
	if ago >= m.cfg.DeadAfter {
		return "", false
	}
	known, unheard := m.nodes.unheardSince(since)
	if known > 0 && unheard == 0 {
		return "", false
	}
	who, state := "this new leader", "leading"
	if m.rep == nil {
		who, state = "this metad since it started", "up"
	}
	return fmt.Sprintf("no blockd for a new block has reached %s yet; try again (%s for %v of the %v a blockd may stay silent; %d of %d known blockd(s) not heard from since)",
		who, state, ago.Round(time.Millisecond), m.cfg.DeadAfter, unheard, known), true
}

// storedBlock returns metad's record of block id and whether its file is
// being written. It reads O(log n) of the file's n block records
// (fileBlock), not all of them: a block report of a file of 8,000 blocks
// asks for each of them.
func (m *Metad) storedBlock(id cairn.BlockID) (cairn.Block, bool, bool, error) {
	v, err := m.st.get(blockKey(id))
	if isNotFound(err) {
		return cairn.Block{}, false, false, nil
	}
	if err != nil {
		return cairn.Block{}, false, false, err
	}
	ino, err := parseU64(v)
	if err != nil {
		return cairn.Block{}, false, false, err
	}
	in, err := m.st.inode(ino)
	if err != nil {
		return cairn.Block{}, false, false, err
	}
	b, ok, err := m.st.fileBlock(ino, in.Blocks, id)
	if err != nil || !ok {
		return cairn.Block{}, false, false, err
	}
	return b, in.LeaseHolder != "", true, nil
}

// chooseTargets picks up to n live blockds with room for a block, none of
// them in excluded, for a block whose replicas are on chosen (none for a
// new block), written from w (placement.go).
func (m *Metad) chooseTargets(n int, blockSize int64, w location, chosen, excluded []cairn.Node) []cairn.Node {
	return m.nodes.placement(blockSize, m.clock.Now()).choose(n, w, chosen, excluded)
}

// ackedHolders returns the storage IDs of the nodes in acked that metad
// placed in the pipeline of block id (AddBlock, Append, UpdatePipeline):
// the writer's word that they finalized the block is taken for those
// only. After a restart of metad no pipeline is known, and the writer
// waits for the blockds' reports instead.
func (m *Metad) ackedHolders(id cairn.BlockID, acked []cairn.Node) []string {
	if len(acked) == 0 {
		return nil
	}
	placed := map[string]bool{}
	for _, n := range m.pipelines.get(id) {
		placed[n.StorageID] = true
	}
	var out []string
	for _, n := range acked {
		if placed[n.StorageID] && !slices.Contains(out, n.StorageID) {
			out = append(out, n.StorageID)
		}
	}
	return out
}

// recordAcked records blk as a finalized replica on each node of nodes,
// as that node's incremental report would (Complete): the pipeline's ack
// of the block's last packet proved it. A node's record of a newer stamp
// stands; a later report of the node replaces this record as any report
// does.
func (m *Metad) recordAcked(blk cairn.Block, nodes []string) {
	if len(nodes) == 0 {
		return
	}
	bm := m.blocks
	bm.mu.Lock()
	for _, n := range nodes {
		if old, ok := bm.replica(n, blk.ID); ok && old.GenStamp > blk.GenStamp {
			continue
		}
		bm.add(n, cairn.Replica{Block: blk, State: cairn.ReplicaFinalized})
	}
	bm.mu.Unlock()
	m.repl.settled(blk.ID)
}

// logWrite logs, at debug level, a writer's call on its last block and
// its outcome.
func (m *Metad) logWrite(op string, w cairn.WriterRef, blk cairn.Block, err error) {
	if ce := m.log.Check(zap.DebugLevel, op); ce != nil {
		ce.Write(zap.String("path", w.Path), zap.Uint64("file", w.FileID), zap.String("writer", w.Client),
			zap.Stringer("block", blk), zap.Int64("len", blk.Len), zap.Error(err))
	}
}
