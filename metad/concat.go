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

// Concat, HDFS's concat (FSDirConcatOp): the blocks of the sources move,
// in order, to the end of the target, and the sources are removed, in one
// batch, so a crash leaves either every key as it was or every key moved.
//
// The rules are HDFS's, with its messages: the target and the sources are
// closed regular files of one directory; the caller may write the target,
// read each source and write the directory (as for a delete, also past a
// sticky bit); the sources are not empty, not the target and not named
// twice. HDFS refuses a source with a larger preferred block size than the
// target's; cairn asks the same block size, and more: only a full block
// may be followed by another (AddBlock keeps that for every file), so the
// target's last block and every moved block but the last source's last
// must be full. The reader would cope without (a block's offset is the sum
// of the lengths before it), but a file whose inner blocks are short is a
// file no writer makes. A source with other names (nlink > 1) or held open
// by a client that removed one of them is refused: its blocks would leave
// those names.
//
// Nothing in memory follows a block's file: the block map is keyed by
// block alone, and the replication monitor reads a block's file, and so
// the replication it wants, from its "k" key, which the batch rewrites. So
// the batch is the whole change; a moved block takes the target's
// replication from the next monitor round on (a full one when a source's
// replication differs from the target's).

func (m *Metad) Concat(ctx context.Context, target string, sources []string) error {
	const op = "metad.Concat"
	if err := cairn.ValidatePath(target); err != nil {
		return err
	}
	if len(sources) == 0 {
		return cairn.E(op, cairn.KindInvalid, target, "No sources given")
	}
	for _, s := range sources {
		if err := cairn.ValidatePath(s); err != nil {
			return err
		}
	}
	c, err := m.callerOf(ctx, op)
	if err != nil {
		return err
	}
	var moved int
	replChanged := false
	err = m.mutate(ctx, func(b *pebble.Batch) error {
		t, err := m.concatPlan(op, target, sources, c)
		if err != nil {
			return err
		}
		for _, s := range t.sources {
			replChanged = replChanged || s.in.Replication != t.target.Replication
		}
		moved, err = m.applyConcat(b, t)
		return err
	})
	if err == nil && replChanged {
		// Moved blocks now want the target's replication: the next
		// round looks at every block, as after a setrep.
		m.replChanged.Store(true)
	}
	if err == nil {
		m.log.Info("files concatenated", zap.String("target", target), zap.Int("sources", len(sources)), zap.Int("blocks_moved", moved))
	}
	return err
}

// concatPlan is what a concat changes, checked.
type concatPlan struct {
	target  *metapb.Inode
	dir     *metapb.Inode // the directory of the target and the sources
	sources []concatSource
}

type concatSource struct {
	path   string
	name   string
	in     *metapb.Inode
	blocks []cairn.Block
}

