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
	replicas map[cairn.BlockID]map[string]cairn.Replica // block -> storage ID -> replica as last reported
	corrupt  map[cairn.BlockID]map[string]corruptMark   // block -> storage ID -> why it is bad
	toDelete map[string][]cairn.Block                   // storage ID -> replicas to delete
	toVerify map[string][]cairn.Block                   // storage ID -> replicas clients reported bad, to confirm
}

// corruptMark is why the replica at stamp gs is bad.
type corruptMark struct {
	gs  cairn.GenStamp
	why string
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
		replicas: map[cairn.BlockID]map[string]cairn.Replica{},
		corrupt:  map[cairn.BlockID]map[string]corruptMark{},
		toDelete: map[string][]cairn.Block{},
		toVerify: map[string][]cairn.Block{},
	}
}

// corruptWhy is why node's replica r is marked corrupt, "" if it is not.
// Caller holds bm.mu.
func (bm *blockMap) corruptWhy(node string, r cairn.Replica) string {
	if c, ok := bm.corrupt[r.ID][node]; ok && c.gs == r.GenStamp {
		return c.why
	}
	return ""
}

// good reports whether node's replica r counts as a copy of b, metad's
// record of the block. Caller holds bm.mu.
func (bm *blockMap) good(node string, r cairn.Replica, b cairn.Block) bool {
	return wholeCopy(r, b) && bm.corruptWhy(node, r) == ""
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
	c := bm.corrupt[r.ID]
	if c == nil {
		c = map[string]corruptMark{}
		bm.corrupt[r.ID] = c
	}
	if old, ok := c[node]; ok && old.gs == r.GenStamp {
		return
	}
	c[node] = corruptMark{gs: r.GenStamp, why: why}
}

// markCorrupt marks node's replica of b.ID at b's stamp corrupt. A replica
// metad records at another stamp is left alone (the report is of a
// replica that is no longer there); one it does not record is recorded,
// finalized, as the blockd says it holds it. It reports whether a replica
// was marked.
func (bm *blockMap) markCorrupt(node string, b cairn.Block, why string) bool {
	bm.mu.Lock()
	defer bm.mu.Unlock()
	r, ok := bm.replicas[b.ID][node]
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
	for node, r := range bm.replicas[id] {
		if bm.corruptWhy(node, r) != "" {
			n++
		}
	}
	return n
}

// add records node's replica r; a mark made at another stamp goes. Caller
// holds bm.mu.
func (bm *blockMap) add(node string, r cairn.Replica) {
	reps := bm.replicas[r.ID]
	if reps == nil {
		reps = map[string]cairn.Replica{}
		bm.replicas[r.ID] = reps
	}
	reps[node] = r
	if c, ok := bm.corrupt[r.ID][node]; ok && c.gs != r.GenStamp {
		bm.unmark(node, r.ID)
	}
}

func (bm *blockMap) unmark(node string, id cairn.BlockID) {
	if c := bm.corrupt[id]; c != nil {
		delete(c, node)
		if len(c) == 0 {
			delete(bm.corrupt, id)
		}
	}
}

// remove forgets node's replica of id. Caller holds bm.mu.
func (bm *blockMap) remove(node string, id cairn.BlockID) {
	bm.unmark(node, id)
	if r := bm.replicas[id]; r != nil {
		delete(r, node)
		if len(r) == 0 {
			delete(bm.replicas, id)
		}
	}
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
	for node, r := range bm.replicas[b.ID] {
		if bm.good(node, r, b) {
			out = append(out, node)
		}
	}
	return out
}

// replicasOf lists every recorded replica of id, in any state, with the
// reason it is marked corrupt: what lease recovery and fsck start from.
func (bm *blockMap) replicasOf(id cairn.BlockID) []nodeReplica {
	bm.mu.Lock()
	defer bm.mu.Unlock()
	out := make([]nodeReplica, 0, len(bm.replicas[id]))
	for node, r := range bm.replicas[id] {
		out = append(out, nodeReplica{StorageID: node, Replica: r, Corrupt: bm.corruptWhy(node, r)})
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
		for node, r := range bm.replicas[b.ID] {
			bm.queueDelete(node, r.Block)
		}
		delete(bm.replicas, b.ID)
		delete(bm.corrupt, b.ID)
	}
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
	r, ok := bm.replicas[b.ID][node]
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
