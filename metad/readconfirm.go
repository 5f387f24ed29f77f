package metad

import (
	"sync/atomic"
	"time"
)

// How a group's leader confirms, before a read, that it still leads
// (docs/ARCHITECTURE.md, "Metad group", reads).
//
// raft.VerifyLeader sends a heartbeat to every follower and waits for a
// majority, but it counts any heartbeat answer that arrives while it
// waits, also one to a heartbeat sent before it began. A leader whose
// process stood still (SIGSTOP, a long stall of the machine) long enough
// for the others to elect a new leader and commit changes can find, when
// it runs again, the answers to its last heartbeats waiting in its
// sockets: they confirm it, and it would answer a read from its stale
// store. So after a stall the leader confirms through the log instead
// (raft.Barrier: an entry a deposed leader cannot commit, since the
// answers to it are the followers' to entries sent after the stall),
// until it has run without a stall for two election timeouts, by when a
// deposed leader has heard of its successor and stepped down. A ticker
// notices the stall; a read that runs before the ticker does sees the gap
// itself.

// stallTick is how often the stall watch ticks.
const stallTick = 10 * time.Millisecond

// stallWatch notices the process standing still.
type stallWatch struct {
	gap          time.Duration // a tick this late is a stall
	hold         time.Duration // reads confirm through the log this long after one
	base         time.Time     // monotonic origin of the nanosecond stamps
	lastTick     atomic.Int64
	suspectUntil atomic.Int64
}

func newStallWatch(electionTimeout time.Duration) *stallWatch {
	w := &stallWatch{gap: max(electionTimeout/4, 5*stallTick), hold: 2 * electionTimeout, base: time.Now()}
	w.lastTick.Store(w.now())
	return w
}

func (w *stallWatch) now() int64 { return int64(time.Since(w.base)) }

// run ticks until stop closes.
func (w *stallWatch) run(stop <-chan struct{}) {
	t := time.NewTicker(stallTick)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
			w.tick(w.now())
		}
	}
}

func (w *stallWatch) tick(now int64) {
	if now-w.lastTick.Load() > int64(w.gap) {
		w.suspectUntil.Store(now + int64(w.hold))
	}
	w.lastTick.Store(now)
}

// stalled reports whether the process stood still lately (or just now,
// the ticker not having run since).
func (w *stallWatch) stalled(now int64) bool {
	return now-w.lastTick.Load() > int64(w.gap) || now < w.suspectUntil.Load()
}

// confirmLead confirms, before a read, that this member still leads: a
// heartbeat round, or after a stall an entry through the log.
func (rep *replica) confirmLead() error {
	if rep.stall != nil && rep.stall.stalled(rep.stall.now()) {
		rep.m.stats.readBarriers.Add(1)
		return rep.r.Barrier(0).Error()
	}
	return rep.r.VerifyLeader().Error()
}
