package metad

import (
	"fmt"
	"sync"

	"cairn"
)

// blockMap is where replicas are, as the blockds report them. Like HDFS's
// block map it lives only in memory and is rebuilt from block reports.
//
// Every reported replica is recorded, in whatever state its blockd
// reports it (finalized, being written, waiting for or under recovery),
// with its stamp and length. Only good replicas count as copies of a block
// (holders, replicaCount, read locations): finalized, at the block's stamp
// or newer, at least as long as metad records the block, and not marked
// corrupt. A replica is marked corrupt, with its reason, when its blockd
// finds it bad (BadReplicasFound) or when it disagrees with metad's record
// of a closed file's block (judge). A mark holds for the replica at the
// stamp it was made at: a later report of another stamp clears it.
//
// Nothing marked is deleted until its block again has its full count of
// good replicas (invalidateCorrupt): a bad replica may be the last copy of
// some of the block's bytes.
type blockMap struct {
	mu       sync.Mutex
	t        *blockTable                // the replicas (blocktable.go)
	corrupt  map[replicaKey]corruptMark // why a replica is bad
	toDelete map[string][]cairn.Block   // storage ID -> replicas to delete
	toVerify map[string][]cairn.Block   // storage ID -> replicas clients reported bad, to confirm
	// reports serialises the processing of full block reports: each
	// flips its node's seen bit, and a second one of the same node
	// running beside it would forget what the first recorded.
	reports sync.Mutex
}

// corruptMark is why the replica at stamp gs is bad.
type corruptMark struct {
	gs  cairn.GenStamp
	why string
	// judged: the mark is a verdict against metad's record (judge: a
	// length or stamp the record does not have), which a later verdict
	// of the same replica against a newer record may undo; otherwise the
	// replica's bytes were found bad (a reader's or the scanner's
	// checksums), and only its deletion ends the mark.
	judged bool
}

// nodeReplica is one recorded replica of a block: where, as reported, and
// why metad holds it corrupt ("" when it does not).
type nodeReplica struct {
	StorageID string
	cairn.Replica
	Corrupt string
}

// maxVerifyQueue bounds the replicas waiting to be verified on one blockd.
const maxVerifyQueue = 1024

func newBlockMap() *blockMap {
	return &blockMap{
		t:        newBlockTable(),
		corrupt:  map[replicaKey]corruptMark{},
		toDelete: map[string][]cairn.Block{},
		toVerify: map[string][]cairn.Block{},
	}
}

// replica returns node's replica of id. Caller holds bm.mu.
func (bm *blockMap) replica(node string, id cairn.BlockID) (cairn.Replica, bool) {
	return bm.t.get(id, bm.t.nodeIndex(node, false))
}

// replicasLocked lists every recorded replica of id with the reason it is
// marked corrupt. Caller holds bm.mu.
func (bm *blockMap) replicasLocked(id cairn.BlockID) []nodeReplica {
	p, ok := bm.t.find(id)
	if !ok {
		return nil
	}
	return bm.appendReplicas(nil, p)
}

// appendReplicas appends the replicas of the entry at slab position p.
// Caller holds bm.mu.
func (bm *blockMap) appendReplicas(out []nodeReplica, p uint32) []nodeReplica {
	bm.t.each(p, func(n nodeIdx, r cairn.Replica) {
		out = append(out, nodeReplica{StorageID: bm.t.nodeID(n), Replica: r, Corrupt: bm.corruptAt(n, r)})
	})
	return out
}

// corruptAt is why node n's replica r is marked corrupt, "" if it is
// not. Caller holds bm.mu.
func (bm *blockMap) corruptAt(n nodeIdx, r cairn.Replica) string {
	if len(bm.corrupt) == 0 {
		return ""
	}
	if c, ok := bm.corrupt[replicaKey{r.ID, n}]; ok && c.gs == r.GenStamp {
		return c.why
	}
	return ""
}

// hasCorrupt reports whether any replica of id has a mark (at any stamp).
// Caller holds bm.mu.
func (bm *blockMap) hasCorrupt(id cairn.BlockID) bool {
	if len(bm.corrupt) == 0 {
		return false
	}
	for _, r := range bm.replicasLocked(id) {
		if _, ok := bm.corrupt[replicaKey{id, bm.t.nodeIndex(r.StorageID, false)}]; ok {
			return true
		}
	}
	return false
}

