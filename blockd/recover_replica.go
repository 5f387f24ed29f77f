package blockd

import (
	"fmt"
	"os"

	"go.uber.org/zap"

	"cairn"
)

// InitRecovery claims the replica of b.ID for the block recovery rid, as
// HDFS's FsDatasetImpl.initReplicaRecovery: any stream writing it is
// stopped, a replica being written is cut to its verified length, and it
// becomes under recovery (RUR) — no writer may touch it until
// UpdateRecovery finalizes it. It returns the replica as it was: its state
// before any recovery claimed it, its stamp and its (verified) length.
//
// Refused: no replica (KindNotExist); a replica older than b.GenStamp, the
// stamp metad recorded when the recovery began, or not older than rid
// (KindInvalid); one claimed by a recovery not older than rid (KindBusy).
// A replica under an older recovery is taken over by this one.
func (s *Store) InitRecovery(b cairn.Block, rid cairn.GenStamp) (cairn.Replica, error) {
	const op = "blockd.InitRecovery"
	stamps := func(gs cairn.GenStamp) error {
		if gs < b.GenStamp {
			return cairn.E(op, cairn.KindInvalid, b.String(), fmt.Sprintf("replica is stale (generation stamp %d)", gs))
		}
		if gs >= rid {
			return cairn.E(op, cairn.KindInvalid, b.String(), fmt.Sprintf("replica's generation stamp %d is not older than recovery %d", gs, rid))
		}
		return nil
	}
	s.mu.Lock()
	w := s.rbw[b.ID]
	if w == nil {
		// A finalized replica is claimed where it is: its files stay in
		// finalized/, and a restart finds it finalized again.
		r, ok := s.replicas[b.ID]
		if !ok {
			s.mu.Unlock()
			return cairn.Replica{}, cairn.E(op, cairn.KindNotExist, b.String(), "no replica here")
		}
		have := cairn.Block{ID: b.ID, GenStamp: r.gs, Len: r.len}
		if err := stamps(r.gs); err != nil {
			s.mu.Unlock()
			return cairn.Replica{}, err
		}
		w = &rbwReplica{s: s, b: have, state: cairn.ReplicaRUR, prior: cairn.ReplicaFinalized, rid: rid, inFinalized: true}
		delete(s.replicas, b.ID)
		s.used -= r.disk()
		s.rbw[b.ID] = w
		s.mu.Unlock()
		s.log.Info("replica claimed for recovery", zap.Stringer("block", have), zap.Stringer("state", cairn.ReplicaFinalized), zap.Uint64("recovery_id", uint64(rid)))
		return cairn.Replica{Block: have, State: cairn.ReplicaFinalized}, nil
	}
	s.mu.Unlock()

	w.mu.Lock()
	defer w.mu.Unlock()
	if w.done {
		return cairn.Replica{}, cairn.E(op, cairn.KindNotExist, b.String(), "replica was finalized or deleted meanwhile; ask again")
	}
	if err := stamps(w.b.GenStamp); err != nil {
		return cairn.Replica{}, err
	}
	switch w.state {
	case cairn.ReplicaRUR:
		if w.rid >= rid {
			return cairn.Replica{}, cairn.E(op, cairn.KindBusy, b.String(), fmt.Sprintf("recovery %d already holds the replica", w.rid))
		}
		s.log.Info("a newer recovery takes over a replica", zap.Stringer("block", w.b), zap.Uint64("old_recovery_id", uint64(w.rid)), zap.Uint64("recovery_id", uint64(rid)))
		w.rid = rid
		return cairn.Replica{Block: w.b, State: w.prior}, nil
	case cairn.ReplicaRBW:
		if w.active {
			s.log.Info("block recovery stops the replica's writer", zap.Stringer("block", w.b), zap.Uint64("recovery_id", uint64(rid)))
		}
		w.stopWriter()
		n, chunk, err := cutToVerified(s.fs, w.dataPath(), w.metaPath(), w.b.ID)
		if err != nil {
			return cairn.Replica{}, cairn.E(op, cairn.KindIO, b.String(), fmt.Sprintf("cut to the verified length: %v", err))
		}
		w.b.Len, w.chunk = n, chunk
	}
	w.prior, w.state, w.rid = w.state, cairn.ReplicaRUR, rid
	s.log.Info("replica claimed for recovery", zap.Stringer("block", w.b), zap.Stringer("state", w.prior), zap.Uint64("recovery_id", uint64(rid)))
	return cairn.Replica{Block: w.b, State: w.prior}, nil
}

