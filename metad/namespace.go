package metad

import (
	"context"
	"fmt"
	"io/fs"
	"strings"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"go.uber.org/zap"

	"cairn"
	"cairn/metad/metapb"
)

var _ cairn.Namespace = (*Metad)(nil)

func nowNanos() int64 { return time.Now().UnixNano() }

// mutate runs fn under the store's lock with a fresh batch, applies the
// batch without syncing, releases the lock and then syncs the WAL, so the
// caller is answered only once the change is durable and concurrent
// mutations share one sync (group commit). If fn fails, nothing changes.
func (m *Metad) mutate(fn func(b *pebble.Batch) error) error {
	s := m.st
	s.mu.Lock()
	saved := [4]uint64{s.nextIno, s.nextBlk, s.nextGS, uint64(s.numFiles)}
	b := s.db.NewBatch()
	err := fn(b)
	if err == nil {
		s.putCounters(b)
		err = b.Commit(pebble.NoSync)
	}
	_ = b.Close()
	if err != nil {
		s.nextIno, s.nextBlk, s.nextGS, s.numFiles = saved[0], saved[1], saved[2], int64(saved[3])
		s.mu.Unlock()
		return err
	}
	s.mu.Unlock()
	if err := s.db.LogData(nil, pebble.Sync); err != nil {
		return fmt.Errorf("metad: sync WAL: %w", err)
	}
	return nil
}

// resolve walks path from the root.
func (m *Metad) resolve(op, path string) (*metapb.Inode, error) {
	if err := cairn.ValidatePath(path); err != nil {
		return nil, err
	}
	in, err := m.st.inode(RootIno)
	if err != nil {
		return nil, err
	}
	if path == "/" {
		return in, nil
	}
	walked := ""
	for _, name := range strings.Split(path[1:], "/") {
		if !fs.FileMode(in.Mode).IsDir() {
			return nil, cairn.E(op, cairn.KindNotDir, path, fmt.Sprintf("%s is not a directory", orRoot(walked)))
		}
		ino, err := m.st.lookup(in.Id, name)
		if err != nil {
			return nil, err
		}
		walked += "/" + name
		if ino == 0 {
			return nil, cairn.E(op, cairn.KindNotExist, path, "")
		}
		if in, err = m.st.inode(ino); err != nil {
			return nil, err
		}
	}
	return in, nil
}

func orRoot(p string) string {
	if p == "" {
		return "/"
	}
	return p
}

// resolveParent returns the directory that holds path's last name.
func (m *Metad) resolveParent(op, path string) (*metapb.Inode, string, error) {
	if err := cairn.ValidatePath(path); err != nil {
		return nil, "", err
	}
	if path == "/" {
		return nil, "", cairn.E(op, cairn.KindInvalid, path, "not allowed on the root")
	}
	dir, name := cairn.Split(path)
	parent, err := m.resolve(op, dir)
	if err != nil {
		if cairn.KindOf(err) == cairn.KindNotExist {
			return nil, "", cairn.E(op, cairn.KindNotExist, path, fmt.Sprintf("parent directory %s does not exist", dir))
		}
		return nil, "", err
	}
	if !fs.FileMode(parent.Mode).IsDir() {
		return nil, "", cairn.E(op, cairn.KindNotDir, path, fmt.Sprintf("%s is not a directory", dir))
	}
	return parent, name, nil
}

func (m *Metad) info(in *metapb.Inode) cairn.FileInfo {
	name := in.Name
	if in.Id == RootIno {
		name = "/"
	}
	return cairn.FileInfo{
		Name: name, Inode: in.Id, Mode: fs.FileMode(in.Mode), Size: in.Size,
		Owner: in.Owner, Group: in.Group,
		ModTime: time.Unix(0, in.MtimeNs), AccessTime: time.Unix(0, in.AtimeNs),
		Replication: int(in.Replication), BlockSize: in.BlockSize,
		Writing: in.LeaseHolder != "", Symlink: in.Symlink,
	}
}

