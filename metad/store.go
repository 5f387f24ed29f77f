package metad

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"sync"
	"sync/atomic"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
	"google.golang.org/protobuf/proto"

	"cairn"
	"cairn/metad/metapb"
)

// store is the namespace in Pebble. Mutations run one at a time under mu,
// apply their batch without syncing, and are acknowledged only after a WAL
// sync done outside mu (commit), so concurrent mutations share syncs.
//
// Block IDs and generation stamps are handed out from ranges reserved
// ahead in the store (blkLimit, gsLimit: the "block" and "genstamp"
// counters), so a batch that hands one out need not be synced by itself
// (AddBlock): were it lost in a crash, the restarted metad still starts
// above every ID and stamp any blockd may have seen.
type store struct {
	db *pebble.DB

	mu       sync.Mutex // serialises mutations and guards the counters
	nextIno  uint64
	nextBlk  uint64
	nextGS   uint64
	numFiles int64 // inodes in use
	// blkLimit and gsLimit are the stored counters: no block ID or stamp
	// at or above them was handed out. Extending them takes a synced batch.
	blkLimit uint64
	gsLimit  uint64
	// limitsUnsynced counts batches that extended the limits and are not
	// synced yet; while any is, every batch is synced.
	limitsUnsynced int
	// walSince is how many bytes of batches went to the WAL since metad
	// last looked at its size (storegc.go).
	walSince int64

	// The leader's entries in flight and their overlay (overlay.go);
	// guarded by mu but overlayOwner, which src reads without it.
	overlay        *pebble.Batch
	overlayOwner   atomic.Int64
	inflight       []*inflight
	pipelineBroken bool   // an entry failed: nothing is proposed until resetPipeline
	pipelineGen    uint64 // resets so far
	pipelineTerm   uint64 // the Raft term of the last reset
	pipelineBase   uint64 // the applied index at the last reset
	pipelineSeq    uint64 // entries proposed since

	closeOnce sync.Once
	closeErr  error
}

// storeOptions are the Pebble options of the namespace store. cacheBytes
// bounds the block cache, the part of metad's memory that grows with the
// namespace until it reaches the bound.
func storeOptions(cacheBytes int64) *pebble.Options {
	return &pebble.Options{
		Logger:       quietPebble{},
		CacheSize:    cacheBytes,
		MemTableSize: 16 << 20,
		// The store is made by Format (or a restore), never by Open: a
		// missing store is a lost namespace, not an empty one.
		ErrorIfNotExists: true,
	}
}

// DefaultCacheSize is the default bound of the store's block cache.
const DefaultCacheSize = 64 << 20

// openStore opens the namespace store in dir, which create makes if it
// does not exist, on fsys (nil: the disk; tests pass a crashable memory
// file system to cut the store at a crash point).
func openStore(dir string, create bool, cacheBytes int64, fsys vfs.FS) (*store, error) {
	return openStoreAs(dir, create, false, cacheBytes, fsys)
}

// openReplicaStore opens the store of a member of a metad group, making
// an empty one (no root, no counters: the namespace arrives through the
// Raft log, raftfsm.go) when there is none.
func openReplicaStore(dir string, cacheBytes int64) (*store, error) {
	return openStoreAs(dir, true, true, cacheBytes, nil)
}

func openStoreAs(dir string, create, replica bool, cacheBytes int64, fsys vfs.FS) (*store, error) {
	opts := storeOptions(cacheBytes)
	opts.ErrorIfNotExists = !create
	if fsys != nil {
		opts.FS = fsys
	}
	db, err := pebble.Open(dir, opts)
	if err != nil {
		if !create && fsys == nil && !hasManifest(dir) {
			return nil, fmt.Errorf("the namespace store %s is missing: format the directory (--format) or restore a checkpoint (--restore)", dir)
		}
		return nil, fmt.Errorf("open pebble in %s: %w", dir, err)
	}
	s := &store{db: db}
	if replica {
		if _, err := s.get(layoutKey); isNotFound(err) {
			return s, nil // empty until the first entry is applied
		}
	}
	if err := s.init(); err != nil {
		_ = db.Close()
		return nil, err
	}
	return s, nil
}

// hasManifest reports whether dir holds a Pebble store.
func hasManifest(dir string) bool {
	m, _ := filepath.Glob(filepath.Join(dir, "MANIFEST-*"))
	return len(m) > 0
}