// wholeCopy reports whether replica r holds every byte of b, metad's
// record of the block: finalized at its stamp or newer and at least as
// long, or found in rbw/ at a restart (RWR) at its stamp or newer and
// exactly its length (see judge).
func wholeCopy(r cairn.Replica, b cairn.Block) bool {
	switch r.State {
	case cairn.ReplicaFinalized:
		return r.GenStamp >= b.GenStamp && r.Len >= b.Len
	case cairn.ReplicaRWR:
		return r.GenStamp >= b.GenStamp && r.Len == b.Len && b.Len > 0
	}
	return false
}

// mark marks node's replica r corrupt, keeping an earlier reason for the
// same stamp. Caller holds bm.mu.
func (bm *blockMap) mark(node string, r cairn.Replica, why string) {
	bm.markAs(node, r, why, false)
}

// markJudged marks node's replica r corrupt on judge's verdict against
// metad's record (corruptMark.judged). Caller holds bm.mu.
func (bm *blockMap) markJudged(node string, r cairn.Replica, why string) {
	bm.markAs(node, r, why, true)
}

func (bm *blockMap) markAs(node string, r cairn.Replica, why string, judged bool) {
	k := replicaKey{r.ID, bm.t.nodeIndex(node, true)}
	if old, ok := bm.corrupt[k]; ok && old.gs == r.GenStamp {
		if old.judged && !judged {
			bm.corrupt[k] = corruptMark{gs: r.GenStamp, why: why} // found bad: stronger
		}
		return
	}
	bm.corrupt[k] = corruptMark{gs: r.GenStamp, why: why, judged: judged}
}

// unmarkJudged undoes a judged mark of node's replica r, now judged good
// against metad's record: the record has caught up with the replica (the
// earlier verdict was made against a store behind it). A mark of bad
// bytes stays. Caller holds bm.mu.
func (bm *blockMap) unmarkJudged(node string, r cairn.Replica) {
	if len(bm.corrupt) == 0 {
		return
	}
	n := bm.t.nodeIndex(node, false)
	if n == 0 {
		return
	}
	k := replicaKey{r.ID, n}
	if c, ok := bm.corrupt[k]; ok && c.judged && c.gs == r.GenStamp {
		delete(bm.corrupt, k)
	}
}

// markCorrupt marks node's replica of b.ID at b's stamp corrupt. A replica
// metad records at another stamp is left alone (the report is of a
// replica that is no longer there); one it does not record is recorded,
// finalized, as the blockd says it holds it. It reports whether a replica
// was marked.
func (bm *blockMap) markCorrupt(node string, b cairn.Block, why string) bool {
	bm.mu.Lock()
	defer bm.mu.Unlock()
	r, ok := bm.replica(node, b.ID)
	switch {
	case !ok:
		r = cairn.Replica{Block: b, State: cairn.ReplicaFinalized}
		bm.add(node, r)
	case r.GenStamp != b.GenStamp:
		return false
	}
	bm.mark(node, r, why)
	return true
}

// corruptCount is how many recorded replicas of id are marked corrupt.
func (bm *blockMap) corruptCount(id cairn.BlockID) int {
	bm.mu.Lock()
	defer bm.mu.Unlock()
	n := 0
	for _, r := range bm.replicasLocked(id) {
		if r.Corrupt != "" {
			n++
		}
	}
	return n
}

// add records node's replica r; a mark made at another stamp goes. Caller
// holds bm.mu.
func (bm *blockMap) add(node string, r cairn.Replica) {
	n := bm.t.nodeIndex(node, true)
	bm.t.put(n, r)
	if len(bm.corrupt) > 0 {
		k := replicaKey{r.ID, n}
		if c, ok := bm.corrupt[k]; ok && c.gs != r.GenStamp {
			delete(bm.corrupt, k)
		}
	}
}

// remove forgets node's replica of id. Caller holds bm.mu.
func (bm *blockMap) remove(node string, id cairn.BlockID) {
	n := bm.t.nodeIndex(node, false)
	if n == 0 {
		return
	}
	delete(bm.corrupt, replicaKey{id, n})
	bm.t.drop(id, n)
}

// replicaCount counts the good replicas of b (metad's record).
func (bm *blockMap) replicaCount(b cairn.Block) int {
	return len(bm.holders(b))
}