// newInode allocates an inode for name in parent. Caller holds the lock.
func (m *Metad) newInode(b *pebble.Batch, parent *metapb.Inode, name string, mode fs.FileMode) (*metapb.Inode, error) {
	s := m.st
	in := &metapb.Inode{
		Id: s.nextIno, Parent: parent.Id, Name: name, Mode: uint32(mode),
		Owner: currentUser(), Group: currentGroup(), MtimeNs: m.clock.Now().UnixNano(),
	}
	in.AtimeNs = in.MtimeNs
	s.nextIno++
	s.numFiles++
	if err := setInode(b, in); err != nil {
		return nil, err
	}
	if err := b.Set(entryKey(parent.Id, name), u64(in.Id), nil); err != nil {
		return nil, err
	}
	parent.MtimeNs = in.MtimeNs
	return in, setInode(b, parent)
}

func (m *Metad) Mkdir(ctx context.Context, path string, perm fs.FileMode) error {
	const op = "metad.Mkdir"
	return m.mutate(func(b *pebble.Batch) error {
		parent, name, err := m.resolveParent(op, path)
		if err != nil {
			return err
		}
		if ino, err := m.st.lookup(parent.Id, name); err != nil {
			return err
		} else if ino != 0 {
			return cairn.E(op, cairn.KindExist, path, "")
		}
		_, err = m.newInode(b, parent, name, fs.ModeDir|perm.Perm())
		return err
	})
}

func (m *Metad) Mkdirs(ctx context.Context, path string, perm fs.FileMode) error {
	const op = "metad.Mkdirs"
	if err := cairn.ValidatePath(path); err != nil {
		return err
	}
	return m.mutate(func(b *pebble.Batch) error {
		dir, err := m.st.inode(RootIno)
		if err != nil {
			return err
		}
		if path == "/" {
			return nil
		}
		created := map[string]*metapb.Inode{} // inodes made in this batch, by path
		walked := ""
		for _, name := range strings.Split(path[1:], "/") {
			walked += "/" + name
			if in, ok := created[walked]; ok {
				dir = in
				continue
			}
			ino, err := m.st.lookup(dir.Id, name)
			if err != nil {
				return err
			}
			if ino == 0 {
				in, err := m.newInode(b, dir, name, fs.ModeDir|perm.Perm())
				if err != nil {
					return err
				}
				created[walked] = in
				dir = in
				continue
			}
			if dir, err = m.st.inode(ino); err != nil {
				return err
			}
			if !fs.FileMode(dir.Mode).IsDir() {
				return cairn.E(op, cairn.KindNotDir, path, fmt.Sprintf("%s exists and is not a directory", walked))
			}
		}
		return nil
	})
}

func (m *Metad) Create(ctx context.Context, path string, o cairn.CreateOptions) (cairn.FileInfo, error) {
	const op = "metad.Create"
	if o.Client == "" {
		return cairn.FileInfo{}, cairn.E(op, cairn.KindInvalid, path, "no client name for the lease")
	}
	if o.Replication < 0 || o.Replication > 64 {
		return cairn.FileInfo{}, cairn.E(op, cairn.KindInvalid, path, fmt.Sprintf("replication %d is outside 1..64", o.Replication))
	}
	if o.BlockSize < 0 || (o.BlockSize > 0 && o.BlockSize < 64<<10) || o.BlockSize > 1<<40 {
		return cairn.FileInfo{}, cairn.E(op, cairn.KindInvalid, path, fmt.Sprintf("block size %d is outside 64 KiB..1 TiB", o.BlockSize))
	}
	var fi cairn.FileInfo
	err := m.mutate(func(b *pebble.Batch) error {
		parent, name, err := m.resolveParent(op, path)
		if err != nil {
			return err
		}
		if ino, err := m.st.lookup(parent.Id, name); err != nil {
			return err
		} else if ino != 0 {
			return cairn.E(op, cairn.KindExist, path, "")
		}
		in, err := m.newInode(b, parent, name, o.Perm.Perm())
		if err != nil {
			return err
		}
		in.Replication = int32(o.Replication)
		if in.Replication == 0 {
			in.Replication = int32(m.cfg.Replication)
		}
		in.BlockSize = o.BlockSize
		if in.BlockSize == 0 {
			in.BlockSize = m.cfg.BlockSize
		}
		in.LeaseHolder = o.Client
		in.LeaseNs = in.MtimeNs
		fi = m.info(in)
		return setInode(b, in)
	})
	return fi, err
}

