package metad

import (
	"context"
	"fmt"
	"io/fs"

	"github.com/cockroachdb/pebble/v2"

	"cairn"
	"cairn/metad/metapb"
)

// Rename and Delete: the operations that move or remove whole subtrees.

func isAncestor(m *Metad, anc, ino uint64) (bool, error) {
	for ino != 0 {
		if ino == anc {
			return true, nil
		}
		in, err := m.st.inode(ino)
		if err != nil {
			return false, err
		}
		ino = in.Parent
	}
	return false, nil
}

// Rename moves src to dst in one batch. The caller needs write and search
// permission on both parents, write permission on a directory that changes
// parent (its ".." changes, as on Linux), and, in a sticky directory, to
// own what it moves or replaces (or the directory).
func (m *Metad) Rename(ctx context.Context, src, dst string) error {
	const op = "metad.Rename"
	c, err := m.callerOf(ctx, op)
	if err != nil {
		return err
	}
	var freed []cairn.Block
	err = m.mutate(ctx, func(b *pebble.Batch) error {
		sp, sname, err := m.walkParent(op, src, c)
		if err != nil {
			return err
		}
		dp, dname, err := m.walkParent(op, dst, c)
		if err != nil {
			return err
		}
		if dp.Id == sp.Id {
			dp = sp // one record, changed once
		}
		sin, err := m.child(sp, sname)
		if err != nil {
			return err
		}
		if sin == nil {
			return cairn.E(op, cairn.KindNotExist, src, "")
		}
		sdir, _ := cairn.Split(src)
		ddir, _ := cairn.Split(dst)
		if err := c.check(op, sdir, sp, accessWrite|accessExec); err != nil {
			return err
		}
		if err := c.checkSticky(op, src, sp, sin); err != nil {
			return err
		}
		if src == dst {
			return nil
		}
		if err := c.check(op, ddir, dp, accessWrite|accessExec); err != nil {
			return err
		}
		if fs.FileMode(sin.Mode).IsDir() {
			if in, err := isAncestor(m, sin.Id, dp.Id); err != nil {
				return err
			} else if in {
				return cairn.E(op, cairn.KindInvalid, dst, fmt.Sprintf("cannot move %s into its own subtree", src))
			}
			if dp.Id != sp.Id {
				if err := c.check(op, src, sin, accessWrite); err != nil {
					return err
				}
			}
		}
		din, err := m.child(dp, dname)
		if err != nil {
			return err
		}
		if din != nil {
			if din.Id == sin.Id {
				return nil // two names of one file: POSIX says do nothing
			}
			sDir, dDir := fs.FileMode(sin.Mode).IsDir(), fs.FileMode(din.Mode).IsDir()
			switch {
			case sDir && !dDir:
				return cairn.E(op, cairn.KindNotDir, dst, "cannot replace a non-directory with a directory")
			case !sDir && dDir:
				return cairn.E(op, cairn.KindIsDir, dst, "cannot replace a directory with a non-directory")
			case dDir:
				empty, err := m.isEmpty(din.Id)
				if err != nil {
					return err
				}
				if !empty {
					return cairn.E(op, cairn.KindNotEmpty, dst, "")
				}
			}
			if err := c.checkSticky(op, dst, dp, din); err != nil {
				return err
			}
			if freed, err = m.removeTree(b, dst, dp.Id, dname, din, nil, ""); err != nil {
				return err
			}
			if dDir {
				lessSubdirs(dp)
			}
		}
		now := m.clock.Now().UnixNano()
		if fs.FileMode(sin.Mode).IsDir() && dp.Id != sp.Id {
			lessSubdirs(sp)
			dp.Subdirs++
		}
		sin.CtimeNs = now
		_ = b.Delete(entryKey(sp.Id, sname), nil)
		_ = b.Set(entryKey(dp.Id, dname), u64(sin.Id), nil)
		m.nameEdits(b).move(sin, sp.Id, sname, dp.Id, dname)
		if err := setInode(b, sin); err != nil {
			return err
		}
		dirChanged(sp, now)
		if err := setInode(b, sp); err != nil {
			return err
		}
		if dp.Id != sp.Id {
			dirChanged(dp, now)
			return setInode(b, dp)
		}
		return nil
	})
	if err == nil {
		m.blocks.free(freed)
	}
	return err
}

func (m *Metad) isEmpty(dir uint64) (bool, error) {
	p := entryPrefix(dir)
	it, err := m.st.src().NewIter(&pebble.IterOptions{LowerBound: p, UpperBound: prefixEnd(p)})
	if err != nil {
		return false, err
	}
	empty := !it.First()
	return empty, it.Close()
}