// init checks the layout version and loads the counters, creating the root
// on a new store and upgrading an older layout.
func (s *store) init() error {
	v, err := s.get(layoutKey)
	switch {
	case errors.Is(err, pebble.ErrNotFound):
		return s.create()
	case err != nil:
		return err
	case len(v) != 4:
		return fmt.Errorf("metad: layout version record of %d bytes", len(v))
	}
	lv := binary.BigEndian.Uint32(v)
	if lv > LayoutVersion {
		return fmt.Errorf("metad: the store has layout version %d, newer than this metad's %d: run a newer cairn", lv, LayoutVersion)
	}
	if lv < 1 {
		return fmt.Errorf("metad: the store has layout version %d, which no cairn wrote", lv)
	}
	if err := s.loadCounters(); err != nil {
		return err
	}
	if lv == 1 {
		err = s.upgradeV1()
	}
	if lv > 1 && lv < LayoutVersion {
		err = s.upgradeVersion()
	}
	if err != nil {
		return err
	}
	return s.countSubdirs()
}

// upgradeVersion brings a layout 2 or 3 store to the current layout. Layout
// 3 added keys a layout 2 store cannot hold ("o", the recovery holder);
// layout 4 the "l" keys and the inode's nlink, whose absence means one
// name, as every file of an older store has. So it records the new
// version, nothing more.
func (s *store) upgradeVersion() error {
	v := binary.BigEndian.AppendUint32(nil, LayoutVersion)
	if err := s.db.Set(layoutKey, v, pebble.Sync); err != nil {
		return fmt.Errorf("metad: upgrade store to layout %d: %w", LayoutVersion, err)
	}
	return nil
}

// upgradeV1 brings a layout 1 store to the current layout: it indexes the
// files being written under "w" (layout 1 had no xattrs, so "x" needs
// nothing, nor orphans, so "o" neither).
func (s *store) upgradeV1() error {
	b := s.db.NewBatch()
	defer b.Close()
	p := []byte{prefixInode}
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: p, UpperBound: prefixEnd(p)})
	if err != nil {
		return err
	}
	for it.First(); it.Valid(); it.Next() {
		in := &metapb.Inode{}
		if err := proto.Unmarshal(it.Value(), in); err != nil {
			_ = it.Close()
			return fmt.Errorf("metad: upgrade: inode key %x: %w", it.Key(), err)
		}
		if in.LeaseHolder != "" && fs.FileMode(in.Mode).IsRegular() {
			_ = b.Set(writingKey(in.Id), []byte(in.LeaseHolder), nil)
		}
	}
	if err := it.Close(); err != nil {
		return err
	}
	_ = b.Set(layoutKey, binary.BigEndian.AppendUint32(nil, LayoutVersion), nil)
	if err := b.Commit(pebble.Sync); err != nil {
		return fmt.Errorf("metad: upgrade store to layout %d: %w", LayoutVersion, err)
	}
	return nil
}

// loadCounters reads the counters from the store: the next inode number,
// and block IDs and stamps from the reserved limits (no ID at or above
// them was handed out). Caller holds mu, or has the store to itself.
func (s *store) loadCounters() error {
	var err error
	for _, c := range []struct {
		name string
		dst  *uint64
	}{{"inode", &s.nextIno}, {"block", &s.nextBlk}, {"genstamp", &s.nextGS}} {
		if *c.dst, err = s.counter(c.name); err != nil {
			return err
		}
	}
	s.blkLimit, s.gsLimit = s.nextBlk, s.nextGS
	files, err := s.counter("files")
	if err != nil {
		return err
	}
	s.numFiles = int64(files)
	s.limitsUnsynced = 0
	return nil
}

func (s *store) create() error {
	b := s.db.NewBatch()
	defer b.Close()
	_ = b.Set(layoutKey, binary.BigEndian.AppendUint32(nil, LayoutVersion), nil)
	_ = b.Set(subdirsKey, binary.BigEndian.AppendUint32(nil, 1), nil)
	root := &metapb.Inode{Id: RootIno, Mode: uint32(fs.ModeDir | 0o755), Owner: currentUser(), Group: currentGroup(), MtimeNs: nowNanos()}
	root.AtimeNs, root.CtimeNs = root.MtimeNs, root.MtimeNs
	if err := setInode(b, root); err != nil {
		return err
	}
	s.nextIno, s.nextBlk, s.nextGS, s.numFiles = RootIno+1, 1<<30, 1000, 1
	s.blkLimit, s.gsLimit = s.nextBlk, s.nextGS
	s.putCounters(b, [4]uint64{})
	if err := b.Commit(pebble.Sync); err != nil {
		return fmt.Errorf("metad: create store: %w", err)
	}
	return nil
}

