package metad

import (
	"bytes"

	"cairn"
)

// blockLookup finds metad's record of many blocks (a slice of a block
// report, a slice of the replication monitor's candidates) through one
// Pebble iterator, reading each file's inode and its first and last block
// records once. A file's blocks are handed out in order from a counter
// (store.fileBlock), and usually one after another, so a block's index is
// first guessed from where its ID falls between the first and last
// block's: a block then costs two seeks (its "k" key and the guessed
// record), where storedBlock costs a Get (which builds an iterator) for
// its "k" key, its inode and each of the ~log2(n) records of its binary
// search. A wrong guess narrows the binary search. The lookup sees the
// store as it was when it was made, so it is kept for one slice and
// closed.
type blockLookup struct {
	r     *reader
	files map[uint64]*fileOf
}

// fileOf is what judging a block needs of its file.
type fileOf struct {
	ino         uint64
	blocks      uint32
	writing     bool // a lease is held: the file is being written
	want        int  // its replication
	first, last cairn.Block
	ends        bool // first and last were read
}

func (m *Metad) newBlockLookup() (*blockLookup, error) {
	r, err := m.st.newReader()
	if err != nil {
		return nil, err
	}
	return &blockLookup{r: r, files: map[uint64]*fileOf{}}, nil
}

func (l *blockLookup) close() { l.r.close() }

// find returns metad's record of block id and its file; ok is false for a
// block of no file.
func (l *blockLookup) find(id cairn.BlockID) (cairn.Block, fileOf, bool, error) {
	v, found := l.r.get(blockKey(id))
	if !found {
		return cairn.Block{}, fileOf{}, false, l.r.it.Error()
	}
	ino, err := parseU64(v)
	if err != nil {
		return cairn.Block{}, fileOf{}, false, err
	}
	f := l.files[ino]
	if f == nil {
		in, err := l.r.inode(ino)
		if err != nil {
			return cairn.Block{}, fileOf{}, false, err
		}
		f = &fileOf{ino: ino, blocks: in.Blocks, writing: in.LeaseHolder != "", want: int(in.Replication)}
		l.files[ino] = f
	}
	b, ok, err := l.fileBlock(f, id)
	if err != nil || !ok {
		return cairn.Block{}, fileOf{}, false, err
	}
	return b, *f, true, nil
}

// fileBlock finds block id among f's blocks: at the index its ID suggests
// when it lies between the first and last block's, else by
// searchFileBlock.
func (l *blockLookup) fileBlock(f *fileOf, id cairn.BlockID) (cairn.Block, bool, error) {
	n := f.blocks
	if n == 0 {
		return l.r.fileBlock(f.ino, 0, n, id)
	}
	if !f.ends {
		first, ok1, err := l.r.block(f.ino, 0)
		if err != nil {
			return cairn.Block{}, false, err
		}
		last, ok2, err := l.r.block(f.ino, n-1)
		if err != nil {
			return cairn.Block{}, false, err
		}
		if !ok1 || !ok2 || first.ID > last.ID {
			return l.r.fileBlock(f.ino, 0, n, id) // not as the search expects: it reads them all
		}
		f.first, f.last, f.ends = first, last, true
	}
	switch {
	case id == f.first.ID:
		return f.first, true, nil
	case id == f.last.ID:
		return f.last, true, nil
	case id < f.first.ID || id > f.last.ID || n < 3:
		return l.r.fileBlock(f.ino, 0, n, id)
	}
	// first < id < last, so the span is at least 2 and 1 <= guess <= n-2;
	// for IDs one after another the guess is the index.
	span := uint64(f.last.ID - f.first.ID)
	guess := uint32(1 + uint64(id-f.first.ID-1)*uint64(n-2)/(span-1))
	b, ok, err := l.r.block(f.ino, guess)
	if err != nil || !ok {
		return l.r.fileBlock(f.ino, 0, n, id)
	}
	switch {
	case b.ID == id:
		return b, true, nil
	case b.ID < id:
		return l.r.fileBlock(f.ino, guess+1, n-1, id)
	default:
		return l.r.fileBlock(f.ino, 1, guess, id)
	}
}

// block reads the block record of index idx of file ino.
func (r *reader) block(ino uint64, idx uint32) (cairn.Block, bool, error) {
	v, ok := r.get(fileBlockKey(ino, idx))
	if !ok {
		return cairn.Block{}, false, r.it.Error()
	}
	b, err := decodeBlock(v)
	return b, err == nil, err
}

// fileBlock finds block id among the blocks of indexes lo to hi-1 of file
// ino, as store.fileBlock does, through the reader's iterator.
func (r *reader) fileBlock(ino uint64, lo, hi uint32, id cairn.BlockID) (cairn.Block, bool, error) {
	get := func(key []byte) ([]byte, bool, error) {
		v, ok := r.get(key)
		if !ok {
			return nil, false, r.it.Error()
		}
		return v, true, nil
	}
	scan := func() ([]cairn.Block, error) {
		p := filePrefix(ino)
		var out []cairn.Block
		for ok := r.it.SeekGE(p); ok && bytes.HasPrefix(r.it.Key(), p); ok = r.it.Next() {
			b, err := decodeBlock(r.it.Value())
			if err != nil {
				return nil, err
			}
			out = append(out, b)
		}
		return out, r.it.Error()
	}
	return searchFileBlock(get, scan, ino, lo, hi, id)
}