// removeTree deletes the name (dir, name) of in (found at path) and, if
// that was its last name, in and everything below it, queueing their
// blocks for deletion on the blockds once the batch is durable. It
// streams each directory with an iterator, so no directory is held whole.
// A non-nil c must have every permission (rwx) on each non-empty
// directory of the subtree, as HDFS asks for a recursive delete. Caller
// holds the lock.
//
// A file with other names keeps them (and holder, the client that unlinks
// a name of a file it has open, is recorded as holding it); a file
// whose last name goes while it is open for writing or held becomes an
// orphan instead of being freed (orphan.go).
func (m *Metad) removeTree(b *pebble.Batch, path string, dir uint64, name string, in *metapb.Inode, c *caller, holder string) ([]cairn.Block, error) {
	_ = b.Delete(entryKey(dir, name), nil)
	var freed []cairn.Block
	ns := m.nameEdits(b)
	var walk func(path string, in *metapb.Inode, dir uint64, name string) error
	walk = func(path string, in *metapb.Inode, dir uint64, name string) error {
		if !fs.FileMode(in.Mode).IsDir() {
			in = ns.current(in)
			left, err := ns.drop(in, dir, name)
			if err != nil {
				return err
			}
			if left > 0 {
				if err := m.hold(b, in, holder); err != nil {
					return err
				}
				return setInode(b, in)
			}
		}
		if kept, err := m.orphan(b, in, holder); err != nil || kept {
			return err
		}
		_ = b.Delete(inodeKey(in.Id), nil)
		m.st.numFiles--
		if in.Xattrs > 0 {
			if err := deletePrefix(m.st.src(), b, xattrPrefix(in.Id)); err != nil {
				return err
			}
		}
		if !fs.FileMode(in.Mode).IsDir() {
			if in.LeaseHolder != "" {
				_ = b.Delete(writingKey(in.Id), nil)
			}
			if in.Blocks == 0 {
				return nil
			}
			blocks, err := m.st.fileBlocks(in.Id)
			if err != nil {
				return err
			}
			for i, blk := range blocks {
				_ = b.Delete(fileBlockKey(in.Id, uint32(i)), nil)
				_ = b.Delete(blockKey(blk.ID), nil)
			}
			freed = append(freed, blocks...)
			return nil
		}
		p := entryPrefix(in.Id)
		it, err := m.st.src().NewIter(&pebble.IterOptions{LowerBound: p, UpperBound: prefixEnd(p)})
		if err != nil {
			return err
		}
		defer it.Close()
		if it.First() {
			if err := c.check("metad.Delete", path, in, accessRead|accessWrite|accessExec); err != nil {
				return err
			}
		}
		for ; it.Valid(); it.Next() {
			ino, err := parseU64(it.Value())
			if err != nil {
				return err
			}
			_ = b.Delete(it.Key(), nil)
			kin, err := m.st.inode(ino)
			if err != nil {
				return err
			}
			kname := string(it.Key()[len(p):])
			if err := walk(cairn.Join(path, kname), kin, in.Id, kname); err != nil {
				return err
			}
		}
		return it.Error()
	}
	if err := walk(path, in, dir, name); err != nil {
		return nil, err
	}
	return freed, nil
}

// deletePrefix adds a deletion of every key with prefix p to b.
func deletePrefix(db pebble.Reader, b *pebble.Batch, p []byte) error {
	it, err := db.NewIter(&pebble.IterOptions{LowerBound: p, UpperBound: prefixEnd(p)})
	if err != nil {
		return err
	}
	for it.First(); it.Valid(); it.Next() {
		_ = b.Delete(it.Key(), nil)
	}
	return it.Close()
}

// Delete removes path; a non-empty directory only when recursive. The
// caller needs write and search permission on the parent (and, in a sticky
// directory, to own path or the directory); for a recursive delete of a
// non-empty directory, every permission on each non-empty directory below.
func (m *Metad) Delete(ctx context.Context, path string, recursive bool) error {
	return m.remove(ctx, "metad.Delete", path, recursive, "")
}

// Unlink removes the name path of a file that holder (a client) has open:
// the file's data stays, an orphan, until holder releases it (Release) —
// or, when it is being written, until its writer closes it too.
func (m *Metad) Unlink(ctx context.Context, path, holder string) error {
	const op = "metad.Unlink"
	if err := validClient(op, path, holder); err != nil {
		return err
	}
	if err := m.remove(ctx, op, path, false, holder); err != nil {
		return err
	}
	m.leases.renew(holder)
	return nil
}

func (m *Metad) remove(ctx context.Context, op, path string, recursive bool, holder string) error {
	c, err := m.callerOf(ctx, op)
	if err != nil {
		return err
	}
	var freed []cairn.Block
	err = m.mutate(ctx, func(b *pebble.Batch) error {
		parent, name, err := m.walkParent(op, path, c)
		if err != nil {
			return err
		}
		in, err := m.child(parent, name)
		if err != nil {
			return err
		}
		if in == nil {
			return cairn.E(op, cairn.KindNotExist, path, "")
		}
		dir, _ := cairn.Split(path)
		if err := c.check(op, dir, parent, accessWrite|accessExec); err != nil {
			return err
		}
		if err := c.checkSticky(op, path, parent, in); err != nil {
			return err
		}
		if fs.FileMode(in.Mode).IsDir() && !recursive {
			empty, err := m.isEmpty(in.Id)
			if err != nil {
				return err
			}
			if !empty {
				return cairn.E(op, cairn.KindNotEmpty, path, "")
			}
		}
		if holder != "" && !fs.FileMode(in.Mode).IsRegular() {
			return cairn.E(op, cairn.KindInvalid, path, "only a file is unlinked while open")
		}
		if freed, err = m.removeTree(b, path, parent.Id, name, in, c, holder); err != nil {
			return err
		}
		dirChanged(parent, m.clock.Now().UnixNano())
		if fs.FileMode(in.Mode).IsDir() {
			lessSubdirs(parent)
		}
		return setInode(b, parent)
	})
	if err == nil {
		m.blocks.free(freed)
	}
	return err
}