// UpdateRecovery ends the recovery rid on the replica of b.ID, as HDFS's
// updateReplicaUnderRecovery: it is cut to newLen bytes (never grown; the
// last partial chunk's checksum recomputed from verified bytes only),
// moved to stamp rid and finalized, crash-atomically (restamp, then
// moveToFinalized). It returns the finalized block.
func (s *Store) UpdateRecovery(b cairn.Block, rid cairn.GenStamp, newLen int64) (cairn.Block, error) {
	const op = "blockd.UpdateRecovery"
	s.mu.Lock()
	w := s.rbw[b.ID]
	s.mu.Unlock()
	if w == nil {
		return cairn.Block{}, cairn.E(op, cairn.KindNotExist, b.String(), "no replica under recovery here")
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	switch {
	case w.done:
		return cairn.Block{}, cairn.E(op, cairn.KindNotExist, b.String(), "replica was deleted")
	case w.state != cairn.ReplicaRUR:
		return cairn.Block{}, cairn.E(op, cairn.KindInvalid, b.String(), fmt.Sprintf("replica is %s, not under recovery", w.state))
	case w.rid != rid:
		return cairn.Block{}, cairn.E(op, cairn.KindInvalid, b.String(), fmt.Sprintf("replica is under recovery %d, not %d", w.rid, rid))
	case newLen < 0 || newLen > w.b.Len:
		return cairn.Block{}, cairn.E(op, cairn.KindInvalid, b.String(), fmt.Sprintf("replica holds %d bytes; a recovery never grows it to %d", w.b.Len, newLen))
	}
	before := w.b
	if err := w.restamp(rid, newLen); err != nil {
		return cairn.Block{}, cairn.E(op, cairn.KindIO, b.String(), fmt.Sprintf("cut to %d bytes at stamp %d: %v", newLen, rid, err))
	}
	if !w.inFinalized {
		if err := s.moveToFinalized(w.b); err != nil {
			return cairn.Block{}, cairn.E(op, cairn.KindIO, b.String(), fmt.Sprintf("finalize: %v", err))
		}
	}
	w.finished()
	s.log.Info("replica recovered", zap.Stringer("block", w.b), zap.Stringer("was", before), zap.Uint64("recovery_id", uint64(rid)))
	return w.b, nil
}

// Verify re-reads the replica of id, in any state, against its .meta (the
// checks of the block scanner). It returns the replica and why it is bad,
// "" when it is sound; KindNotExist when there is none.
func (s *Store) Verify(id cairn.BlockID) (cairn.Replica, string, error) {
	const op = "blockd.Verify"
	s.mu.Lock()
	r, fin := s.replicas[id]
	w := s.rbw[id]
	s.mu.Unlock()
	if fin {
		b := cairn.Block{ID: id, GenStamp: r.gs, Len: r.len}
		reason := verifyPaths(b, s.BlockPath(b), s.MetaPath(b))
		if now, ok := s.Lookup(id); reason != "" && (!ok || now.GenStamp != b.GenStamp) {
			return s.Verify(id) // changed while it was read: again
		}
		return cairn.Replica{Block: b, State: cairn.ReplicaFinalized}, reason, nil
	}
	if w == nil {
		return cairn.Replica{}, "", cairn.E(op, cairn.KindNotExist, fmt.Sprint(id), "no replica here")
	}
	// Hold the writer off while the replica is read: its last checksum
	// may be rewritten by the next packet.
	w.mu.RLock()
	defer w.mu.RUnlock()
	if w.done {
		return cairn.Replica{}, "", cairn.E(op, cairn.KindNotExist, fmt.Sprint(id), "replica was finalized or deleted meanwhile; ask again")
	}
	return cairn.Replica{Block: w.b, State: w.state}, verifyPaths(w.b, w.dataPath(), w.metaPath()), nil
}

// verifyPaths checks the replica b whose files are at dataPath and
// metaPath, as the scanner does.
func verifyPaths(b cairn.Block, dataPath, metaPath string) string {
	meta, err := os.Open(metaPath)
	if err != nil {
		if other := otherMetas(dataPath, b); len(other) > 0 {
			return fmt.Sprintf("stale generation stamp: the replica is at %d, beside it is only %v", b.GenStamp, other)
		}
		return fmt.Sprintf("missing or unreadable meta: %v", err)
	}
	defer meta.Close()
	data, err := os.Open(dataPath)
	if err != nil {
		return fmt.Sprintf("missing or unreadable block file: %v", err)
	}
	defer data.Close()
	st, err := data.Stat()
	if err != nil {
		return fmt.Sprintf("missing or unreadable block file: %v", err)
	}
	reason, _ := verifyReplicaFiles(b, st.Size(), meta, data)
	return reason
}
