package metad

import (
	"bytes"
	"context"
	"fmt"
	"io/fs"

	"github.com/cockroachdb/pebble/v2"

	"cairn"
	"cairn/metad/metapb"
)

// Hard links. A directory has one name: its inode's Parent and Name. A
// non-directory may have several: Parent and Name are its primary name,
// each other name is an entry plus an "l" key (ino, parent, name), and
// Nlink counts them all. Removing the primary name promotes another one;
// removing the last makes the file an orphan if it is open (orphan.go),
// else frees it.

// maxLinks bounds a file's names, as ext4 does.
const maxLinks = 65000

// nlink returns in's number of names: 0 for an orphan, and 1 for a record
// with a parent that does not count them (written before layout 4).
func nlink(in *metapb.Inode) uint32 {
	switch {
	case in.Parent == 0 && in.Id != RootIno:
		return 0
	case in.Nlink == 0:
		return 1
	}
	return in.Nlink
}

// nameEdits edits the names of inodes within one batch. A batch cannot be read
// back, so the inodes it changed and the "l" keys it removed are kept
// here, for a batch that removes several names of one file (a recursive
// delete).
type nameEdits struct {
	m       *Metad
	b       *pebble.Batch
	inodes  map[uint64]*metapb.Inode
	dropped map[string]bool
}

func (m *Metad) nameEdits(b *pebble.Batch) *nameEdits {
	return &nameEdits{m: m, b: b, inodes: map[uint64]*metapb.Inode{}, dropped: map[string]bool{}}
}

// current returns the batch's version of in.
func (n *nameEdits) current(in *metapb.Inode) *metapb.Inode {
	if cur, ok := n.inodes[in.Id]; ok {
		return cur
	}
	n.inodes[in.Id] = in
	return in
}

// drop removes the name (dir, name) of in, a non-directory, whose entry
// the caller deletes, and returns how many names in has left. in is
// changed, not written: the caller writes it (or frees it).
func (n *nameEdits) drop(in *metapb.Inode, dir uint64, name string) (uint32, error) {
	links := nlink(in)
	in.CtimeNs = n.m.clock.Now().UnixNano() // a name less is a change of the inode
	if in.Parent != dir || in.Name != name {
		k := linkKey(in.Id, dir, name)
		_ = n.b.Delete(k, nil)
		n.dropped[string(k)] = true
		in.Nlink = links - 1
		return in.Nlink, nil
	}
	if links <= 1 {
		in.Parent, in.Nlink = 0, 0
		return 0, nil
	}
	k, err := n.anyOther(in.Id)
	if err != nil {
		return 0, err
	}
	if k == nil {
		return 0, fmt.Errorf("metad: inode %d counts %d names but has no other name recorded", in.Id, links)
	}
	parent, pname, _ := parseLinkKey(k)
	_ = n.b.Delete(k, nil)
	n.dropped[string(k)] = true
	in.Parent, in.Name, in.Nlink = parent, pname, links-1
	return in.Nlink, nil
}

// anyOther returns the first "l" key of ino the batch has not removed.
func (n *nameEdits) anyOther(ino uint64) ([]byte, error) {
	p := linkPrefix(ino)
	it, err := n.m.st.src().NewIter(&pebble.IterOptions{LowerBound: p, UpperBound: prefixEnd(p)})
	if err != nil {
		return nil, err
	}
	defer it.Close()
	for it.First(); it.Valid(); it.Next() {
		if !n.dropped[string(it.Key())] {
			return bytes.Clone(it.Key()), nil
		}
	}
	return nil, it.Error()
}

// move renames in's name (sp, sname) to (dp, dname); the caller moves the
// entry.
func (n *nameEdits) move(in *metapb.Inode, sp uint64, sname string, dp uint64, dname string) {
	if fs.FileMode(in.Mode).IsDir() || in.Parent == sp && in.Name == sname {
		in.Parent, in.Name = dp, dname
		return
	}
	k := linkKey(in.Id, sp, sname)
	_ = n.b.Delete(k, nil)
	n.dropped[string(k)] = true
	_ = n.b.Set(linkKey(in.Id, dp, dname), nil, nil)
}

// Link makes dst another name of the file at src. The caller needs search
// permission on both paths and write permission on dst's directory, as
// link(2) asks (protected_hardlinks, which asks more, is the kernel's).
func (m *Metad) Link(ctx context.Context, src, dst string) error {
	const op = "metad.Link"
	c, err := m.callerOf(ctx, op)
	if err != nil {
		return err
	}
	return m.mutate(ctx, func(b *pebble.Batch) error {
		in, err := m.walk(op, src, c)
		if err != nil {
			return err
		}
		if fs.FileMode(in.Mode).IsDir() {
			return cairn.E(op, cairn.KindPermission, src, "a directory cannot have another name (hard link)")
		}
		dp, dname, err := m.makeEntry(op, dst, c)
		if err != nil {
			return err
		}
		links := nlink(in)
		if links >= maxLinks {
			return cairn.E(op, cairn.KindPermission, src, fmt.Sprintf("the file has %d names, the most it may have", links))
		}
		now := m.clock.Now().UnixNano()
		in.Nlink = links + 1
		in.CtimeNs = now
		if err := setInode(b, in); err != nil {
			return err
		}
		_ = b.Set(linkKey(in.Id, dp.Id, dname), nil, nil)
		_ = b.Set(entryKey(dp.Id, dname), u64(in.Id), nil)
		dirChanged(dp, now)
		return setInode(b, dp)
	})
}
