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
// heartbeat reply.
const (
	prioHighest = iota
	prioLow
	prioPlaced
)

// Defaults of the queues' flags.
const (
	DefaultMaxStreams       = 2
	DefaultStreamsHardLimit = 4
	DefaultPendingTimeout   = 5 * time.Minute
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
	timeout    time.Duration
	transfers  map[string][]cairn.Command     // source storage ID -> copies not yet sent
	pending    map[cairn.BlockID]*pendingCopy // block -> its copy, sent or not
	streams    map[string]int                 // source storage ID -> its pending copies
}

// pendingCopy is one scheduled copy of a block.
type pendingCopy struct {
	source string
	sent   bool
	due    time.Time // sent: when it times out
}

func newReplQueue(maxStreams, hardLimit int, timeout time.Duration) *replQueue {
	if maxStreams <= 0 {
		maxStreams = DefaultMaxStreams
	}
	if hardLimit < maxStreams {
		hardLimit = max(maxStreams, DefaultStreamsHardLimit)
	}
	if timeout <= 0 {
		timeout = DefaultPendingTimeout
	}
	return &replQueue{maxStreams: maxStreams, hardLimit: hardLimit, timeout: timeout,
		transfers: map[string][]cairn.Command{}, pending: map[cairn.BlockID]*pendingCopy{}, streams: map[string]int{}}
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
	limit := q.maxStreams
	if prio == prioHighest {
		limit = q.hardLimit
	}
	return q.streams[node] < limit
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

// dropLocked forgets block id's copy, queued or sent. Caller holds q.mu.
func (q *replQueue) dropLocked(id cairn.BlockID) {
	p, ok := q.pending[id]
	if !ok {
		return
	}
	delete(q.pending, id)
	if q.streams[p.source]--; q.streams[p.source] <= 0 {
		delete(q.streams, p.source)
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
func (q *replQueue) forget(node string) {
	q.mu.Lock()
	defer q.mu.Unlock()
	var ids []cairn.BlockID
	for id, p := range q.pending {
		if p.source == node {
			ids = append(ids, id)
		}
	}
	for _, id := range ids {
		q.dropLocked(id)
	}
}
