package metad

import (
	"context"
	"fmt"
	"io/fs"
	"slices"
	"strings"

	"github.com/cockroachdb/pebble/v2"
	"go.uber.org/zap"

	"cairn"
	"cairn/metad/metapb"
)

// Orphans: a file unlinked while it is open. POSIX keeps an unlinked file's
// data until its last open handle is closed; so does metad. When the last
// name of a file goes while a writer holds its lease, or while a client
// that has it open unlinks it naming itself a holder (Unlink), the inode
// stays, with no parent (Parent 0), under an "o" key that lists the
// holders other than the writer. The writer keeps writing by inode
// number (WriterRef); readers read by inode number (FileRef). The orphan
// is freed, blocks and all, when its writer closes it (or lease recovery
// does) and its last holder releases it (Release) or stops renewing its
// lease (the lease monitor).
//
// A file with several names (hard links) is an orphan only once its last
// name is gone. A holder that unlinks one of its names while others stay
// is recorded under the "o" key all the same, so the file outlives a
// later removal of its last name (by any client) until that holder
// releases it; the key goes when its last holder does, or becomes the
// orphan's.

// orphanHolders returns the holders recorded for orphan ino.
func (s *store) orphanHolders(ino uint64) ([]string, bool, error) {
	v, err := s.get(orphanKey(ino))
	if isNotFound(err) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	if len(v) == 0 {
		return nil, true, nil
	}
	return strings.Split(string(v), "\n"), true, nil
}

func setOrphan(b *pebble.Batch, ino uint64, holders []string) error {
	return b.Set(orphanKey(ino), []byte(strings.Join(holders, "\n")), nil)
}

// orphan turns in, a file whose last name was just deleted in b, into an
// orphan when it is open: written (a lease), held by holder, or by a
// holder recorded when it unlinked another name. It reports whether it
// did; if not, the caller frees the file. Caller holds the lock.
func (m *Metad) orphan(b *pebble.Batch, in *metapb.Inode, holder string) (bool, error) {
	if !fs.FileMode(in.Mode).IsRegular() {
		return false, nil
	}
	holders, _, err := m.st.orphanHolders(in.Id)
	if err != nil {
		return false, err
	}
	if in.LeaseHolder == "" && holder == "" && len(holders) == 0 {
		return false, nil
	}
	if holder != "" && !slices.Contains(holders, holder) {
		holders = append(holders, holder)
	}
	in.Parent, in.Nlink = 0, 0
	if err := setInode(b, in); err != nil {
		return false, err
	}
	return true, setOrphan(b, in.Id, holders)
}

// hold records holder as holding in, a file that keeps other names after
// holder unlinked one of them; nothing without a holder. Caller holds the
// lock.
func (m *Metad) hold(b *pebble.Batch, in *metapb.Inode, holder string) error {
	if holder == "" || !fs.FileMode(in.Mode).IsRegular() {
		return nil
	}
	holders, _, err := m.st.orphanHolders(in.Id)
	if err != nil || slices.Contains(holders, holder) {
		return err
	}
	return setOrphan(b, in.Id, append(holders, holder))
}

// freeOrphan deletes in, an orphan nobody writes, once no holder is left;
// it returns the blocks to free once b is durable. Caller holds the lock.
func (m *Metad) freeOrphan(b *pebble.Batch, in *metapb.Inode) ([]cairn.Block, error) {
	holders, _, err := m.st.orphanHolders(in.Id)
	if err != nil {
		return nil, err
	}
	if len(holders) > 0 || in.LeaseHolder != "" {
		return nil, setInode(b, in)
	}
	return m.freeOrphanNow(b, in)
}

// Release ends holder's hold on fileID, an unlinked file it had open: the
// last close of its handles. The file is freed when nobody holds or
// writes it any more. Releasing a file that is not an orphan (it was
// never unlinked, or is already freed) does nothing.
func (m *Metad) Release(ctx context.Context, fileID uint64, holder string) error {
	const op = "metad.Release"
	if err := validClient(op, "", holder); err != nil {
		return err
	}
	var freed []cairn.Block
	err := m.mutate(ctx, func(b *pebble.Batch) error {
		holders, ok, err := m.st.orphanHolders(fileID)
		if err != nil || !ok {
			return err
		}
		i := slices.Index(holders, holder)
		if i < 0 {
			return nil
		}
		holders = slices.Delete(holders, i, i+1)
		in, err := m.st.inode(fileID)
		if err != nil {
			return err
		}
		if in.Parent != 0 { // still has names: only the hold ends
			if len(holders) == 0 {
				return b.Delete(orphanKey(fileID), nil)
			}
			return setOrphan(b, fileID, holders)
		}
		if err := setOrphan(b, fileID, holders); err != nil {
			return err
		}
		if len(holders) == 0 && in.LeaseHolder == "" {
			freed, err = m.freeOrphanNow(b, in)
		}
		return err
	})
	if err == nil && len(freed) > 0 {
		m.blocks.free(freed)
		m.log.Info("unlinked file freed at its last close", zap.Uint64("inode", fileID), zap.Int("blocks", len(freed)))
	}
	return err
}

// freeOrphanNow frees in whatever holders the store still lists (in b they
// were just removed).
func (m *Metad) freeOrphanNow(b *pebble.Batch, in *metapb.Inode) ([]cairn.Block, error) {
	_ = b.Delete(orphanKey(in.Id), nil)
	_ = b.Delete(inodeKey(in.Id), nil)
	_ = b.Delete(writingKey(in.Id), nil)
	m.st.numFiles--
	if in.Xattrs > 0 {
		if err := deletePrefix(m.st.src(), b, xattrPrefix(in.Id)); err != nil {
			return nil, err
		}
	}
	blocks, err := m.st.fileBlocks(in.Id)
	if err != nil {
		return nil, err
	}
	for i, blk := range blocks {
		_ = b.Delete(fileBlockKey(in.Id, uint32(i)), nil)
		_ = b.Delete(blockKey(blk.ID), nil)
	}
	return blocks, nil
}

// releaseExpiredHolders drops the holders of orphans that stopped renewing
// their leases (past the hard limit), freeing the orphans nobody holds
// any more; it reports how many it freed.
func (m *Metad) releaseExpiredHolders() (int, error) {
	p := []byte{prefixOrphan}
	it, err := m.st.src().NewIter(&pebble.IterOptions{LowerBound: p, UpperBound: prefixEnd(p)})
	if err != nil {
		return 0, err
	}
	type due struct {
		ino    uint64
		holder string
	}
	var todo []due
	for it.First(); it.Valid() && len(todo) < maxRecoveriesPerSweep; it.Next() {
		ino, err := parseU64(it.Key()[1:])
		if err != nil || len(it.Value()) == 0 {
			continue
		}
		for _, h := range strings.Split(string(it.Value()), "\n") {
			if m.leases.hardExpired(h) {
				todo = append(todo, due{ino, h})
			}
		}
	}
	if err := it.Close(); err != nil {
		return 0, err
	}
	n := 0
	for _, d := range todo {
		if err := m.Release(context.Background(), d.ino, d.holder); err != nil {
			return n, fmt.Errorf("release orphan %d of %s: %w", d.ino, d.holder, err)
		}
		n++
	}
	return n, nil
}