// holders lists the blockds holding a good replica of b.
func (bm *blockMap) holders(b cairn.Block) []string {
	bm.mu.Lock()
	defer bm.mu.Unlock()
	var out []string
	for _, r := range bm.replicasLocked(b.ID) {
		if r.Corrupt == "" && wholeCopy(r.Replica, b) {
			out = append(out, r.StorageID)
		}
	}
	return out
}

// replicasOf lists every recorded replica of id, in any state, with the
// reason it is marked corrupt: what lease recovery and fsck start from.
func (bm *blockMap) replicasOf(id cairn.BlockID) []nodeReplica {
	bm.mu.Lock()
	defer bm.mu.Unlock()
	return bm.replicasLocked(id)
}

// count is how many blocks have a recorded replica.
func (bm *blockMap) count() int {
	bm.mu.Lock()
	defer bm.mu.Unlock()
	return bm.t.used
}

// countOn is how many replicas node holds: the length of its list, no walk.
func (bm *blockMap) countOn(node string) int64 {
	bm.mu.Lock()
	defer bm.mu.Unlock()
	if n := bm.t.nodeIndex(node, false); n != 0 {
		return int64(len(bm.t.lists[n-1]))
	}
	return 0
}

// scanSlice is how many blocks a walk of the whole map looks at under one
// hold of the lock.
const scanSlice = 4096

// scan calls f, under bm.mu, with the replicas of the blocks at slab
// positions from cursor on, at most scanSlice of them, and returns where
// the next slice starts, or -1 at the end. A walk of the whole map calls
// it until -1, letting go of the lock between slices; a block added or
// removed meanwhile may be seen or missed, as in any walk of a changing
// map. f must not keep reps.
func (bm *blockMap) scan(cursor int, f func(id cairn.BlockID, reps []nodeReplica)) int {
	bm.mu.Lock()
	defer bm.mu.Unlock()
	var buf []nodeReplica
	end := min(cursor+scanSlice, len(bm.t.slab))
	for p := cursor; p < end; p++ {
		if bm.t.slab[p].id == 0 {
			continue
		}
		buf = bm.appendReplicas(buf[:0], uint32(p))
		f(bm.t.slab[p].id, buf)
	}
	if end >= len(bm.t.slab) {
		return -1
	}
	return end
}

// queueDelete has node delete its replica b. Caller holds bm.mu.
func (bm *blockMap) queueDelete(node string, b cairn.Block) {
	for _, q := range bm.toDelete[node] {
		if q.ID == b.ID && q.GenStamp >= b.GenStamp {
			return
		}
	}
	bm.toDelete[node] = append(bm.toDelete[node], b)
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
		for _, r := range bm.replicasLocked(b.ID) {
			bm.queueDelete(r.StorageID, r.Block)
			bm.remove(r.StorageID, b.ID)
		}
	}
}

// dropDeletes forgets every queued deletion and reports how many there
// were.
func (bm *blockMap) dropDeletes() int {
	bm.mu.Lock()
	defer bm.mu.Unlock()
	n := 0
	for _, d := range bm.toDelete {
		n += len(d)
	}
	clear(bm.toDelete)
	return n
}

// takeDeletes takes up to limit of node's queued deletions (all with
// limit <= 0); the rest stay queued.
func (bm *blockMap) takeDeletes(node string, limit int) []cairn.Block {
	bm.mu.Lock()
	defer bm.mu.Unlock()
	d := bm.toDelete[node]
	if limit > 0 && len(d) > limit {
		bm.toDelete[node] = d[limit:]
		return d[:limit:limit]
	}
	delete(bm.toDelete, node)
	return d
}

// requestVerify queues node's replica of b.ID for verification when metad
// records it at b's stamp; it reports whether it did.
func (bm *blockMap) requestVerify(node string, b cairn.Block) bool {
	bm.mu.Lock()
	defer bm.mu.Unlock()
	r, ok := bm.replica(node, b.ID)
	if !ok || r.GenStamp != b.GenStamp {
		return false
	}
	q := bm.toVerify[node]
	for _, v := range q {
		if v.ID == b.ID && v.GenStamp == b.GenStamp {
			return true
		}
	}
	if len(q) >= maxVerifyQueue {
		return false
	}
	bm.toVerify[node] = append(q, r.Block)
	return true
}

