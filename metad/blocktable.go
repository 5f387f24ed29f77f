package metad

import (
	"cairn"
)

// blockTable is the compact store under blockMap: every recorded replica,
// indexed by block (an open-addressing hash table of slab positions) and
// by blockd (one list of slab positions per node, with each replica's
// position in it, so a replica leaves its list in O(1)). Nothing in it
// locks: blockMap's mutex guards it.
//
// A block is one blockEntry of 56 bytes in the slab, with room for three
// replicas. A replica is a node index (4 bytes, not the storage ID
// string), its position in the node's list (4) and one byte of state; its
// stamp and length are the entry's, shared by every replica of the block
// that agrees with them, which is nearly all. A replica that disagrees,
// or is in a state the byte cannot hold, has its own record in own; a
// fourth and later replica sits in extra. With the index (4 bytes a slot,
// at most 3/4 full) and the node lists (4 bytes a replica), a block of
// three replicas takes 80 to 95 bytes (docs/PERFORMANCE.md).
type blockTable struct {
	slab  []blockEntry
	free  []uint32 // unused slab positions
	index []uint32 // slab position + 1, 0 = empty; len is a power of two
	used  int      // blocks in the table

	nodeIDs []string           // node index - 1 -> storage ID
	nodeOf  map[string]nodeIdx // storage ID -> node index
	lists   [][]uint32         // node index - 1 -> slab positions of its replicas
	parity  []uint8            // node index - 1 -> the seen bit of its current full report

	own   map[replicaKey]cairn.Replica  // replicas that disagree with their entry
	extra map[cairn.BlockID][]extraRepl // replicas past the entry's inline slots
}

// nodeIdx is a blockd's index in the table, from 1; 0 is no node.
type nodeIdx uint32

const inlineReplicas = 3

// blockEntry is one block's replicas. id 0 marks a free slab position.
type blockEntry struct {
	id    cairn.BlockID
	gs    cairn.GenStamp
	len   int64
	node  [inlineReplicas]nodeIdx
	pos   [inlineReplicas]uint32
	state [inlineReplicas]uint8
}

// The state byte of a replica: its cairn.ReplicaState in the low bits,
// whether it has its own record, and the seen bit of full reports.
const (
	stateMask = 0x0f
	stateOwn  = 0x10
	stateSeen = 0x20
)

type replicaKey struct {
	id   cairn.BlockID
	node nodeIdx
}

type extraRepl struct {
	node  nodeIdx
	pos   uint32
	state uint8
	r     cairn.Replica
}

func newBlockTable() *blockTable {
	return &blockTable{
		index:  make([]uint32, 1024),
		nodeOf: map[string]nodeIdx{},
		own:    map[replicaKey]cairn.Replica{},
		extra:  map[cairn.BlockID][]extraRepl{},
	}
}

// nodeIndex returns storage ID's index, adding it when add is set (else 0
// for a node never seen).
func (t *blockTable) nodeIndex(id string, add bool) nodeIdx {
	if n, ok := t.nodeOf[id]; ok || !add {
		return n
	}
	t.nodeIDs = append(t.nodeIDs, id)
	t.lists = append(t.lists, nil)
	t.parity = append(t.parity, 0)
	n := nodeIdx(len(t.nodeIDs))
	t.nodeOf[id] = n
	return n
}

func (t *blockTable) nodeID(n nodeIdx) string { return t.nodeIDs[n-1] }

func hashBlock(id cairn.BlockID) uint64 { return uint64(id) * 0x9e3779b97f4a7c15 }

// find returns the slab position of id's entry.
func (t *blockTable) find(id cairn.BlockID) (uint32, bool) {
	mask := uint64(len(t.index) - 1)
	for i := hashBlock(id) >> 32 & mask; ; i = (i + 1) & mask {
		s := t.index[i]
		if s == 0 {
			return 0, false
		}
		if t.slab[s-1].id == id {
			return s - 1, true
		}
	}
}