// concatPlan checks a concat's rules and reads what it moves. Caller
// holds the lock.
func (m *Metad) concatPlan(op, target string, sources []string, c *caller) (*concatPlan, error) {
	tin, err := m.walk(op, target, c)
	if err != nil {
		return nil, err
	}
	if err := concatFile(op, target, tin); err != nil {
		return nil, err
	}
	if err := c.check(op, target, tin, accessWrite); err != nil {
		return nil, err
	}
	if tin.LeaseHolder != "" {
		return nil, cairn.E(op, cairn.KindInvalid, target, fmt.Sprintf("concat: target file %s is under construction", target))
	}
	dirPath, _ := cairn.Split(target)
	dir, err := m.walk(op, dirPath, c)
	if err != nil {
		return nil, err
	}
	if tin.Blocks > 0 {
		last, err := m.st.get(fileBlockKey(tin.Id, tin.Blocks-1))
		if err != nil {
			return nil, fmt.Errorf("%s: last block of %s: %w", op, target, err)
		}
		lb, err := decodeBlock(last)
		if err != nil {
			return nil, err
		}
		if lb.Len != tin.BlockSize {
			return nil, cairn.E(op, cairn.KindInvalid, target, fmt.Sprintf(
				"concat: the target's last block %s holds %d bytes; only a full block (%d) may be followed by another", lb, lb.Len, tin.BlockSize))
		}
	}
	p := &concatPlan{target: tin, dir: dir}
	seen := map[uint64]bool{}
	dup := false
	for i, src := range sources {
		sin, err := m.walk(op, src, c)
		if err != nil {
			return nil, err
		}
		if err := c.check(op, src, sin, accessRead); err != nil {
			return nil, err
		}
		if i == 0 {
			if err := c.check(op, dirPath, dir, accessWrite|accessExec); err != nil {
				return nil, err
			}
		}
		if err := concatFile(op, src, sin); err != nil {
			return nil, err
		}
		sdir, name := cairn.Split(src)
		if sdir != dirPath {
			return nil, cairn.E(op, cairn.KindInvalid, src, fmt.Sprintf("Source file %s is not in the same directory with the target %s", src, target))
		}
		if err := c.checkSticky(op, src, dir, sin); err != nil {
			return nil, err
		}
		if sin.Id == tin.Id {
			return nil, cairn.E(op, cairn.KindInvalid, src, fmt.Sprintf("concat: the src file %s is the same with the target file %s", src, target))
		}
		if sin.LeaseHolder != "" || sin.Blocks == 0 {
			return nil, cairn.E(op, cairn.KindInvalid, src, fmt.Sprintf("concat: source file %s is invalid or empty or underConstruction", src))
		}
		if sin.BlockSize != tin.BlockSize {
			return nil, cairn.E(op, cairn.KindInvalid, src, fmt.Sprintf(
				"concat: source file %s has block size %d, the target file's is %d: the blocks of one file have one size", src, sin.BlockSize, tin.BlockSize))
		}
		if n := nlink(sin); n > 1 {
			return nil, cairn.E(op, cairn.KindInvalid, src, fmt.Sprintf("concat: source file %s has %d names (hard links): its blocks would leave the others", src, n))
		}
		if holders, _, err := m.st.orphanHolders(sin.Id); err != nil {
			return nil, err
		} else if len(holders) > 0 {
			return nil, cairn.E(op, cairn.KindInvalid, src, fmt.Sprintf("concat: source file %s is held open by %d client(s) that removed another name of it", src, len(holders)))
		}
		if seen[sin.Id] {
			dup = true
			continue
		}
		seen[sin.Id] = true
		blocks, err := m.st.fileBlocks(sin.Id)
		if err != nil {
			return nil, err
		}
		if len(blocks) != int(sin.Blocks) {
			return nil, fmt.Errorf("%s: %s: %d block records, its inode says %d", op, src, len(blocks), sin.Blocks)
		}
		p.sources = append(p.sources, concatSource{path: src, name: name, in: sin, blocks: blocks})
	}
	if dup {
		return nil, cairn.E(op, cairn.KindInvalid, target, "concat: at least two of the source files are the same")
	}
	for i, s := range p.sources {
		for j, blk := range s.blocks {
			if last := i == len(p.sources)-1 && j == len(s.blocks)-1; !last && blk.Len != tin.BlockSize {
				return nil, cairn.E(op, cairn.KindInvalid, s.path, fmt.Sprintf(
					"concat: block %d (%s) of source file %s holds %d bytes; only a full block (%d) may be followed by another", j, blk, s.path, blk.Len, tin.BlockSize))
			}
		}
	}
	return p, nil
}

// concatFile refuses what is not a regular file, as HDFS's
// INodeFile.valueOf does.
func concatFile(op, path string, in *metapb.Inode) error {
	switch mode := fs.FileMode(in.Mode); {
	case mode.IsRegular():
		return nil
	case mode.IsDir():
		return cairn.E(op, cairn.KindIsDir, path, "Path is not a file: "+path)
	default:
		return cairn.E(op, cairn.KindInvalid, path, fmt.Sprintf("Path is not a file: %s (a %v)", path, mode.Type()))
	}
}

// applyConcat writes p to b: the target's "f" keys extended with the
// sources' blocks, each moved block's "k" key naming the target, the
// sources' records removed. It returns how many blocks moved. Caller
// holds the lock.
func (m *Metad) applyConcat(b *pebble.Batch, p *concatPlan) (int, error) {
	t := p.target
	moved := 0
	for _, s := range p.sources {
		for _, blk := range s.blocks {
			_ = b.Set(fileBlockKey(t.Id, t.Blocks), encodeBlock(blk), nil)
			_ = b.Set(blockKey(blk.ID), u64(t.Id), nil)
			t.Blocks++
			t.Size += blk.Len
			moved++
		}
		if err := deletePrefix(m.st.src(), b, filePrefix(s.in.Id)); err != nil {
			return 0, err
		}
		if s.in.Xattrs > 0 {
			if err := deletePrefix(m.st.src(), b, xattrPrefix(s.in.Id)); err != nil {
				return 0, err
			}
		}
		_ = b.Delete(entryKey(p.dir.Id, s.name), nil)
		_ = b.Delete(inodeKey(s.in.Id), nil)
		_ = b.Delete(writingKey(s.in.Id), nil)
		m.st.numFiles--
	}
	now := m.clock.Now().UnixNano()
	t.MtimeNs, t.CtimeNs = now, now
	t.Creator = "" // written since it was created: no claim is left
	if err := setInode(b, t); err != nil {
		return 0, err
	}
	dirChanged(p.dir, now)
	return moved, setInode(b, p.dir)
}
