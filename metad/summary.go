package metad

import (
	"context"
	"errors"
	"fmt"
	"io/fs"

	"github.com/cockroachdb/pebble/v2"
	"google.golang.org/protobuf/proto"

	"cairn"
	"cairn/metad/metapb"
)

// ContentSummary counts a subtree (du, count) on one Pebble snapshot, so
// the figures are those of one moment. It walks each directory with an
// iterator, holding one per level, never a directory whole. As in HDFS a
// non-superuser needs read and search permission on every directory of
// the subtree; files and directories count the subtree's root too, and
// anything that is not a directory counts as a file.
func (m *Metad) ContentSummary(ctx context.Context, path string) (cairn.ContentSummary, error) {
	const op = "metad.ContentSummary"
	c, err := m.callerOf(ctx, op)
	if err != nil {
		return cairn.ContentSummary{}, err
	}
	root, err := m.walk(op, path, c)
	if err != nil {
		return cairn.ContentSummary{}, err
	}
	snap := m.st.db.NewSnapshot()
	defer snap.Close()
	s := &summer{ctx: ctx, op: op, c: c, snap: snap}
	// The root as the snapshot has it: it may have changed since walk.
	if root, err = s.inode(root.Id); err != nil {
		if isNotFound(err) {
			return cairn.ContentSummary{}, cairn.E(op, cairn.KindNotExist, path, "")
		}
		return cairn.ContentSummary{}, err
	}
	if err := s.add(path, root); err != nil {
		return cairn.ContentSummary{}, err
	}
	return s.cs, nil
}

type summer struct {
	ctx  context.Context
	op   string
	c    *caller
	snap *pebble.Snapshot
	cs   cairn.ContentSummary
	seen int
}

func (s *summer) inode(ino uint64) (*metapb.Inode, error) {
	v, closer, err := s.snap.Get(inodeKey(ino))
	if err != nil {
		return nil, err
	}
	defer closer.Close()
	in := &metapb.Inode{}
	if err := proto.Unmarshal(v, in); err != nil {
		return nil, fmt.Errorf("metad: inode %d: %w", ino, err)
	}
	return in, nil
}

func (s *summer) add(path string, in *metapb.Inode) error {
	if s.seen++; s.seen%4096 == 0 && s.ctx.Err() != nil {
		return cairn.E(s.op, cairn.KindUnavailable, path, "the caller went away: "+s.ctx.Err().Error())
	}
	mode := fs.FileMode(in.Mode)
	if !mode.IsDir() {
		s.cs.Files++
		if mode.IsRegular() {
			s.cs.Length += in.Size
			s.cs.SpaceConsumed += in.Size * int64(in.Replication)
		}
		return nil
	}
	s.cs.Dirs++
	if err := s.c.check(s.op, path, in, accessRead|accessExec); err != nil {
		return err
	}
	p := entryPrefix(in.Id)
	it, err := s.snap.NewIter(&pebble.IterOptions{LowerBound: p, UpperBound: prefixEnd(p)})
	if err != nil {
		return err
	}
	defer it.Close()
	for it.First(); it.Valid(); it.Next() {
		ino, err := parseU64(it.Value())
		if err != nil {
			return err
		}
		kin, err := s.inode(ino)
		if err != nil {
			if errors.Is(err, pebble.ErrNotFound) {
				return fmt.Errorf("metad: entry %s/%s names inode %d, which is missing", path, it.Key()[len(p):], ino)
			}
			return err
		}
		if err := s.add(cairn.Join(path, kin.Name), kin); err != nil {
			return err
		}
	}
	return it.Error()
}