// counters returns the stored counters' values, in the order putCounters
// takes them.
func (s *store) counters() [4]uint64 {
	return [4]uint64{s.nextIno, s.blkLimit, s.gsLimit, uint64(s.numFiles)}
}

// idReserve is how many block IDs (and stamps) one extension of the
// stored limits reserves; a restart skips at most that many.
const idReserve = 1024

// counterState is everything a failed batch rolls back.
type counterState struct {
	nextIno, nextBlk, nextGS, blkLimit, gsLimit uint64
	numFiles                                    int64
}

func (s *store) saveCounters() counterState {
	return counterState{s.nextIno, s.nextBlk, s.nextGS, s.blkLimit, s.gsLimit, s.numFiles}
}

func (s *store) restoreCounters(c counterState) {
	s.nextIno, s.nextBlk, s.nextGS, s.blkLimit, s.gsLimit, s.numFiles = c.nextIno, c.nextBlk, c.nextGS, c.blkLimit, c.gsLimit, c.numFiles
}

// reserve extends the stored limits past the block IDs and stamps handed
// out, by idReserve, and reports whether it did: the batch must then be
// synced before any of them leaves metad.
func (s *store) reserve() bool {
	extended := false
	if s.nextBlk > s.blkLimit {
		s.blkLimit, extended = s.nextBlk+idReserve, true
	}
	if s.nextGS > s.gsLimit {
		s.gsLimit, extended = s.nextGS+idReserve, true
	}
	return extended
}

// putCounters writes to b the counters whose values differ from was.
func (s *store) putCounters(b *pebble.Batch, was [4]uint64) {
	for i, name := range [4]string{"inode", "block", "genstamp", "files"} {
		if v := s.counters()[i]; v != was[i] {
			_ = b.Set(counterKey(name), u64(v), nil)
		}
	}
}

func (s *store) counter(name string) (uint64, error) {
	v, err := s.get(counterKey(name))
	if err != nil {
		return 0, fmt.Errorf("metad: counter %s: %w", name, err)
	}
	return parseU64(v)
}

// close closes the store; closing it again does nothing.
func (s *store) close() error {
	s.closeOnce.Do(func() { s.closeErr = s.db.Close() })
	return s.closeErr
}

// get returns a copy of key's value.
func (s *store) get(key []byte) ([]byte, error) {
	v, closer, err := s.src().Get(key)
	if err != nil {
		return nil, err
	}
	out := append([]byte(nil), v...)
	return out, closer.Close()
}

func (s *store) inode(ino uint64) (*metapb.Inode, error) {
	v, err := s.get(inodeKey(ino))
	if err != nil {
		if errors.Is(err, pebble.ErrNotFound) {
			return nil, fmt.Errorf("metad: inode %d missing: %w", ino, err)
		}
		return nil, err
	}
	in := &metapb.Inode{}
	if err := proto.Unmarshal(v, in); err != nil {
		return nil, fmt.Errorf("metad: inode %d: %w", ino, err)
	}
	return in, nil
}

// setInode writes in to the batch. It also keeps the "w" index of files
// being written in step with in.LeaseHolder, so every writer of an inode
// maintains it, and drops a pending claim (Creator) once anyone holds the
// lease.
func setInode(b *pebble.Batch, in *metapb.Inode) error {
	if in.LeaseHolder != "" {
		in.Creator = "" // a claim is for a file nobody holds
	}
	v, err := proto.Marshal(in)
	if err != nil {
		return fmt.Errorf("metad: encode inode %d: %w", in.Id, err)
	}
	if err := b.Set(inodeKey(in.Id), v, nil); err != nil {
		return err
	}
	if !fs.FileMode(in.Mode).IsRegular() {
		return nil
	}
	if in.LeaseHolder != "" {
		return b.Set(writingKey(in.Id), []byte(in.LeaseHolder), nil)
	}
	return b.Delete(writingKey(in.Id), nil)
}

