package blockd

import (
	"fmt"
	"os"

	"cairn"
	"cairn/checksum"
)

// Source is a replica opened for reading: finalized, or in rbw/ up to what
// has been written.
type Source interface {
	// Block is the replica's block; Len is its length now.
	Block() cairn.Block
	ChunkSize() int
	// ReadChunks reads chunks first..first+count-1 (the last may be short)
	// and their checksums, as stored.
	ReadChunks(first, count int64, buf []byte) ([]byte, []uint64, error)
	Close()
}

// OpenSource opens the replica of want.ID for reading. A replica older than
// want's generation stamp is stale and not served.
func (s *Store) OpenSource(want cairn.Block) (Source, error) {
	s.mu.Lock()
	w := s.rbw[want.ID]
	s.mu.Unlock()
	if w == nil {
		have, data, meta, err := s.OpenReplica(want)
		if err != nil {
			return nil, err
		}
		src := &fileSource{b: have, data: data, meta: meta}
		if err := src.readHeader(); err != nil {
			src.Close()
			return nil, cairn.E("blockd.OpenSource", cairn.KindIO, want.String(), err.Error())
		}
		return src, nil
	}
	w.mu.RLock()
	b, dataPath, metaPath, done := w.b, w.dataPath(), w.metaPath(), w.done
	w.mu.RUnlock()
	if done {
		// Finalized or deleted meanwhile, and already out of s.rbw (that
		// happens under w.mu): look again.
		return s.OpenSource(want)
	}
	if b.GenStamp < want.GenStamp {
		return nil, cairn.E("blockd.OpenSource", cairn.KindNotExist, want.String(), fmt.Sprintf("replica is stale (generation stamp %d)", b.GenStamp))
	}
	data, err := os.Open(dataPath)
	if err != nil {
		return nil, cairn.E("blockd.OpenSource", cairn.KindIO, want.String(), err.Error())
	}
	meta, err := os.Open(metaPath)
	if err != nil {
		_ = data.Close()
		return nil, cairn.E("blockd.OpenSource", cairn.KindIO, want.String(), err.Error())
	}
	src := &fileSource{b: b, data: data, meta: meta, w: w}
	if err := src.readHeader(); err != nil {
		src.Close()
		return nil, cairn.E("blockd.OpenSource", cairn.KindIO, want.String(), err.Error())
	}
	return src, nil
}

type fileSource struct {
	b          cairn.Block
	chunk      int
	data, meta *os.File
	w          *rbwReplica // for a replica being written: reads take its lock
}

func (f *fileSource) readHeader() error {
	hb := make([]byte, checksum.HeaderSize)
	if _, err := f.meta.ReadAt(hb, 0); err != nil {
		return checksum.MarkCorruption(fmt.Errorf("read meta header: %w", err))
	}
	h, err := checksum.ParseHeader(hb)
	if err != nil {
		return err
	}
	if h.BlockID != uint64(f.b.ID) {
		return checksum.MarkCorruption(fmt.Errorf("meta header names block %d", h.BlockID))
	}
	f.chunk = int(h.ChunkSize)
	return nil
}

func (f *fileSource) Block() cairn.Block {
	if f.w != nil {
		return f.w.Block()
	}
	return f.b
}

func (f *fileSource) ChunkSize() int { return f.chunk }

func (f *fileSource) ReadChunks(first, count int64, buf []byte) ([]byte, []uint64, error) {
	n := f.b.Len
	if f.w != nil {
		// One read lock for the whole read: taking it again (Block) while
		// holding it would hang once a writer queues between the two.
		f.w.mu.RLock()
		defer f.w.mu.RUnlock()
		n = f.w.b.Len
	}
	start := first * int64(f.chunk)
	end := min(start+count*int64(f.chunk), n)
	if start > end {
		return nil, nil, fmt.Errorf("chunks %d+%d beyond the replica's %d bytes", first, count, n)
	}
	data := buf[:end-start]
	if _, err := f.data.ReadAt(data, start); err != nil {
		return nil, nil, fmt.Errorf("read data at %d: %w", start, err)
	}
	sums, err := checksum.ReadSums(f.meta, first, checksum.NumChunks(end-start, f.chunk))
	if err != nil {
		return nil, nil, err
	}
	return data, sums, nil
}

func (f *fileSource) Close() {
	_ = f.data.Close()
	_ = f.meta.Close()
}
