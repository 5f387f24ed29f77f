package metad

import (
	"context"
	"io/fs"
	"math"
	"sort"

	"cairn"
	"cairn/blocktoken"
)

// ReplicaReport returns the file's blocks as metad records them, each with
// every replica the blockds have reported of it, judged: what fsck checks.
// A replica of a complete block (any block of a closed file, and any but
// the last of a file being written) is judged as a block report of it is
// (judge); the last block of a file being written is under construction,
// and only replicas marked corrupt are bad there.
func (m *Metad) ReplicaReport(ctx context.Context, path string) (cairn.FileReplicas, error) {
	const op = "metad.ReplicaReport"
	c, err := m.callerOf(ctx, op)
	if err != nil {
		return cairn.FileReplicas{}, err
	}
	in, err := m.walk(op, path, c)
	if err != nil {
		return cairn.FileReplicas{}, err
	}
	if fs.FileMode(in.Mode).IsDir() {
		return cairn.FileReplicas{}, cairn.E(op, cairn.KindIsDir, path, "")
	}
	if err := c.check(op, path, in, accessRead); err != nil {
		return cairn.FileReplicas{}, err
	}
	blocks, err := m.st.fileBlocks(in.Id)
	if err != nil {
		return cairn.FileReplicas{}, err
	}
	fr := cairn.FileReplicas{Size: in.Size, Writing: in.LeaseHolder != "", Replication: int(in.Replication)}
	now := m.clock.Now()
	var off int64
	for i, blk := range blocks {
		// VERIFY_BLOCK re-reads a replica at whatever stamp it has.
		br := cairn.BlockReplicas{Block: blk, Offset: off, UnderConstruction: fr.Writing && i == len(blocks)-1,
			Token: m.token(c.user, blk.ID, 0, math.MaxUint64, blocktoken.Read)}
		off += blk.Len
		for _, r := range m.blocks.replicasOf(blk.ID) {
			ri := cairn.ReplicaInfo{Node: cairn.Node{StorageID: r.StorageID}, Replica: r.Replica, Corrupt: r.Corrupt}
			if n, live, stale := m.nodes.isLive(r.StorageID, now); live {
				ri.Node, ri.Live, ri.Stale = n, true, stale
			} else {
				ri.Node = m.nodes.node(r.StorageID)
			}
			if ri.Corrupt == "" && !br.UnderConstruction {
				if j, why := judge(r.Replica, blk, true, false); j == replicaCorrupt {
					ri.Corrupt = why
				}
			}
			ri.Good = ri.Corrupt == "" && wholeCopy(r.Replica, blk)
			ri.Maintenance = m.nodes.inMaintenance(r.StorageID)
			br.Replicas = append(br.Replicas, ri)
		}
		sort.Slice(br.Replicas, func(i, j int) bool { return br.Replicas[i].StorageID < br.Replicas[j].StorageID })
		fr.Blocks = append(fr.Blocks, br)
	}
	return fr, nil
}
