package metad

import (
	"sync"
	"time"

	"cairn"
)

// The replication queues, as HDFS's LowRedundancyBlocks and
// PendingReconstructionBlocks. Each round of the monitor sorts the blocks
// that need a copy by priority:
//
//	prioHighest: one live replica left (or only replicas on blockds
//	             being decommissioned): the next failure loses it
//	prioLow:     fewer live replicas than the file wants
//	prioPlaced:  the full count, but some on blockds being decommissioned,
//	             or on too few racks
//	prioBalance: a balancer move (balancer.go): a copy to a less used
//	             blockd, after which the source's replica is deleted
//
// and hands the copies out in that order. A blockd is the source of at
// most maxStreams copies at a time (HDFS's
// dfs.namenode.replication.max-streams, 2), hardLimit (4) for the highest
// priority (dfs.namenode.replication.max-streams-hard-limit): a copy
// counts from when it is scheduled until a target reports the replica
// (BlocksReceived, finalized), its block's replicas change (a deletion
// reported), or pendingTimeout passes from when it was sent, after which
// the block is scheduled again (HDFS's
// dfs.namenode.reconstruction.pending.timeout-sec). A copy stays queued
// until its source's heartbeat takes it; nothing leaves the queue but in a
// heartbeat reply. Balancer moves count apart, at most maxMoves at a time
// from one source (HDFS's dfs.datanode.balance.max.concurrent.moves): a
// running balancer takes no stream from the monitor's copies.
const (
	prioHighest = iota
	prioLow
	prioPlaced
	prioBalance
)

// Defaults of the queues' flags.
const (
	DefaultMaxStreams       = 2
	DefaultStreamsHardLimit = 4
	// DefaultMaxMoves is how many balancer moves one blockd is the
	// source of at a time, apart from its streams: HDFS's
	// dfs.datanode.balance.max.concurrent.moves as it first was.
	DefaultMaxMoves       = 5
	DefaultPendingTimeout = 5 * time.Minute
	// DefaultInvalidateLimit bounds the replicas one heartbeat reply asks
	// a blockd to delete (HDFS's dfs.block.invalidate.limit); the rest wait
	// for the next heartbeats.
	DefaultInvalidateLimit = 1000
	// maxRecoveriesPerReply bounds the block recoveries one reply hands a
	// primary; the rest go on its next heartbeats.
	maxRecoveriesPerReply = 100
)

// replQueue is the copies the monitor hands out on heartbeats, and the
// copies under way.
type replQueue struct {
	mu         sync.Mutex
	maxStreams int
	hardLimit  int
	maxMoves   int
	timeout    time.Duration
	transfers  map[string][]cairn.Command     // source storage ID -> copies not yet sent
	pending    map[cairn.BlockID]*pendingCopy // block -> its copy, sent or not
	streams    map[string]int                 // source storage ID -> its pending copies of the monitor's
	moveCount  map[string]int                 // source storage ID -> its pending balancer moves
	moved      moveTally                      // what the balancer's moves came to
}

// pendingCopy is one scheduled copy of a block.
type pendingCopy struct {
	source string
	sent   bool
	due    time.Time // sent: when it times out
	move   *move     // a balancer move; nil for a copy of the monitor's (or a move done)
	// balance: a balancer move, counted in moveCount, not streams.
	balance bool
}

// move is a balancer move's target and the bytes it moves.
type move struct {
	target string
	size   int64
}

// moveTally counts the balancer's moves since metad started: those done
// (the source's replica deleted), and those that came to nothing (timed
// out, dropped, or the source kept because the rules forbade its
// deletion).
type moveTally struct {
	done, failed, bytes int64
}

func newReplQueue(maxStreams, hardLimit, maxMoves int, timeout time.Duration) *replQueue {
	if maxStreams <= 0 {
		maxStreams = DefaultMaxStreams
	}
	if maxMoves <= 0 {
		maxMoves = DefaultMaxMoves
	}
	if hardLimit < maxStreams {
		hardLimit = max(maxStreams, DefaultStreamsHardLimit)
	}
	if timeout <= 0 {
		timeout = DefaultPendingTimeout
	}
	return &replQueue{maxStreams: maxStreams, hardLimit: hardLimit, maxMoves: maxMoves, timeout: timeout,
		transfers: map[string][]cairn.Command{}, pending: map[cairn.BlockID]*pendingCopy{}, streams: map[string]int{}, moveCount: map[string]int{}}
}

// busy reports whether block id has a copy under way.
func (q *replQueue) busy(id cairn.BlockID) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	_, ok := q.pending[id]
	return ok
}

// room reports whether node may be the source of one more copy of a block
// of priority prio.
func (q *replQueue) room(node string, prio int) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	switch prio {
	case prioBalance:
		return q.moveCount[node] < q.maxMoves
	case prioHighest:
		return q.streams[node] < q.hardLimit
	}
	return q.streams[node] < q.maxStreams
}

// add queues c, a copy of one block from source.
func (q *replQueue) add(source string, c cairn.Command) {
	q.mu.Lock()
	defer q.mu.Unlock()
	id := c.Blocks[0].ID
	if _, ok := q.pending[id]; ok {
		return
	}
	q.transfers[source] = append(q.transfers[source], c)
	q.pending[id] = &pendingCopy{source: source}
	q.streams[source]++
}