// writable resolves a file held by client's lease.
func (m *Metad) writable(op, path, client string) (*metapb.Inode, error) {
	in, err := m.resolve(op, path)
	if err != nil {
		return nil, err
	}
	if fs.FileMode(in.Mode).IsDir() {
		return nil, cairn.E(op, cairn.KindIsDir, path, "")
	}
	if in.LeaseHolder == "" {
		return nil, cairn.E(op, cairn.KindPermission, path, "file is not open for writing")
	}
	if in.LeaseHolder != client {
		return nil, cairn.E(op, cairn.KindBusy, path, fmt.Sprintf("lease held by %s", in.LeaseHolder))
	}
	return in, nil
}

// settleLast records the length of the file's last block as the writer
// reports it; the block must be the file's last.
func (m *Metad) settleLast(op, path string, b *pebble.Batch, in *metapb.Inode, last *cairn.Block) error {
	if in.Blocks == 0 {
		if last != nil && last.ID != 0 {
			return cairn.E(op, cairn.KindInvalid, path, fmt.Sprintf("%s: the file has no blocks", last))
		}
		return nil
	}
	key := fileBlockKey(in.Id, in.Blocks-1)
	v, err := m.st.get(key)
	if err != nil {
		return fmt.Errorf("%s: last block of %s: %w", op, path, err)
	}
	cur, err := decodeBlock(v)
	if err != nil {
		return err
	}
	if last == nil || last.ID != cur.ID {
		return cairn.E(op, cairn.KindInvalid, path, fmt.Sprintf("the last block is %s, the writer named %v", cur, last))
	}
	if last.Len < 0 || last.Len > in.BlockSize {
		return cairn.E(op, cairn.KindInvalid, path, fmt.Sprintf("block length %d outside 0..%d", last.Len, in.BlockSize))
	}
	in.Size += last.Len - cur.Len
	cur.Len = last.Len
	return b.Set(key, encodeBlock(cur), nil)
}

func (m *Metad) AddBlock(ctx context.Context, path, client string, prev *cairn.Block) (cairn.LocatedBlock, error) {
	const op = "metad.AddBlock"
	var lb cairn.LocatedBlock
	err := m.mutate(func(b *pebble.Batch) error {
		in, err := m.writable(op, path, client)
		if err != nil {
			return err
		}
		if err := m.settleLast(op, path, b, in, prev); err != nil {
			return err
		}
		if prev != nil && in.Blocks > 0 && prev.Len != in.BlockSize {
			return cairn.E(op, cairn.KindInvalid, path, fmt.Sprintf("%s holds %d bytes; only a full block (%d) may be followed by another", prev, prev.Len, in.BlockSize))
		}
		targets := m.nodes.choose(int(in.Replication), in.BlockSize, m.clock.Now())
		if len(targets) == 0 {
			return cairn.E(op, cairn.KindNoSpace, path, "no live blockd with room for a block")
		}
		s := m.st
		blk := cairn.Block{ID: cairn.BlockID(s.nextBlk), GenStamp: cairn.GenStamp(s.nextGS)}
		s.nextBlk++
		s.nextGS++
		_ = b.Set(fileBlockKey(in.Id, in.Blocks), encodeBlock(blk), nil)
		_ = b.Set(blockKey(blk.ID), u64(in.Id), nil)
		in.Blocks++
		in.LeaseNs = m.clock.Now().UnixNano()
		lb = cairn.LocatedBlock{Block: blk, Offset: in.Size, Locations: targets}
		return setInode(b, in)
	})
	if err == nil {
		m.log.Debug("block allocated", zap.String("path", path), zap.Stringer("block", lb.Block), zap.Int("targets", len(lb.Locations)))
	}
	return lb, err
}

