package blockd

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.uber.org/zap"

	"cairn"
)

const (
	// recoveryWorkers is how many block recoveries a blockd runs at once
	// as their primary; recoveryQueue how many more may wait. A command
	// that finds the queue full is dropped: metad asks again.
	recoveryWorkers = 4
	recoveryQueue   = 256
	// recoveryOpTimeout bounds one INIT_RECOVERY or UPDATE_RECOVERY on
	// another blockd (it may verify a whole replica), and commitTimeout
	// the report to metad.
	recoveryOpTimeout = 2 * time.Minute
	commitTimeout     = 30 * time.Second
)

// queueRecovery hands a CmdRecover to the recovery workers.
func (d *Blockd) queueRecovery(c cairn.Command) {
	if len(c.Blocks) != 1 || c.RecoveryID == 0 {
		d.log.Warn("ignoring a malformed block recovery command", zap.Int("blocks", len(c.Blocks)), zap.Uint64("recovery_id", uint64(c.RecoveryID)))
		return
	}
	select {
	case d.recoveries <- c:
	default:
		d.log.Warn("block recovery queue full; metad will ask again", zap.Stringer("block", c.Blocks[0]), zap.Uint64("recovery_id", uint64(c.RecoveryID)))
	}
}

// runRecoveries runs queued block recoveries on a fixed number of workers
// until ctx ends.
func (d *Blockd) runRecoveries(ctx context.Context, workers int) {
	runWorkers(ctx, workers, d.recoveries, func(c cairn.Command) {
		d.active.Add(1)
		err := d.recoverBlock(ctx, c)
		d.active.Add(-1)
		if err != nil {
			d.met.recoveries.WithLabelValues("failed").Inc()
			d.log.Warn("block recovery failed", zap.Stringer("block", c.Blocks[0]), zap.Uint64("recovery_id", uint64(c.RecoveryID)), zap.Error(err))
			return
		}
		d.met.recoveries.WithLabelValues("ok").Inc()
	})
}

// recoveryReplica is one target's replica as INIT_RECOVERY found it.
type recoveryReplica struct {
	node cairn.Node
	r    cairn.Replica
}

// recoverBlock is one block recovery with this blockd as its primary
// (HDFS's BlockRecoveryWorker.RecoveryTaskContiguous): every target's
// replica is claimed (INIT_RECOVERY), a length chosen (planRecovery), each
// participant cut and finalized to it at the recovery's stamp
// (UPDATE_RECOVERY), and the outcome committed to metad. When every target
// says it has no replica, the commit asks metad to delete the block.
func (d *Blockd) recoverBlock(ctx context.Context, c cairn.Command) error {
	blk, rid := c.Blocks[0], c.RecoveryID
	var token []byte // metad's recover token for blk, stamps blk's to rid
	if len(c.Tokens) > 0 {
		token = c.Tokens[0]
	}
	log := d.log.With(zap.Stringer("block", blk), zap.Uint64("recovery_id", uint64(rid)))
	var found []recoveryReplica
	var failed []string
	for _, t := range c.Targets {
		r, err := d.initRecoveryOn(ctx, t, blk, rid, token)
		switch {
		case err == nil:
			log.Info("replica claimed for recovery", zap.String("node", t.StorageID), zap.Stringer("state", r.State),
				zap.Uint64("gen_stamp", uint64(r.GenStamp)), zap.Int64("length", r.Len))
			found = append(found, recoveryReplica{node: t, r: r})
		case cairn.KindOf(err) == cairn.KindNotExist:
			log.Info("no replica to recover", zap.String("node", t.StorageID))
		case cairn.KindOf(err) == cairn.KindBusy:
			// A newer recovery holds a replica: this one is superseded.
			return fmt.Errorf("superseded on %s: %w", t.StorageID, err)
		default:
			log.Warn("replica not claimed for recovery", zap.String("node", t.StorageID), zap.Error(err))
			failed = append(failed, t.StorageID)
		}
	}
	if len(found) == 0 {
		if len(failed) > 0 {
			return fmt.Errorf("no replica claimed; failed on %v", failed)
		}
		log.Info("no target has a replica: asking metad to delete the block")
		return d.commitSync(ctx, cairn.CommitSync{Block: blk, RecoveryID: rid, NewGenStamp: rid, Delete: true})
	}
	newLen, parts, err := planRecovery(found)
	if err != nil {
		return err
	}
	var nodes []string
	for _, p := range parts {
		if _, err := d.updateRecoveryOn(ctx, p.node, blk, rid, newLen, token); err != nil {
			log.Warn("replica not finalized by the recovery", zap.String("node", p.node.StorageID), zap.Error(err))
			continue
		}
		nodes = append(nodes, p.node.StorageID)
	}
	if len(nodes) == 0 {
		return fmt.Errorf("no participant finalized its replica at %d bytes", newLen)
	}
	if err := d.commitSync(ctx, cairn.CommitSync{Block: blk, RecoveryID: rid, NewGenStamp: rid, NewLen: newLen, Nodes: nodes}); err != nil {
		return err
	}
	log.Info("block recovered", zap.Int64("length", newLen), zap.Strings("nodes", nodes))
	return nil
}

func (d *Blockd) commitSync(ctx context.Context, c cairn.CommitSync) error {
	ctx, cancel := context.WithTimeout(ctx, commitTimeout)
	defer cancel()
	if err := d.metad.CommitBlockSynchronization(ctx, c); err != nil {
		return fmt.Errorf("commit to metad: %w", err)
	}
	return nil
}

// planRecovery chooses the recovered length and the replicas that take
// part, as HDFS's syncBlock: if any replica is finalized, its length, and
// only finalized replicas and unfinished ones holding at least that many
// bytes join (finalized replicas of different lengths are an error);
// otherwise, if any replica was being written (RBW), the shortest of
// those, and they join; otherwise the shortest of the replicas waiting for
// recovery (RWR), and they join.
func planRecovery(found []recoveryReplica) (int64, []recoveryReplica, error) {
	finLen := int64(-1)
	best := cairn.ReplicaRWR
	for _, f := range found {
		switch f.r.State {
		case cairn.ReplicaFinalized:
			if finLen >= 0 && finLen != f.r.Len {
				return 0, nil, errors.New("finalized replicas of different lengths: " + lengths(found))
			}
			finLen, best = f.r.Len, cairn.ReplicaFinalized
		case cairn.ReplicaRBW:
			if best == cairn.ReplicaRWR {
				best = cairn.ReplicaRBW
			}
		}
	}
	var parts []recoveryReplica
	if best == cairn.ReplicaFinalized {
		for _, f := range found {
			if f.r.State == cairn.ReplicaFinalized || f.r.Len >= finLen {
				parts = append(parts, f)
			}
		}
		return finLen, parts, nil
	}
	newLen := int64(-1)
	for _, f := range found {
		if f.r.State != best {
			continue
		}
		parts = append(parts, f)
		if newLen < 0 || f.r.Len < newLen {
			newLen = f.r.Len
		}
	}
	if len(parts) == 0 {
		return 0, nil, errors.New("no replica in a state a recovery can use: " + lengths(found))
	}
	return newLen, parts, nil
}

func lengths(found []recoveryReplica) string {
	s := ""
	for i, f := range found {
		if i > 0 {
			s += ", "
		}
		s += fmt.Sprintf("%s %s %d bytes", f.node.StorageID, f.r.State, f.r.Len)
	}
	return s
}
