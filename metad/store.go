package metad

import (
	"errors"
	"fmt"
	"io/fs"
	"sync"

	"github.com/cockroachdb/pebble/v2"
	"google.golang.org/protobuf/proto"

	"cairn"
	"cairn/metad/metapb"
)

// store is the namespace in Pebble. Mutations run one at a time under mu,
// apply their batch without syncing, and are acknowledged only after a WAL
// sync done outside mu (commit), so concurrent mutations share syncs.
type store struct {
	db *pebble.DB

	mu       sync.Mutex // serialises mutations and guards the counters
	nextIno  uint64
	nextBlk  uint64
	nextGS   uint64
	numFiles int64 // inodes in use
}

func openStore(dir string) (*store, error) {
	db, err := pebble.Open(dir, &pebble.Options{Logger: quietPebble{}})
	if err != nil {
		return nil, fmt.Errorf("open pebble in %s: %w", dir, err)
	}
	s := &store{db: db}
	if err := s.init(); err != nil {
		_ = db.Close()
		return nil, err
	}
	return s, nil
}

// init checks the layout version and loads the counters, creating the root
// on a new store.
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
	lv := uint32(v[0])<<24 | uint32(v[1])<<16 | uint32(v[2])<<8 | uint32(v[3])
	if lv > LayoutVersion {
		return fmt.Errorf("metad: the store has layout version %d, newer than this metad's %d: run a newer cairn", lv, LayoutVersion)
	}
	for _, c := range []struct {
		name string
		dst  *uint64
	}{{"inode", &s.nextIno}, {"block", &s.nextBlk}, {"genstamp", &s.nextGS}} {
		if *c.dst, err = s.counter(c.name); err != nil {
			return err
		}
	}
	files, err := s.counter("files")
	s.numFiles = int64(files)
	return err
}

func (s *store) create() error {
	b := s.db.NewBatch()
	defer b.Close()
	_ = b.Set(layoutKey, []byte{0, 0, 0, LayoutVersion}, nil)
	root := &metapb.Inode{Id: RootIno, Mode: uint32(fs.ModeDir | 0o755), Owner: currentUser(), Group: currentGroup(), MtimeNs: nowNanos()}
	if err := setInode(b, root); err != nil {
		return err
	}
	s.nextIno, s.nextBlk, s.nextGS, s.numFiles = RootIno+1, 1<<30, 1000, 1
	s.putCounters(b)
	if err := b.Commit(pebble.Sync); err != nil {
		return fmt.Errorf("metad: create store: %w", err)
	}
	return nil
}

func (s *store) putCounters(b *pebble.Batch) {
	_ = b.Set(counterKey("inode"), u64(s.nextIno), nil)
	_ = b.Set(counterKey("block"), u64(s.nextBlk), nil)
	_ = b.Set(counterKey("genstamp"), u64(s.nextGS), nil)
	_ = b.Set(counterKey("files"), u64(uint64(s.numFiles)), nil)
}

func (s *store) counter(name string) (uint64, error) {
	v, err := s.get(counterKey(name))
	if err != nil {
		return 0, fmt.Errorf("metad: counter %s: %w", name, err)
	}
	return parseU64(v)
}

func (s *store) close() error { return s.db.Close() }

// get returns a copy of key's value.
func (s *store) get(key []byte) ([]byte, error) {
	v, closer, err := s.db.Get(key)
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

func setInode(b *pebble.Batch, in *metapb.Inode) error {
	v, err := proto.Marshal(in)
	if err != nil {
		return fmt.Errorf("metad: encode inode %d: %w", in.Id, err)
	}
	return b.Set(inodeKey(in.Id), v, nil)
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
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: p, UpperBound: prefixEnd(p)})
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

// quietPebble sends Pebble's own log lines nowhere but errors to zap.
type quietPebble struct{}

func (quietPebble) Infof(string, ...interface{}) {}
func (quietPebble) Errorf(format string, args ...interface{}) {
	pebbleLog.Sugar().Errorf(format, args...)
}
func (quietPebble) Fatalf(format string, args ...interface{}) {
	pebbleLog.Sugar().Fatalf(format, args...)
}