// insert puts slab position p (of a block not in the index) in the index.
func (t *blockTable) insert(p uint32) {
	if (t.used+1)*4 > len(t.index)*3 {
		old := t.index
		t.index = make([]uint32, 2*len(old))
		for _, s := range old {
			if s != 0 {
				t.place(s)
			}
		}
	}
	t.place(p + 1)
	t.used++
}

func (t *blockTable) place(s uint32) {
	mask := uint64(len(t.index) - 1)
	i := hashBlock(t.slab[s-1].id) >> 32 & mask
	for t.index[i] != 0 {
		i = (i + 1) & mask
	}
	t.index[i] = s
}

// unindex takes id out of the index, shifting back the entries after it
// (linear probing needs no tombstones).
func (t *blockTable) unindex(id cairn.BlockID) {
	mask := uint64(len(t.index) - 1)
	i := hashBlock(id) >> 32 & mask
	for t.slab[t.index[i]-1].id != id {
		i = (i + 1) & mask
	}
	for j := (i + 1) & mask; t.index[j] != 0; j = (j + 1) & mask {
		home := hashBlock(t.slab[t.index[j]-1].id) >> 32 & mask
		// j's entry may move to the hole at i unless its home lies in (i, j].
		if (j > i && (home <= i || home > j)) || (j < i && home <= i && home > j) {
			t.index[i] = t.index[j]
			i = j
		}
	}
	t.index[i] = 0
	t.used--
}

// entry returns id's slab position, making an entry when add is set.
func (t *blockTable) entry(id cairn.BlockID, add bool) (uint32, bool) {
	if p, ok := t.find(id); ok || !add {
		return p, ok
	}
	var p uint32
	if n := len(t.free); n > 0 {
		p = t.free[n-1]
		t.free = t.free[:n-1]
	} else {
		t.slab = append(t.slab, blockEntry{})
		p = uint32(len(t.slab) - 1)
	}
	t.slab[p] = blockEntry{id: id}
	t.insert(p)
	return p, true
}

// replicaAt is the replica in slot i of entry e.
func (t *blockTable) replicaAt(e *blockEntry, i int) cairn.Replica {
	if e.state[i]&stateOwn != 0 {
		return t.own[replicaKey{e.id, e.node[i]}]
	}
	return cairn.Replica{Block: cairn.Block{ID: e.id, GenStamp: e.gs, Len: e.len}, State: cairn.ReplicaState(e.state[i] & stateMask)}
}

// get returns node n's replica of id.
func (t *blockTable) get(id cairn.BlockID, n nodeIdx) (cairn.Replica, bool) {
	p, ok := t.find(id)
	if !ok || n == 0 {
		return cairn.Replica{}, false
	}
	e := &t.slab[p]
	for i, x := range e.node {
		if x == n {
			return t.replicaAt(e, i), true
		}
	}
	for _, x := range t.extra[id] {
		if x.node == n {
			return x.r, true
		}
	}
	return cairn.Replica{}, false
}

// each calls f with every replica of the entry at slab position p.
func (t *blockTable) each(p uint32, f func(n nodeIdx, r cairn.Replica)) {
	e := &t.slab[p]
	for i, x := range e.node {
		if x != 0 {
			f(x, t.replicaAt(e, i))
		}
	}
	if len(t.extra) > 0 {
		for _, x := range t.extra[e.id] {
			f(x.node, x.r)
		}
	}
}

// replicasIn counts the replicas of the entry at slab position p.
func (t *blockTable) replicasIn(p uint32) int {
	e := &t.slab[p]
	k := 0
	for _, x := range e.node {
		if x != 0 {
			k++
		}
	}
	if len(t.extra) > 0 {
		k += len(t.extra[e.id])
	}
	return k
}