// take hands out node's queued copies, each once; from now each has the
// pending timeout to be reported done.
func (q *replQueue) take(node string, now time.Time) []cairn.Command {
	q.mu.Lock()
	defer q.mu.Unlock()
	c := q.transfers[node]
	delete(q.transfers, node)
	for _, cmd := range c {
		if p := q.pending[cmd.Blocks[0].ID]; p != nil {
			p.sent, p.due = true, now.Add(q.timeout)
		}
	}
	return c
}

// settled forgets block id's copy: a target reported it, or the block's
// replicas changed so the next round looks at it afresh.
func (q *replQueue) settled(id cairn.BlockID) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.dropLocked(id)
}

// dropLocked forgets block id's copy, queued or sent; a move forgotten
// before it finished counts as failed. Caller holds q.mu.
func (q *replQueue) dropLocked(id cairn.BlockID) {
	p, ok := q.pending[id]
	if !ok {
		return
	}
	delete(q.pending, id)
	if p.move != nil {
		q.moved.failed++
	}
	count := q.streams
	if p.balance {
		count = q.moveCount
	}
	if count[p.source]--; count[p.source] <= 0 {
		delete(count, p.source)
	}
	if p.sent {
		return
	}
	cmds := q.transfers[p.source]
	for i, c := range cmds {
		if c.Blocks[0].ID == id {
			cmds = append(cmds[:i:i], cmds[i+1:]...)
			break
		}
	}
	if len(cmds) == 0 {
		delete(q.transfers, p.source)
	} else {
		q.transfers[p.source] = cmds
	}
}

// expire forgets the copies sent more than the pending timeout ago and not
// reported done, so the round schedules their blocks again; it returns
// them.
func (q *replQueue) expire(now time.Time) []cairn.BlockID {
	q.mu.Lock()
	defer q.mu.Unlock()
	var out []cairn.BlockID
	for id, p := range q.pending {
		if p.sent && !now.Before(p.due) {
			out = append(out, id)
		}
	}
	for _, id := range out {
		q.dropLocked(id)
	}
	return out
}

// forget drops every copy node is the source of (it is dead, or
// registered again and so lost what it was doing).
func (q *replQueue) forget(node string) { q.forgetAll(map[string]bool{node: true}) }

// forgetAll drops every copy one of nodes is the source of, in one pass.
func (q *replQueue) forgetAll(nodes map[string]bool) {
	if len(nodes) == 0 {
		return
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	var ids []cairn.BlockID
	for id, p := range q.pending {
		if nodes[p.source] {
			ids = append(ids, id)
		}
	}
	for _, id := range ids {
		q.dropLocked(id)
	}
}

// addMove queues c, a balancer move of one block from source to target,
// of size bytes; false if the block has a copy under way already.
func (q *replQueue) addMove(source string, c cairn.Command, target string, size int64) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	id := c.Blocks[0].ID
	if _, ok := q.pending[id]; ok {
		return false
	}
	q.transfers[source] = append(q.transfers[source], c)
	q.pending[id] = &pendingCopy{source: source, move: &move{target: target, size: size}, balance: true}
	q.moveCount[source]++
	return true
}

// moveTo returns the source of the balancer move of block id to target,
// if one is under way.
func (q *replQueue) moveTo(id cairn.BlockID, target string) (string, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	p, ok := q.pending[id]
	if !ok || p.move == nil || p.move.target != target {
		return "", false
	}
	return p.source, true
}

// moving reports whether block id has a balancer move under way.
func (q *replQueue) moving(id cairn.BlockID) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	p, ok := q.pending[id]
	return ok && p.move != nil
}

// moveFinished forgets block id's move: done when the source's replica
// was deleted, failed when it was kept.
func (q *replQueue) moveFinished(id cairn.BlockID, done bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	p, ok := q.pending[id]
	if !ok || p.move == nil {
		return
	}
	if done {
		q.moved.done++
		q.moved.bytes += p.move.size
		p.move = nil // not a failure
	}
	q.dropLocked(id)
}

// dropMoves forgets the balancer moves not yet handed to their source
// (the balancer stopped); it returns how many. Moves already sent go on.
func (q *replQueue) dropMoves() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	var ids []cairn.BlockID
	for id, p := range q.pending {
		if p.move != nil && !p.sent {
			ids = append(ids, id)
		}
	}
	for _, id := range ids {
		q.dropLocked(id)
	}
	return len(ids)
}

// moves reports the balancer moves under way, their bytes, and the tally.
func (q *replQueue) moves() (pending int, bytes int64, t moveTally) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for _, p := range q.pending {
		if p.move != nil {
			pending++
			bytes += p.move.size
		}
	}
	return pending, bytes, q.moved
}

// moveDeltas is how the balancer moves under way will change each
// blockd's used bytes: minus on their sources, plus on their targets.
func (q *replQueue) moveDeltas() map[string]int64 {
	q.mu.Lock()
	defer q.mu.Unlock()
	out := map[string]int64{}
	for _, p := range q.pending {
		if p.move != nil {
			out[p.source] -= p.move.size
			out[p.move.target] += p.move.size
		}
	}
	return out
}
