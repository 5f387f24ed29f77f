package metad

import (
	"context"

	"go.uber.org/zap"

	"cairn"
)

func (m *Metad) Append(ctx context.Context, path, client string) (cairn.FileInfo, *cairn.LocatedBlock, error) {
	return cairn.FileInfo{}, nil, notYet("metad.Append")
}

func (m *Metad) AbandonBlock(ctx context.Context, path, client string, b cairn.Block) error {
	return notYet("metad.AbandonBlock")
}

func (m *Metad) Fsync(ctx context.Context, path, client string, b cairn.Block) error {
	return notYet("metad.Fsync")
}

func (m *Metad) UpdateBlockForPipeline(ctx context.Context, path, client string, b cairn.Block) (cairn.GenStamp, error) {
	return 0, notYet("metad.UpdateBlockForPipeline")
}

func (m *Metad) UpdatePipeline(ctx context.Context, path, client string, old, updated cairn.Block, nodes []cairn.Node) error {
	return notYet("metad.UpdatePipeline")
}

func (m *Metad) AdditionalNode(ctx context.Context, path, client string, b cairn.Block, existing, excluded []cairn.Node) (cairn.Node, error) {
	return cairn.Node{}, notYet("metad.AdditionalNode")
}

// ReportBadReplicas marks replicas corrupt. A bad replica is no longer
// offered to readers; it is deleted from its blockd once another good
// replica exists, so the last copy of anything is never thrown away.
func (m *Metad) ReportBadReplicas(ctx context.Context, bad []cairn.BadReplica) error {
	for _, b := range bad {
		if b.StorageID == "" || b.ID == 0 {
			return cairn.E("metad.ReportBadReplicas", cairn.KindInvalid, "", "bad replica without block or storage ID")
		}
	}
	for _, b := range bad {
		m.blocks.markCorrupt(b.StorageID, b.Block, b.Reason)
		m.log.Warn("replica reported corrupt", zap.Stringer("block", b.Block), zap.String("storage_id", b.StorageID), zap.String("reason", b.Reason))
		if m.blocks.replicaCount(b.Block) > 0 {
			m.blocks.mu.Lock()
			m.blocks.toDelete[b.StorageID] = append(m.blocks.toDelete[b.StorageID], b.Block)
			m.blocks.mu.Unlock()
		}
	}
	return nil
}

// BlocksRecovering takes replicas a blockd found left half-written after a
// crash, cut back to their last whole verified chunk. A replica of a file
// still being written is kept as a replica of its last block (the writer or
// lease recovery settles its length); one of a closed file is kept only if
// it has the file's whole block, else it is deleted.
func (m *Metad) BlocksRecovering(ctx context.Context, id string, blocks []cairn.Block) error {
	if err := m.known("metad.BlocksRecovering", id); err != nil {
		return err
	}
	var keep, drop []cairn.Block
	for _, b := range blocks {
		stored, writing, ok, err := m.storedBlock(b.ID)
		if err != nil {
			return err
		}
		switch {
		case !ok || b.GenStamp < stored.GenStamp:
			drop = append(drop, b)
		case writing || b.Len == stored.Len:
			keep = append(keep, b)
		default:
			drop = append(drop, b)
		}
	}
	m.log.Info("replicas being recovered", zap.String("storage_id", id), zap.Int("kept", len(keep)), zap.Int("dropped", len(drop)))
	bm := m.blocks
	bm.mu.Lock()
	for _, b := range keep {
		bm.add(id, b)
	}
	bm.toDelete[id] = append(bm.toDelete[id], drop...)
	bm.mu.Unlock()
	return nil
}

// storedBlock returns metad's record of block id and whether its file is
// being written.
func (m *Metad) storedBlock(id cairn.BlockID) (cairn.Block, bool, bool, error) {
	v, err := m.st.get(blockKey(id))
	if isNotFound(err) {
		return cairn.Block{}, false, false, nil
	}
	if err != nil {
		return cairn.Block{}, false, false, err
	}
	ino, err := parseU64(v)
	if err != nil {
		return cairn.Block{}, false, false, err
	}
	in, err := m.st.inode(ino)
	if err != nil {
		return cairn.Block{}, false, false, err
	}
	blocks, err := m.st.fileBlocks(ino)
	if err != nil {
		return cairn.Block{}, false, false, err
	}
	for _, b := range blocks {
		if b.ID == id {
			return b, in.LeaseHolder != "", true, nil
		}
	}
	return cairn.Block{}, false, false, nil
}