func (m *Metad) Complete(ctx context.Context, path, client string, last *cairn.Block) error {
	const op = "metad.Complete"
	return m.mutate(func(b *pebble.Batch) error {
		in, err := m.writable(op, path, client)
		if err != nil {
			return err
		}
		if err := m.settleLast(op, path, b, in, last); err != nil {
			return err
		}
		blocks, err := m.st.fileBlocks(in.Id)
		if err != nil {
			return err
		}
		if len(blocks) > 0 {
			lastBlk := blocks[len(blocks)-1]
			if last != nil {
				lastBlk = *last
			}
			if m.blocks.replicaCount(lastBlk) == 0 {
				return cairn.E(op, cairn.KindRetry, path, fmt.Sprintf("%s has no reported replica yet", lastBlk))
			}
		}
		in.LeaseHolder = ""
		in.LeaseNs = 0
		in.MtimeNs = m.clock.Now().UnixNano()
		return setInode(b, in)
	})
}

func (m *Metad) Stat(ctx context.Context, path string) (cairn.FileInfo, error) {
	in, err := m.resolve("metad.Stat", path)
	if err != nil {
		return cairn.FileInfo{}, err
	}
	return m.info(in), nil
}

// MaxListPage caps one List reply.
const MaxListPage = 10000

func (m *Metad) List(ctx context.Context, path, after string, limit int) ([]cairn.FileInfo, bool, error) {
	const op = "metad.List"
	dir, err := m.resolve(op, path)
	if err != nil {
		return nil, false, err
	}
	if !fs.FileMode(dir.Mode).IsDir() {
		return nil, false, cairn.E(op, cairn.KindNotDir, path, "")
	}
	if limit <= 0 || limit > MaxListPage {
		limit = MaxListPage
	}
	p := entryPrefix(dir.Id)
	lower := p
	if after != "" {
		lower = append(entryKey(dir.Id, after), 0)
	}
	it, err := m.st.db.NewIter(&pebble.IterOptions{LowerBound: lower, UpperBound: prefixEnd(p)})
	if err != nil {
		return nil, false, err
	}
	defer it.Close()
	var out []cairn.FileInfo
	for it.First(); it.Valid(); it.Next() {
		if len(out) == limit {
			return out, true, nil
		}
		ino, err := parseU64(it.Value())
		if err != nil {
			return nil, false, err
		}
		in, err := m.st.inode(ino)
		if err != nil {
			return nil, false, err
		}
		out = append(out, m.info(in))
	}
	return out, false, it.Error()
}

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

