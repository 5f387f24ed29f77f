package metad

import (
	"context"
	"fmt"
	"time"

	"go.uber.org/zap"

	"cairn"
)

// Bad replicas, as HDFS's BlockManager treats them: a report marks one
// replica, at one stamp, corrupt; a corrupt replica is no longer offered
// to readers (unless nothing better is left) nor counted; the replication
// monitor copies the block from a good replica; and only when the block
// has its full count of good replicas again is the corrupt one deleted
// (invalidateCorrupt). A client's report counts only once its holder has
// confirmed it.

// maxBadReason bounds the reason a report carries.
const maxBadReason = 1024

// validBad checks a report of bad replicas from the network.
func validBad(op string, bad []cairn.BadReplica) error {
	for i, b := range bad {
		switch {
		case b.StorageID == "" || b.ID == 0:
			return cairn.E(op, cairn.KindInvalid, "", fmt.Sprintf("bad replica %d without block or storage ID", i))
		case len(b.Reason) > maxBadReason:
			return cairn.E(op, cairn.KindInvalid, "", fmt.Sprintf("bad replica %d: a reason of %d bytes (at most %d)", i, len(b.Reason), maxBadReason))
		}
	}
	return nil
}

// ReportBadReplicas takes a client's report of replicas it read bad. None
// is marked on a client's word: each holder metad records at the reported
// stamp is asked to verify its replica (CmdVerify on its next heartbeat),
// and its own report (BadReplicasFound) is what counts. A report naming a
// replica metad does not record at that stamp changes nothing.
func (m *Metad) ReportBadReplicas(ctx context.Context, bad []cairn.BadReplica) error {
	const op = "metad.ReportBadReplicas"
	if err := validBad(op, bad); err != nil {
		return err
	}
	for _, b := range bad {
		asked := m.blocks.requestVerify(b.StorageID, b.Block)
		m.log.Info("client reported a bad replica", zap.Stringer("block", b.Block), zap.String("storage_id", b.StorageID),
			zap.String("reason", b.Reason), zap.Bool("verify_asked", asked))
	}
	return nil
}

// BadReplicasFound takes a blockd's report of its own bad replicas. The
// blockd must be registered and every replica must be its own. Each is
// marked corrupt at the reported stamp (a replica metad records at another
// stamp is left alone); one of no file is deleted at once.
func (m *Metad) BadReplicasFound(ctx context.Context, id string, bad []cairn.BadReplica) error {
	const op = "metad.BadReplicasFound"
	if err := m.known(op, id); err != nil {
		return err
	}
	if err := validBad(op, bad); err != nil {
		return err
	}
	for _, b := range bad {
		if b.StorageID != id {
			return cairn.E(op, cairn.KindInvalid, "", fmt.Sprintf("blockd %s reports a replica of %s on %s", id, b.Block, b.StorageID))
		}
	}
	now := m.clock.Now()
	for _, b := range bad {
		stored, writing, known, err := m.storedBlock(b.ID)
		if err != nil {
			return err
		}
		if !known {
			if !m.leads() {
				continue // perhaps a block this member has not applied yet (doubtful.go)
			}
			m.blocks.mu.Lock()
			m.blocks.remove(id, b.ID)
			m.blocks.queueDelete(id, b.Block)
			m.blocks.mu.Unlock()
			continue
		}
		if !m.blocks.markCorrupt(id, b.Block, b.Reason) {
			m.log.Info("bad replica report of a stamp metad does not record there; ignored", zap.Stringer("block", b.Block), zap.String("storage_id", id))
			continue
		}
		m.log.Warn("replica reported corrupt", zap.Stringer("block", b.Block), zap.String("storage_id", id), zap.String("reason", b.Reason))
		m.repl.settled(b.ID)
		if writing {
			continue
		}
		want, err := m.wantReplicas(b.ID)
		if err != nil {
			return err
		}
		m.invalidateCorrupt(stored, want, now)
	}
	return nil
}

// invalidateCorrupt queues for deletion the replicas of b (a closed file's
// block, as metad records it) that are marked corrupt, once b has want good
// replicas on live blockds none of which is stale (HDFS's
// invalidateCorruptReplicas; a replica on a stale blockd may be gone).
// Until then a corrupt replica stays on its disk: it may be the last copy
// of some of the block's bytes. It returns how many were queued.
func (m *Metad) invalidateCorrupt(b cairn.Block, want int, now time.Time) int {
	good := 0
	for _, id := range m.blocks.holders(b) {
		if _, live, stale, in := m.nodes.status(id, now); live && !stale && in {
			good++
		}
	}
	if good < want {
		return 0
	}
	bm := m.blocks
	bm.mu.Lock()
	var gone []string
	for _, r := range bm.replicasLocked(b.ID) {
		if r.Corrupt == "" {
			continue
		}
		bm.queueDelete(r.StorageID, r.Block)
		gone = append(gone, r.StorageID)
	}
	for _, node := range gone {
		bm.remove(node, b.ID)
	}
	bm.mu.Unlock()
	if len(gone) > 0 {
		m.log.Info("block has its replicas again: corrupt replicas deleted", zap.Stringer("block", b), zap.Int("good", good), zap.Strings("from", gone))
	}
	return len(gone)
}
