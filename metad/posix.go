package metad

import (
	"context"
	"encoding/binary"
	"fmt"
	"io/fs"

	"github.com/cockroachdb/pebble/v2"
	"google.golang.org/protobuf/proto"

	"cairn"
	"cairn/metad/metapb"
)

// What stat(2) shows beyond the stored attributes: the change time
// (ctime), the link count of a directory, and the open-time access check.

// ctimeOf is in's change time; a record from before ctimes were kept has
// none, and shows its modification time.
func ctimeOf(in *metapb.Inode) int64 {
	if in.CtimeNs == 0 {
		return in.MtimeNs
	}
	return in.CtimeNs
}

// nlinkOf is in's st_nlink: a directory's entry in its parent, its own
// ".", and each subdirectory's ".."; one name for anything else.
func nlinkOf(in *metapb.Inode) int {
	if fs.FileMode(in.Mode).IsDir() {
		return 2 + int(in.Subdirs)
	}
	return int(nlink(in))
}

// dirChanged records an entry made or removed in dir at now: its
// modification and change times, as POSIX has them.
func dirChanged(dir *metapb.Inode, now int64) {
	dir.MtimeNs, dir.CtimeNs = now, now
}

// lessSubdirs counts a subdirectory of dir gone (never below zero).
func lessSubdirs(dir *metapb.Inode) {
	if dir.Subdirs > 0 {
		dir.Subdirs--
	}
}

// Access is Stat of path for a caller who needs want on it, checked as
// open(2) does before it opens: the search permission of every directory
// on the way, then want on path itself.
func (m *Metad) Access(ctx context.Context, path string, want cairn.AccessMode) (cairn.FileInfo, error) {
	const op = "metad.Access"
	if want&^(cairn.AccessRead|cairn.AccessWrite|cairn.AccessExec) != 0 {
		return cairn.FileInfo{}, cairn.E(op, cairn.KindInvalid, path, fmt.Sprintf("access mode %d beyond rwx", want))
	}
	c, err := m.callerOf(ctx, op)
	if err != nil {
		return cairn.FileInfo{}, err
	}
	in, err := m.walk(op, path, c)
	if err != nil {
		return cairn.FileInfo{}, err
	}
	if want != 0 {
		if err := c.check(op, path, in, uint32(want)); err != nil {
			return cairn.FileInfo{}, err
		}
	}
	return m.info(in), nil
}

// subdirsKey marks a store whose directories count their subdirectories
// (metapb.Inode.subdirs). A store written before they did is counted
// once, at start (countSubdirs).
var subdirsKey = []byte("msubdirs")

// subdirsBatch bounds the inodes countSubdirs rewrites per batch.
const subdirsBatch = 10000

// countSubdirs sets every directory's subdirectory count from the
// directories' parents, unless the store is marked as counted: two passes
// over the inodes, holding one counter per directory with
// subdirectories. The mark is written last, so a count cut short by a
// crash is made again, whole, at the next start.
func (s *store) countSubdirs() error {
	if _, err := s.get(subdirsKey); err == nil {
		return nil
	} else if !isNotFound(err) {
		return err
	}
	p := []byte{prefixInode}
	counts := map[uint64]uint32{}
	err := s.eachInode(p, func(in *metapb.Inode) error {
		if fs.FileMode(in.Mode).IsDir() && in.Id != RootIno {
			counts[in.Parent]++
		}
		return nil
	})
	if err != nil {
		return err
	}
	b := s.db.NewBatch()
	n := 0
	err = s.eachInode(p, func(in *metapb.Inode) error {
		if !fs.FileMode(in.Mode).IsDir() || in.Subdirs == counts[in.Id] {
			return nil
		}
		in.Subdirs = counts[in.Id]
		if err := setInode(b, in); err != nil {
			return err
		}
		if n++; n%subdirsBatch == 0 {
			if err := b.Commit(pebble.Sync); err != nil {
				return err
			}
			_ = b.Close()
			b = s.db.NewBatch()
		}
		return nil
	})
	if err == nil {
		_ = b.Set(subdirsKey, binary.BigEndian.AppendUint32(nil, 1), nil)
		err = b.Commit(pebble.Sync)
	}
	_ = b.Close()
	if err != nil {
		return fmt.Errorf("metad: count the subdirectories of every directory: %w", err)
	}
	return nil
}

// eachInode calls fn with every inode whose key has prefix p, stopping at
// its first error.
func (s *store) eachInode(p []byte, fn func(*metapb.Inode) error) error {
	it, err := s.src().NewIter(&pebble.IterOptions{LowerBound: p, UpperBound: prefixEnd(p)})
	if err != nil {
		return err
	}
	for it.First(); it.Valid(); it.Next() {
		in := &metapb.Inode{}
		if err := proto.Unmarshal(it.Value(), in); err != nil {
			_ = it.Close()
			return fmt.Errorf("metad: inode key %x: %w", it.Key(), err)
		}
		if err := fn(in); err != nil {
			_ = it.Close()
			return err
		}
	}
	return it.Close()
}