func (m *Metad) Rename(ctx context.Context, src, dst string) error {
	const op = "metad.Rename"
	var freed []cairn.Block
	err := m.mutate(func(b *pebble.Batch) error {
		sp, sname, err := m.resolveParent(op, src)
		if err != nil {
			return err
		}
		dp, dname, err := m.resolveParent(op, dst)
		if err != nil {
			return err
		}
		sino, err := m.st.lookup(sp.Id, sname)
		if err != nil {
			return err
		}
		if sino == 0 {
			return cairn.E(op, cairn.KindNotExist, src, "")
		}
		if src == dst {
			return nil
		}
		sin, err := m.st.inode(sino)
		if err != nil {
			return err
		}
		if fs.FileMode(sin.Mode).IsDir() {
			if in, err := isAncestor(m, sin.Id, dp.Id); err != nil {
				return err
			} else if in {
				return cairn.E(op, cairn.KindInvalid, dst, fmt.Sprintf("cannot move %s into its own subtree", src))
			}
		}
		dino, err := m.st.lookup(dp.Id, dname)
		if err != nil {
			return err
		}
		if dino != 0 {
			din, err := m.st.inode(dino)
			if err != nil {
				return err
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
			if freed, err = m.removeTree(b, din); err != nil {
				return err
			}
		}
		now := m.clock.Now().UnixNano()
		_ = b.Delete(entryKey(sp.Id, sname), nil)
		_ = b.Set(entryKey(dp.Id, dname), u64(sin.Id), nil)
		sin.Parent, sin.Name = dp.Id, dname
		if err := setInode(b, sin); err != nil {
			return err
		}
		sp.MtimeNs = now
		if err := setInode(b, sp); err != nil {
			return err
		}
		if dp.Id != sp.Id {
			dp.MtimeNs = now
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
	it, err := m.st.db.NewIter(&pebble.IterOptions{LowerBound: p, UpperBound: prefixEnd(p)})
	if err != nil {
		return false, err
	}
	empty := !it.First()
	return empty, it.Close()
}

// removeTree deletes in and everything below it, queueing their blocks for
// deletion on the blockds once the batch is durable. Caller holds the lock.
func (m *Metad) removeTree(b *pebble.Batch, in *metapb.Inode) ([]cairn.Block, error) {
	_ = b.Delete(entryKey(in.Parent, in.Name), nil)
	var freed []cairn.Block
	var walk func(in *metapb.Inode) error
	walk = func(in *metapb.Inode) error {
		_ = b.Delete(inodeKey(in.Id), nil)
		m.st.numFiles--
		if fs.FileMode(in.Mode).IsDir() {
			p := entryPrefix(in.Id)
			it, err := m.st.db.NewIter(&pebble.IterOptions{LowerBound: p, UpperBound: prefixEnd(p)})
			if err != nil {
				return err
			}
			var kids []uint64
			for it.First(); it.Valid(); it.Next() {
				ino, err := parseU64(it.Value())
				if err != nil {
					_ = it.Close()
					return err
				}
				kids = append(kids, ino)
				_ = b.Delete(it.Key(), nil)
			}
			if err := it.Close(); err != nil {
				return err
			}
			for _, k := range kids {
				kin, err := m.st.inode(k)
				if err != nil {
					return err
				}
				if err := walk(kin); err != nil {
					return err
				}
			}
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
	if err := walk(in); err != nil {
		return nil, err
	}
	return freed, nil
}

func (m *Metad) Delete(ctx context.Context, path string, recursive bool) error {
	const op = "metad.Delete"
	var freed []cairn.Block
	err := m.mutate(func(b *pebble.Batch) error {
		parent, name, err := m.resolveParent(op, path)
		if err != nil {
			return err
		}
		ino, err := m.st.lookup(parent.Id, name)
		if err != nil {
			return err
		}
		if ino == 0 {
			return cairn.E(op, cairn.KindNotExist, path, "")
		}
		in, err := m.st.inode(ino)
		if err != nil {
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
		if freed, err = m.removeTree(b, in); err != nil {
			return err
		}
		parent.MtimeNs = m.clock.Now().UnixNano()
		return setInode(b, parent)
	})
	if err == nil {
		m.blocks.free(freed)
	}
	return err
}

func (m *Metad) BlockLocations(ctx context.Context, path string) (cairn.FileBlocks, error) {
	const op = "metad.BlockLocations"
	in, err := m.resolve(op, path)
	if err != nil {
		return cairn.FileBlocks{}, err
	}
	if fs.FileMode(in.Mode).IsDir() {
		return cairn.FileBlocks{}, cairn.E(op, cairn.KindIsDir, path, "")
	}
	blocks, err := m.st.fileBlocks(in.Id)
	if err != nil {
		return cairn.FileBlocks{}, err
	}
	fb := cairn.FileBlocks{Size: in.Size, Writing: in.LeaseHolder != ""}
	var off int64
	now := m.clock.Now()
	for _, blk := range blocks {
		fb.Blocks = append(fb.Blocks, cairn.LocatedBlock{Block: blk, Offset: off, Locations: m.liveReplicas(blk, now), Corrupt: m.blocks.corruptCount(blk.ID)})
		off += blk.Len
	}
	return fb, nil
}

func (m *Metad) Statfs(ctx context.Context) (cairn.FsStats, error) {
	st := m.nodes.totals(m.clock.Now())
	m.st.mu.Lock()
	st.Files = m.st.numFiles
	m.st.mu.Unlock()
	st.Blocks = int64(m.blocks.count())
	return st, nil
}

func (m *Metad) Report(ctx context.Context) (cairn.ClusterReport, error) {
	return cairn.ClusterReport{
		NamespaceID:        m.namespaceID,
		DefaultReplication: m.cfg.Replication,
		Nodes:              m.nodes.report(m.clock.Now(), m.blocks),
	}, nil
}