// put records node n's replica r, with the seen bit of n's current full
// report.
func (t *blockTable) put(n nodeIdx, r cairn.Replica) {
	p, _ := t.entry(r.ID, true)
	e := &t.slab[p]
	seen := t.parity[n-1] * stateSeen
	slot, empty := -1, -1
	for i, x := range e.node {
		switch {
		case x == n:
			slot = i
		case x == 0 && empty < 0:
			empty = i
		}
	}
	if slot < 0 {
		for i := range t.extra[r.ID] {
			if x := &t.extra[r.ID][i]; x.node == n {
				x.r, x.state = r, seen
				return
			}
		}
		if empty < 0 {
			t.extra[r.ID] = append(t.extra[r.ID], extraRepl{node: n, pos: t.link(n, p), state: seen, r: r})
			return
		}
		slot = empty
		e.node[slot], e.pos[slot] = n, t.link(n, p)
	}
	k := replicaKey{r.ID, n}
	if e.state[slot]&stateOwn != 0 {
		delete(t.own, k)
	}
	// The entry takes the replica's stamp and length when no other
	// replica shares the entry's.
	if e.gs != r.GenStamp || e.len != r.Len {
		shared := false
		for i, x := range e.node {
			if x != 0 && i != slot && e.state[i]&stateOwn == 0 {
				shared = true
			}
		}
		if !shared {
			e.gs, e.len = r.GenStamp, r.Len
		}
	}
	if e.gs == r.GenStamp && e.len == r.Len && r.State >= 0 && r.State <= stateMask {
		e.state[slot] = uint8(r.State) | seen
		return
	}
	t.own[k] = r
	e.state[slot] = stateOwn | seen
}

// link appends slab position p to node n's list and returns its position.
func (t *blockTable) link(n nodeIdx, p uint32) uint32 {
	l := t.lists[n-1]
	t.lists[n-1] = append(l, p)
	return uint32(len(l))
}

// unlink takes the replica at list position i out of node n's list,
// moving the list's last replica into its place.
func (t *blockTable) unlink(n nodeIdx, i uint32) {
	l := t.lists[n-1]
	last := uint32(len(l) - 1)
	if i != last {
		q := l[last]
		l[i] = q
		t.setPos(q, n, i)
	}
	t.lists[n-1] = l[:last]
}

// setPos records that node n's replica in the entry at slab position q is
// at position i of n's list.
func (t *blockTable) setPos(q uint32, n nodeIdx, i uint32) {
	e := &t.slab[q]
	for s, x := range e.node {
		if x == n {
			e.pos[s] = i
			return
		}
	}
	for s := range t.extra[e.id] {
		if x := &t.extra[e.id][s]; x.node == n {
			x.pos = i
			return
		}
	}
}

// drop forgets node n's replica of id and reports whether there was one.
func (t *blockTable) drop(id cairn.BlockID, n nodeIdx) bool {
	p, ok := t.find(id)
	if !ok || n == 0 {
		return false
	}
	e := &t.slab[p]
	found := false
	for i, x := range e.node {
		if x == n {
			t.unlink(n, e.pos[i])
			if e.state[i]&stateOwn != 0 {
				delete(t.own, replicaKey{id, n})
			}
			e.node[i], e.pos[i], e.state[i] = 0, 0, 0
			found = true
		}
	}
	if xs := t.extra[id]; !found && len(xs) > 0 {
		for i, x := range xs {
			if x.node == n {
				t.unlink(n, x.pos)
				xs = append(xs[:i], xs[i+1:]...)
				found = true
				break
			}
		}
		if len(xs) == 0 {
			delete(t.extra, id)
		} else {
			t.extra[id] = xs
		}
	}
	if found && t.replicasIn(p) == 0 {
		t.release(p)
	}
	return found
}

// release frees the empty entry at slab position p.
func (t *blockTable) release(p uint32) {
	t.unindex(t.slab[p].id)
	t.slab[p] = blockEntry{}
	t.free = append(t.free, p)
}

// seen reports whether node n's replica at slab position p carries the
// seen bit of n's current full report.
func (t *blockTable) seen(p uint32, n nodeIdx) bool {
	e := &t.slab[p]
	want := t.parity[n-1] * stateSeen
	for i, x := range e.node {
		if x == n {
			return e.state[i]&stateSeen == want
		}
	}
	for _, x := range t.extra[e.id] {
		if x.node == n {
			return x.state&stateSeen == want
		}
	}
	return true
}
