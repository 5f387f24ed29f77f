package metad

import (
	"context"
	"fmt"

	"cairn"
)

// LoadScaleNamespace writes a namespace for scale benchmarks straight into
// the store of a formatted, stopped metad in dir: files of perFile blocks
// (the last one fewer) under /scale, blocks blocks in all, each closed,
// replication 3, with block IDs from first on, one after another, as
// AddBlock hands them out. Each file is one batch of its block records
// ("f" and "k" keys) and its inode, written as AddBlock and Complete
// write them, so a million blocks load in seconds where AddBlock over RPC
// would take hours. first must lie beyond the IDs metad hands out itself
// (1<<40, say). It returns the blocks in file order.
func LoadScaleNamespace(dir string, blocks, perFile int, first cairn.BlockID) ([]cairn.Block, error) {
	m, err := Open(Config{Dir: dir})
	if err != nil {
		return nil, err
	}
	defer func() { _ = m.Close() }()
	ctx := context.Background()
	if err := m.Mkdirs(ctx, "/scale", 0o755); err != nil {
		return nil, err
	}
	out := make([]cairn.Block, 0, blocks)
	for f := 0; len(out) < blocks; f++ {
		n := min(perFile, blocks-len(out))
		path := fmt.Sprintf("/scale/f%07d", f)
		fi, err := m.Create(ctx, path, cairn.CreateOptions{Client: "load", Replication: 3, BlockSize: 64 << 20})
		if err != nil {
			return nil, err
		}
		in, err := m.st.inode(fi.Inode)
		if err != nil {
			return nil, err
		}
		b := m.st.db.NewBatch()
		for i := range n {
			blk := cairn.Block{ID: first + cairn.BlockID(len(out)), GenStamp: 1000, Len: 64 << 20}
			_ = b.Set(fileBlockKey(in.Id, uint32(i)), encodeBlock(blk), nil)
			_ = b.Set(blockKey(blk.ID), u64(in.Id), nil)
			out = append(out, blk)
		}
		in.Blocks, in.Size, in.LeaseHolder = uint32(n), int64(n)*(64<<20), ""
		if err := setInode(b, in); err != nil {
			return nil, err
		}
		if err := b.Commit(nil); err != nil {
			return nil, fmt.Errorf("load %s: %w", path, err)
		}
	}
	return out, nil
}
