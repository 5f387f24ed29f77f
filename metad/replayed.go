package metad

import (
	"fmt"

	"cairn"
	"cairn/metad/metapb"
)

// Calls made again whose first run is in the store already: what the
// handlers that cannot answer them from the retry cache, nor by the
// replayedDone rule (raftcalls.go), find there. docs/ARCHITECTURE.md
// ("The retry cache in the log") has the table of every mutating call.

// retriedBlock reports whether an AddBlock naming prev as the writer's
// last block was made before and allocated the file's last block: that
// block holds no bytes and follows prev (or, with prev nil, is the
// file's only block, or follows a full block the file was reopened at,
// as after an append at a block boundary). It is HDFS's test
// (FSDirWriteFileOp.analyzeFileState: "caught retry for allocation of a
// new block"); a writer that got the answer names that block as prev
// in its next AddBlock, never the one before it. Caller holds the lock.
func (m *Metad) retriedBlock(op, path string, in *metapb.Inode, prev *cairn.Block) (cairn.Block, bool, error) {
	if in.Blocks == 0 {
		return cairn.Block{}, false, nil
	}
	blocks := func(i uint32) (cairn.Block, error) {
		v, err := m.st.get(fileBlockKey(in.Id, i))
		if err != nil {
			return cairn.Block{}, fmt.Errorf("%s: block %d of %s: %w", op, i, path, err)
		}
		return decodeBlock(v)
	}
	last, err := blocks(in.Blocks - 1)
	if err != nil || last.Len != 0 {
		return cairn.Block{}, false, err
	}
	if in.Blocks == 1 {
		return last, prev == nil, nil
	}
	pen, err := blocks(in.Blocks - 2)
	if err != nil {
		return cairn.Block{}, false, err
	}
	if prev == nil {
		return last, pen.Len == in.BlockSize, nil
	}
	return last, prev.ID == pen.ID && prev.Len == pen.Len, nil
}