func (bm *blockMap) takeVerifies(node string) []cairn.Block {
	bm.mu.Lock()
	defer bm.mu.Unlock()
	v := bm.toVerify[node]
	delete(bm.toVerify, node)
	return v
}

// judgement is what metad makes of a reported replica.
type judgement int

const (
	replicaOfNoFile judgement = iota // its block belongs to no file: delete it
	replicaLive                      // a good copy of a closed file's block
	replicaAsIs                      // recorded as reported, neither counted against nor deleted
	replicaCorrupt                   // recorded and marked corrupt
)

// judge weighs the reported replica r against metad's record of its block
// (stored; known is false when the block belongs to no file; writing when
// its file is being written), as HDFS's BlockManager.checkReplicaCorrupt:
//
//   - of no file: delete it;
//   - of a file being written, in any state and at any stamp: recorded as
//     it is; the writer or lease recovery settles it;
//   - finalized at the stored stamp or newer, with the stored length: live;
//   - being written (RBW) at the stored stamp of a closed file: its
//     finalize is on its way; recorded as it is;
//   - waiting for recovery (RWR) at the stored stamp or newer with the
//     stored length, of a closed file: the whole block, left in rbw/ by an
//     append cut short before its first byte: live;
//   - an older stamp, another length, or an unfinished replica of a closed
//     file: corrupt, with the reason.
func judge(r cairn.Replica, stored cairn.Block, known, writing bool) (judgement, string) {
	switch {
	case !known:
		return replicaOfNoFile, ""
	case writing:
		return replicaAsIs, ""
	case r.GenStamp < stored.GenStamp:
		return replicaCorrupt, fmt.Sprintf("stale generation stamp: the replica is at %d, the block at %d", r.GenStamp, stored.GenStamp)
	case r.State == cairn.ReplicaRBW && r.GenStamp == stored.GenStamp:
		return replicaAsIs, ""
	case r.State == cairn.ReplicaRWR && r.GenStamp >= stored.GenStamp && r.Len == stored.Len:
		// Found in rbw/ at a restart with every byte of the block, verified,
		// at its stamp or at the new one of an append that reopened the
		// finalized replica and was cut short before it committed its
		// stamp and wrote a byte (the file was then closed as it was):
		// bytes are never changed in place, so it is the block, in the
		// other directory: a good copy.
		return replicaLive, ""
	case r.State != cairn.ReplicaFinalized:
		return replicaCorrupt, fmt.Sprintf("unfinished replica (%s) of a closed file", r.State)
	case r.Len != stored.Len:
		return replicaCorrupt, fmt.Sprintf("length mismatch: the replica has %d bytes, the block %d", r.Len, stored.Len)
	}
	return replicaLive, ""
}

// beginReport starts the processing of node's full report: every replica
// of node recorded from now on, by the report or by anything else, carries
// the report's seen bit, and sweepReport forgets those that do not.
// Caller holds bm.reports.
func (bm *blockMap) beginReport(node string) {
	bm.mu.Lock()
	defer bm.mu.Unlock()
	n := bm.t.nodeIndex(node, true)
	bm.t.parity[n-1] ^= 1
}

// sweepReport forgets node's replicas not recorded since beginReport: those
// its full report left out. It walks node's list from its end, scanSlice
// replicas under one hold of the lock; a replica taken out moves the list's
// last one, already looked at or recorded since, into its place. It
// returns how many it forgot. Caller holds bm.reports.
func (bm *blockMap) sweepReport(node string) int {
	gone := 0
	for cursor := -1; cursor != 0; {
		bm.mu.Lock()
		n := bm.t.nodeIndex(node, false)
		l := len(bm.t.lists[n-1])
		if cursor < 0 || cursor > l {
			cursor = l
		}
		stop := max(cursor-scanSlice, 0)
		for i := cursor - 1; i >= stop; i-- {
			if i >= len(bm.t.lists[n-1]) {
				continue
			}
			p := bm.t.lists[n-1][i]
			if bm.t.seen(p, n) {
				continue
			}
			id := bm.t.slab[p].id
			delete(bm.corrupt, replicaKey{id, n})
			bm.t.drop(id, n)
			gone++
		}
		cursor = stop
		bm.mu.Unlock()
	}
	return gone
}
