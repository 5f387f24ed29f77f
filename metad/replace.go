package metad

import (
	"context"
	"fmt"
	"io/fs"

	"github.com/cockroachdb/pebble/v2"
	"go.uber.org/zap"

	"cairn"
	"cairn/metad/metapb"
)

// Replacing a file whole: HDFS's create(overwrite=true), and what open(2)
// with O_TRUNC and truncate(2) to 0 mean on cairn. The bytes of a version
// are never changed in place; a replaced file is a new, empty version
// under the same inode number (so it keeps its names, attributes and open
// descriptors' identity), held open by the caller, and the old version's
// blocks are freed. A reader of the old version reads its blocks until
// they are gone, then fails: its block IDs are never reused, so it never
// reads bytes of the new version as the old one's (client.Reader checks
// that a refreshed file keeps the blocks it had).

// replace makes the regular file at path a new empty version held open by
// client. The caller needs write permission on the file (not on its
// directory). A file written by another client is ErrBusy until that
// writer has passed the soft limit, when it is taken over (its bytes are
// dropped with the rest); one under block recovery is ErrRetry. Caller
// holds the lock; the returned blocks are freed once b is durable.
func (m *Metad) replace(op, path string, b *pebble.Batch, c *caller, client string) (*metapb.Inode, []cairn.Block, error) {
	in, err := m.walk(op, path, c)
	if err != nil {
		return nil, nil, err
	}
	switch mode := fs.FileMode(in.Mode); {
	case mode.IsDir():
		return nil, nil, cairn.E(op, cairn.KindIsDir, path, "")
	case !mode.IsRegular():
		return nil, nil, cairn.E(op, cairn.KindInvalid, path, fmt.Sprintf("a %v is not replaced", mode.Type()))
	}
	if err := c.check(op, path, in, accessWrite); err != nil {
		return nil, nil, err
	}
	switch h := in.LeaseHolder; {
	case h == "" || h == client:
	case h == recoveryHolder:
		return nil, nil, cairn.E(op, cairn.KindRetry, path, "the file is being recovered")
	case !m.leases.expired(in, m.leases.soft):
		return nil, nil, cairn.E(op, cairn.KindBusy, path, fmt.Sprintf("lease held by %s", h))
	default:
		m.log.Info("lease taken over by a replace", zap.String("path", path), zap.String("holder", h), zap.String("client", client))
	}
	var blocks []cairn.Block
	if in.Blocks > 0 {
		if blocks, err = m.st.fileBlocks(in.Id); err != nil {
			return nil, nil, err
		}
		for i, blk := range blocks {
			_ = b.Delete(fileBlockKey(in.Id, uint32(i)), nil)
			_ = b.Delete(blockKey(blk.ID), nil)
		}
	}
	now := m.clock.Now().UnixNano()
	in.Blocks, in.Size = 0, 0
	in.LeaseHolder, in.LeaseNs = client, now
	in.MtimeNs = now
	return in, blocks, setInode(b, in)
}

// createOverwrite is Create with o.Overwrite: a new file, or the existing
// one replaced (replace).
func (m *Metad) createOverwrite(ctx context.Context, op, path string, o cairn.CreateOptions, c *caller) (cairn.FileInfo, error) {
	var fi cairn.FileInfo
	var freed []cairn.Block
	err := m.mutate(ctx, func(b *pebble.Batch) error {
		freed = nil
		parent, name, err := m.makeEntry(op, path, c)
		if cairn.KindOf(err) == cairn.KindExist {
			in, blocks, err := m.replace(op, path, b, c, o.Client)
			if err != nil {
				return err
			}
			freed = blocks
			fi = m.infoAt(in, name)
			return nil
		}
		if err != nil {
			return err
		}
		in, err := m.newFile(b, parent, name, o, c)
		if err != nil {
			return err
		}
		fi = m.info(in)
		return nil
	})
	if err != nil {
		return cairn.FileInfo{}, err
	}
	if len(freed) > 0 {
		m.pipelines.forget(freed[len(freed)-1].ID)
		m.blocks.free(freed)
		m.log.Debug("file replaced", zap.String("path", path), zap.Int("blocks_freed", len(freed)))
	}
	m.leases.renew(o.Client)
	return fi, nil
}