// lookup returns the child inode number of name in dir, or 0.
func (s *store) lookup(dir uint64, name string) (uint64, error) {
	v, err := s.get(entryKey(dir, name))
	if errors.Is(err, pebble.ErrNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	return parseU64(v)
}

// fileBlocks returns a file's blocks in order.
func (s *store) fileBlocks(ino uint64) ([]cairn.Block, error) {
	p := filePrefix(ino)
	it, err := s.src().NewIter(&pebble.IterOptions{LowerBound: p, UpperBound: prefixEnd(p)})
	if err != nil {
		return nil, err
	}
	var out []cairn.Block
	for it.First(); it.Valid(); it.Next() {
		b, err := decodeBlock(it.Value())
		if err != nil {
			_ = it.Close()
			return nil, err
		}
		out = append(out, b)
	}
	return out, it.Close()
}

// fileBlock finds block id among the n blocks of file ino. A file's
// blocks are handed out in order, from a counter that only grows (AddBlock
// writes "f" keys only at the file's end), so their IDs usually rise with
// their index and a binary search over the index finds it in O(log n)
// reads. A file where that does not hold (a concat of sources older than
// the target, or out of their age order: concat.go) is still answered
// right, by reading every block.
func (s *store) fileBlock(ino uint64, n uint32, id cairn.BlockID) (cairn.Block, bool, error) {
	get := func(key []byte) ([]byte, bool, error) {
		v, err := s.get(key)
		if isNotFound(err) {
			return nil, false, nil
		}
		return v, err == nil, err
	}
	return searchFileBlock(get, func() ([]cairn.Block, error) { return s.fileBlocks(ino) }, ino, 0, n, id)
}

// searchFileBlock is fileBlock's search among the blocks of indexes lo to
// hi-1 (the rest being known not to hold id), reading keys with get (a
// missing key is nil, false, nil) and, when the records are not as the
// search expects, every block of the file with scan.
func searchFileBlock(get func([]byte) ([]byte, bool, error), scan func() ([]cairn.Block, error), ino uint64, lo, hi uint32, id cairn.BlockID) (cairn.Block, bool, error) {
	for lo < hi {
		mid := lo + (hi-lo)/2
		v, found, err := get(fileBlockKey(ino, mid))
		if err != nil {
			return cairn.Block{}, false, err
		}
		if !found {
			break // fewer records than the inode says: read them all
		}
		b, err := decodeBlock(v)
		if err != nil {
			return cairn.Block{}, false, err
		}
		switch {
		case b.ID == id:
			return b, true, nil
		case b.ID < id:
			lo = mid + 1
		default:
			hi = mid
		}
	}
	blocks, err := scan()
	if err != nil {
		return cairn.Block{}, false, err
	}
	for _, b := range blocks {
		if b.ID == id {
			return b, true, nil
		}
	}
	return cairn.Block{}, false, nil
}

// reader reads point keys through one iterator: one consistent view of the
// store, without the iterator a Get builds for each key.
type reader struct{ it *pebble.Iterator }

func (s *store) newReader() (*reader, error) {
	it, err := s.src().NewIter(nil)
	if err != nil {
		return nil, err
	}
	return &reader{it: it}, nil
}

func (r *reader) close() { _ = r.it.Close() }

// get returns key's value, valid until the next call, or nil, false.
func (r *reader) get(key []byte) ([]byte, bool) {
	if r.it.SeekGE(key) && bytes.Equal(r.it.Key(), key) {
		return r.it.Value(), true
	}
	return nil, false
}

func (r *reader) inode(ino uint64) (*metapb.Inode, error) {
	v, ok := r.get(inodeKey(ino))
	if !ok {
		if err := r.it.Error(); err != nil {
			return nil, err
		}
		return nil, fmt.Errorf("metad: inode %d missing: %w", ino, pebble.ErrNotFound)
	}
	in := &metapb.Inode{}
	if err := proto.Unmarshal(v, in); err != nil {
		return nil, fmt.Errorf("metad: inode %d: %w", ino, err)
	}
	return in, nil
}

// lookup returns the child inode number of name in dir, or 0.
func (r *reader) lookup(dir uint64, name string) (uint64, error) {
	v, ok := r.get(entryKey(dir, name))
	if !ok {
		return 0, r.it.Error()
	}
	return parseU64(v)
}

// quietPebble sends Pebble's own log lines nowhere but errors to zap.
type quietPebble struct{}

func (quietPebble) Infof(string, ...interface{}) {}
func (quietPebble) Errorf(format string, args ...interface{}) {
	pebbleLog.Sugar().Errorf(format, args...)
}
func (quietPebble) Fatalf(format string, args ...interface{}) {
	pebbleLog.Sugar().Fatalf(format, args...)
}
