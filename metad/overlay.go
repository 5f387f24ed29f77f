package metad

import (
	"github.com/cockroachdb/pebble/v2"
	"github.com/petermattis/goid"
)

// The leader's overlay of entries in flight (design (c), docs/
// ARCHITECTURE.md, "Metad group"). On a group's leader a mutation builds
// its batch under the store's lock, proposes it, and waits for the commit
// outside the lock, so the next mutation can be built and proposed while
// the first is being replicated, and Raft appends what queued together as
// one synced write (group commit). The store itself only ever holds
// committed entries (the state machine applies them, raftfsm.go), so the
// next mutation must read it through the entries proposed and not yet
// applied: the overlay, an indexed Pebble batch holding their changes,
// read merged with the store.
//
// Only the mutation holding the lock reads through the overlay: calls
// that only read, and the leader's background work, read the store, which
// holds what is committed and nothing else (a read never sees a change
// that may still be lost). The goroutine running the mutation's function
// is recorded (overlayOwner), and the store's read paths (src) pick the
// overlay for it alone; other goroutines pay one atomic load.
//
// Entries leave the overlay's list once applied; the overlay itself is
// emptied when none is left, or rebuilt from those left when it has grown
// (the changes of entries already applied shadow the store's equal
// values, so keeping them a while is harmless). When an entry's
// replication fails, leadership was lost: the entries after it may have
// been built on it, so the pipeline is closed (broken) until the member
// leads again and becomeLeader resets it from the committed store.

// overlayRebuild is the size of the overlay's changes above which it is
// rebuilt from the entries still in flight.
const overlayRebuild = 4 << 20

// inflight is one proposed entry's batch, in the overlay until applied;
// gen is the pipeline's generation it was proposed in.
type inflight struct {
	b   *pebble.Batch
	gen uint64
}

// src is what the store's reads go through: the overlay for the mutation
// holding the lock on a group's leader, the store otherwise.
func (s *store) src() pebble.Reader {
	if id := s.overlayOwner.Load(); id != 0 && id == goid.Get() {
		return s.overlay
	}
	return s.db
}

// readThroughOverlay makes this goroutine, which holds mu and runs a
// mutation's function, read through the overlay until the returned func
// is called. It does nothing when no entry is in flight.
func (s *store) readThroughOverlay() func() {
	if s.overlay == nil {
		return func() {}
	}
	s.overlayOwner.Store(goid.Get())
	return func() { s.overlayOwner.Store(0) }
}

// pushInflight adds b, just proposed, to the overlay. Caller holds mu;
// b stays open until popInflight.
func (s *store) pushInflight(b *pebble.Batch) (*inflight, error) {
	if s.overlay == nil {
		s.overlay = s.db.NewIndexedBatch()
	}
	if err := s.overlay.Apply(b, nil); err != nil {
		return nil, err
	}
	e := &inflight{b: b, gen: s.pipelineGen}
	s.inflight = append(s.inflight, e)
	return e, nil
}

// popInflight takes e, applied to the store or failed (failed: the
// pipeline breaks), out of the list, and empties or rebuilds the overlay
// when it may. An entry of an earlier generation (proposed before a
// reset) touches nothing but its batch. Caller holds mu.
func (s *store) popInflight(e *inflight, failed bool) {
	_ = e.b.Close()
	if e.gen != s.pipelineGen {
		return
	}
	if failed {
		s.pipelineBroken = true
	}
	// after: where the entries proposed after e begin in the list. Those
	// before e are applied too (the state machine applies in log order,
	// the list's order), though their callers have not taken them out
	// yet: a rebuilt overlay leaves them out, or their older changes would
	// hide e's in the store.
	after := 0
	for i, x := range s.inflight {
		if x == e {
			s.inflight = append(s.inflight[:i], s.inflight[i+1:]...)
			after = i
			break
		}
	}
	switch {
	case s.overlay == nil:
	case len(s.inflight) == 0:
		_ = s.overlay.Close()
		s.overlay = nil
	case len(s.overlay.Repr()) > overlayRebuild && !failed:
		o := s.db.NewIndexedBatch()
		for _, x := range s.inflight[after:] {
			if err := o.Apply(x.b, nil); err != nil {
				// Keep the old overlay: it holds these changes too.
				_ = o.Close()
				return
			}
		}
		_ = s.overlay.Close()
		s.overlay = o
	}
}

// resetPipeline empties the overlay and opens a new pipeline in term,
// from the store with every entry up to base applied: on a member that
// has just become leader, or whose pipeline broke while it stayed leader,
// after a barrier (every entry proposed before it is applied or failed;
// their callers are answered). Caller holds mu.
func (s *store) resetPipeline(term, base uint64) {
	s.dropPipeline()
	s.pipelineBroken = false
	s.pipelineTerm = term
	s.pipelineBase = base
}

// dropPipeline forgets the entries in flight and closes the pipeline
// until the next reset. Caller holds mu.
func (s *store) dropPipeline() {
	if s.overlay != nil {
		_ = s.overlay.Close()
		s.overlay = nil
	}
	// Batches still listed belong to callers who are being answered with
	// an error; they close them (popInflight, an older generation).
	s.inflight = nil
	s.pipelineBroken = true
	s.pipelineGen++
	s.pipelineSeq = 0
}

// nextPiped wraps entry data as the next entry of the pipeline
// (raftadmit.go). Caller holds mu.
func (s *store) nextPiped(data []byte) []byte {
	s.pipelineSeq++
	return encodePiped(pipeHeader{term: s.pipelineTerm, gen: s.pipelineGen, base: s.pipelineBase, seq: s.pipelineSeq}, data)
}
