package blockd

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sync"

	"go.uber.org/zap"
	"golang.org/x/sys/unix"

	"cairn"
	"cairn/checksum"
	"cairn/internal/versionfile"
)

// rbwReplica is a replica being written, in rbw/. It outlives a broken
// stream: the replica stays in rbw/ (released, files closed) until a writer
// reopens it for pipeline recovery or append, metad has it deleted, or it is
// finalized. Readers may read it concurrently up to what has been written.
type rbwReplica struct {
	s *Store

	mu     sync.RWMutex // held by Write for a packet; by readers for a read
	b      cairn.Block  // b.Len is the bytes written
	chunk  int
	data   *os.File // open while active
	meta   *os.File
	active bool // a stream owns the replica
	done   bool // finalized or deleted
	enc    []byte
	cmp    []byte
	kicked int64  // bytes whose writeback has been started
	token  uint64 // of the stream that holds it; a newer stream preempts an older one
}

// ReplicaWriter is one stream's hold on a replica in rbw/. A stream that
// reopens the replica (pipeline recovery) preempts an older one that is
// still stuck, say, waiting for a stalled upstream: the older one's calls
// then fail with errPreempted and change nothing.
type ReplicaWriter struct {
	r     *rbwReplica
	token uint64
}

var errPreempted = errors.New("replica taken over by a newer stream")

// hold marks r active for a new stream and returns its handle. Caller holds
// r.mu.
func (r *rbwReplica) hold() *ReplicaWriter {
	r.token++
	r.active = true
	return &ReplicaWriter{r: r, token: r.token}
}

// ChunkSize is the replica's bytes per checksum chunk.
func (w *ReplicaWriter) ChunkSize() int {
	w.r.mu.RLock()
	defer w.r.mu.RUnlock()
	return w.r.chunk
}

// Len is the number of bytes written.
func (w *ReplicaWriter) Len() int64 { return w.r.Block().Len }

// Write: see rbwReplica.write.
func (w *ReplicaWriter) Write(off int64, data []byte, sums []uint64) error {
	w.r.mu.Lock()
	defer w.r.mu.Unlock()
	if w.r.token != w.token {
		return errPreempted
	}
	return w.r.write(off, data, sums)
}

// Sync makes what was written durable.
func (w *ReplicaWriter) Sync() error {
	w.r.mu.RLock()
	defer w.r.mu.RUnlock()
	if w.r.token != w.token {
		return errPreempted
	}
	return w.r.sync()
}

// Finalize: see rbwReplica.finalize.
func (w *ReplicaWriter) Finalize() (cairn.Block, error) {
	w.r.mu.Lock()
	defer w.r.mu.Unlock()
	if w.r.token != w.token {
		return cairn.Block{}, errPreempted
	}
	return w.r.finalize()
}

// Release ends the stream's hold without finalizing: the replica stays in
// rbw/ for recovery.
func (w *ReplicaWriter) Release() {
	w.r.mu.Lock()
	defer w.r.mu.Unlock()
	if w.r.token == w.token {
		w.r.release()
	}
}

// Abort deletes the replica, if this stream still holds it.
func (w *ReplicaWriter) Abort() {
	w.r.mu.Lock()
	defer w.r.mu.Unlock()
	if w.r.token == w.token {
		w.r.abortLocked()
	}
}

func (s *Store) dataPathRBW(id cairn.BlockID) string {
	return filepath.Join(s.rbwDir(), checksum.BlockFileName(uint64(id)))
}

func (s *Store) metaPathRBW(b cairn.Block) string {
	return filepath.Join(s.rbwDir(), checksum.MetaFileName(uint64(b.ID), uint64(b.GenStamp)))
}

// Create starts a new replica of b.
func (s *Store) Create(b cairn.Block, chunkSize int) (*ReplicaWriter, error) {
	b.Len = 0
	s.mu.Lock()
	if _, ok := s.replicas[b.ID]; ok || s.rbw[b.ID] != nil {
		s.mu.Unlock()
		return nil, cairn.E("blockd.Create", cairn.KindExist, b.String(), "replica already exists")
	}
	w := &rbwReplica{s: s, b: b, chunk: chunkSize}
	h := w.hold()
	s.rbw[b.ID] = w
	s.mu.Unlock()
	var err error
	w.data, err = os.OpenFile(s.dataPathRBW(b.ID), os.O_CREATE|os.O_EXCL|os.O_RDWR, 0o644)
	if err == nil {
		w.meta, err = os.OpenFile(s.metaPathRBW(b), os.O_CREATE|os.O_EXCL|os.O_RDWR, 0o644)
	}
	if err == nil {
		_, err = checksum.NewMetaWriter(w.meta, checksum.NewHeader(uint64(b.ID), uint64(b.GenStamp), chunkSize))
	}
	if err != nil {
		w.Abort()
		return nil, fmt.Errorf("create replica %s: %w", b, err)
	}
	return h, nil
}

// Block is the replica's block with the bytes written so far.
func (w *rbwReplica) Block() cairn.Block {
	w.mu.RLock()
	defer w.mu.RUnlock()
	return w.b
}

// write stores data, which must start where the replica ends, with its
// checksums already verified in the layout of checksum.SumsAt. When the
// replica ends inside a chunk (after an hflush, an append or a recovery)
// the first checksum covers only the new piece of that chunk: the bytes on
// disk are verified against their stored checksum, and the checksum of the
// joined chunk is computed from the two verified parts.
// Caller holds w.mu.
func (w *rbwReplica) write(off int64, data []byte, sums []uint64) error {
	if off != w.b.Len {
		return fmt.Errorf("replica %s: write at %d, but the replica ends at %d", w.b, off, w.b.Len)
	}
	chunk := int64(w.chunk)
	if into := off % chunk; into != 0 && len(data) > 0 {
		c := off / chunk
		head := min(int64(len(data)), chunk-into)
		if cap(w.cmp) < int(into+head) {
			w.cmp = make([]byte, chunk)
		}
		joined := w.cmp[:into+head]
		if _, err := w.data.ReadAt(joined[:into], c*chunk); err != nil {
			return fmt.Errorf("replica %s: read the partial chunk %d: %w", w.b, c, err)
		}
		stored, err := checksum.ReadSums(w.meta, c, 1)
		if err != nil {
			return fmt.Errorf("replica %s: %w", w.b, err)
		}
		if err := checksum.Verify(uint64(w.b.ID), w.chunk, c, joined[:into], stored); err != nil {
			return fmt.Errorf("replica %s: the partial chunk on disk: %w", w.b, err)
		}
		copy(joined[into:], data[:head])
		sums = append([]uint64{checksum.Sum(joined)}, sums[1:]...)
	}
	if _, err := w.data.WriteAt(data, off); err != nil {
		return fmt.Errorf("replica %s: %w", w.b, err)
	}
	w.enc = checksum.EncodeSums(w.enc[:0], sums)
	if _, err := w.meta.WriteAt(w.enc, checksum.SumOffset(off/chunk)); err != nil {
		return fmt.Errorf("replica %s meta: %w", w.b, err)
	}
	w.b.Len = off + int64(len(data))
	w.startWriteback()
	return nil
}

// writebackStep is how many bytes may pile up in the page cache before
// their writeback is started, so the fsync that finalizes a block waits for
// little and the pipeline is not stalled by it.
const writebackStep = 8 << 20

// startWriteback asks the kernel to begin writing out what has piled up,
// without waiting for it (sync_file_range(SYNC_FILE_RANGE_WRITE)). It is a
// hint; durability still comes from Sync and Finalize.
func (w *rbwReplica) startWriteback() {
	if w.b.Len-w.kicked < writebackStep {
		return
	}
	_ = unix.SyncFileRange(int(w.data.Fd()), w.kicked, w.b.Len-w.kicked, unix.SYNC_FILE_RANGE_WRITE)
	w.kicked = w.b.Len
}

// sync makes what was written durable. Caller holds w.mu.
func (w *rbwReplica) sync() error {
	if err := w.data.Sync(); err != nil {
		return fmt.Errorf("replica %s: sync: %w", w.b, err)
	}
	if err := w.meta.Sync(); err != nil {
		return fmt.Errorf("replica %s: sync meta: %w", w.b, err)
	}
	return nil
}

// finalize syncs the replica, moves it into finalized/ and syncs the
// directories, so it survives a crash from the moment this returns.
// Caller holds w.mu.
func (w *rbwReplica) finalize() (cairn.Block, error) {
	s := w.s
	b := w.b
	err := errors.Join(w.data.Sync(), w.meta.Sync())
	if err == nil {
		err = errors.Join(w.data.Close(), w.meta.Close())
		w.data, w.meta = nil, nil
	}
	dir := s.finalizedDir(b.ID)
	if err == nil {
		err = os.MkdirAll(dir, 0o755)
	}
	if err == nil {
		err = os.Rename(s.metaPathRBW(b), s.MetaPath(b))
	}
	if err == nil {
		err = os.Rename(s.dataPathRBW(b.ID), s.BlockPath(b))
	}
	if err == nil {
		err = errors.Join(versionfile.SyncDir(dir), versionfile.SyncDir(s.rbwDir()))
	}
	if err != nil {
		return b, fmt.Errorf("finalize %s: %w", b, err)
	}
	w.done, w.active = true, false
	r := replica{gs: b.GenStamp, len: b.Len, metaLen: checksum.MetaSize(b.Len, w.chunk)}
	s.mu.Lock()
	delete(s.rbw, b.ID)
	s.replicas[b.ID] = r
	s.used += r.disk()
	s.mu.Unlock()
	return b, nil
}

// release ends a stream's hold on the replica without finalizing it: the
// replica stays in rbw/ for recovery. Caller holds w.mu.
func (w *rbwReplica) release() {
	if w.done || !w.active {
		return
	}
	w.active = false
	for _, f := range []*os.File{w.data, w.meta} {
		if f != nil {
			_ = f.Sync()
			_ = f.Close()
		}
	}
	w.data, w.meta = nil, nil
}

// Abort deletes the replica.
func (w *rbwReplica) Abort() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.abortLocked()
}

// abortLocked is Abort with w.mu held.
func (w *rbwReplica) abortLocked() {
	if w.done {
		return
	}
	w.done, w.active = true, false
	for _, f := range []*os.File{w.data, w.meta} {
		if f != nil {
			_ = f.Close()
		}
	}
	w.data, w.meta = nil, nil
	_ = os.Remove(w.s.dataPathRBW(w.b.ID))
	_ = os.Remove(w.s.metaPathRBW(w.b))
	w.s.mu.Lock()
	if w.s.rbw[w.b.ID] == w {
		delete(w.s.rbw, w.b.ID)
	}
	w.s.mu.Unlock()
}

// deleteIdle deletes a replica left in rbw/ whose stamp is not newer than
// gs; one a stream is writing is left alone.
func (w *rbwReplica) deleteIdle(gs cairn.GenStamp) error {
	w.mu.RLock()
	busy := w.active || w.b.GenStamp > gs
	w.mu.RUnlock()
	if !busy {
		w.Abort()
	}
	return nil
}

// Reopen makes the replica of b.ID writable again at generation stamp
// b.GenStamp, keeping its first keepLen bytes: for pipeline recovery (an
// rbw replica) and append (a finalized one, moved back to rbw/). A stream
// still holding the replica (stuck on a stalled upstream, say) is
// preempted. The last partial chunk's checksum is verified against what is
// on disk and then recomputed for the bytes kept.
func (s *Store) Reopen(b cairn.Block, keepLen int64) (*ReplicaWriter, error) {
	const op = "blockd.Reopen"
	h, err := s.takeForReopen(b)
	if err != nil {
		return nil, err
	}
	if err := h.r.reopen(h.token, b.GenStamp, keepLen); err != nil {
		h.Release()
		return nil, cairn.E(op, cairn.KindOf(err), b.String(), err.Error())
	}
	return h, nil
}

// takeForReopen finds the replica, moving a finalized one back to rbw/, and
// takes it for a new stream.
func (s *Store) takeForReopen(b cairn.Block) (*ReplicaWriter, error) {
	const op = "blockd.Reopen"
	s.mu.Lock()
	if w := s.rbw[b.ID]; w != nil {
		s.mu.Unlock()
		w.mu.Lock()
		defer w.mu.Unlock()
		if w.b.GenStamp > b.GenStamp {
			return nil, cairn.E(op, cairn.KindInvalid, b.String(), fmt.Sprintf("replica has a newer generation stamp %d", w.b.GenStamp))
		}
		if w.done {
			return nil, cairn.E(op, cairn.KindNotExist, b.String(), "replica was deleted")
		}
		if w.active {
			s.log.Info("a newer stream takes over a replica", zap.Stringer("block", w.b))
			w.release()
		}
		return w.hold(), nil
	}
	r, ok := s.replicas[b.ID]
	if !ok {
		s.mu.Unlock()
		return nil, cairn.E(op, cairn.KindNotExist, b.String(), "no replica here")
	}
	if r.gs > b.GenStamp {
		s.mu.Unlock()
		return nil, cairn.E(op, cairn.KindInvalid, b.String(), fmt.Sprintf("replica has a newer generation stamp %d", r.gs))
	}
	old := cairn.Block{ID: b.ID, GenStamp: r.gs, Len: r.len}
	w := &rbwReplica{s: s, b: old}
	w.mu.Lock()
	defer w.mu.Unlock()
	h := w.hold()
	delete(s.replicas, b.ID)
	s.used -= r.disk()
	s.rbw[b.ID] = w
	s.mu.Unlock()
	err := os.Rename(s.MetaPath(old), s.metaPathRBW(old))
	if err == nil {
		err = os.Rename(s.BlockPath(old), s.dataPathRBW(old.ID))
	}
	if err == nil {
		err = errors.Join(versionfile.SyncDir(s.rbwDir()), versionfile.SyncDir(s.finalizedDir(old.ID)))
	}
	if err != nil {
		w.release()
		return nil, cairn.E(op, cairn.KindIO, b.String(), fmt.Sprintf("move finalized replica to rbw: %v", err))
	}
	return h, nil
}

func (w *rbwReplica) reopen(token uint64, gs cairn.GenStamp, keepLen int64) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.token != token {
		return errPreempted
	}
	s := w.s
	data, err := os.OpenFile(s.dataPathRBW(w.b.ID), os.O_RDWR, 0)
	if err != nil {
		return err
	}
	meta, err := os.OpenFile(s.metaPathRBW(w.b), os.O_RDWR, 0)
	if err != nil {
		_ = data.Close()
		return err
	}
	w.data, w.meta = data, meta
	fail := func(err error) error {
		_ = data.Close()
		_ = meta.Close()
		w.data, w.meta = nil, nil
		return err
	}
	hb := make([]byte, checksum.HeaderSize)
	if _, err := io.ReadFull(meta, hb); err != nil {
		return fail(fmt.Errorf("read meta header: %w", err))
	}
	h, err := checksum.ParseHeader(hb)
	if err != nil {
		return fail(err)
	}
	w.chunk = int(h.ChunkSize)
	st, err := data.Stat()
	if err != nil {
		return fail(err)
	}
	w.b.Len = st.Size()
	if keepLen < 0 || keepLen > w.b.Len {
		return fail(cairn.E("blockd.Reopen", cairn.KindInvalid, w.b.String(), fmt.Sprintf("replica holds %d bytes, %d must be kept", w.b.Len, keepLen)))
	}
	// Verify the chunk that will become the last, as it is on disk, then
	// recompute its checksum over the bytes kept.
	chunk := int64(w.chunk)
	var lastSum []uint64
	if tail := keepLen % chunk; tail != 0 {
		c := keepLen / chunk
		start := c * chunk
		end := min(start+chunk, w.b.Len)
		buf := make([]byte, end-start)
		if _, err := data.ReadAt(buf, start); err != nil {
			return fail(fmt.Errorf("read chunk %d: %w", c, err))
		}
		sums, err := checksum.ReadSums(meta, c, 1)
		if err != nil {
			return fail(err)
		}
		if err := checksum.Verify(uint64(w.b.ID), w.chunk, c, buf, sums); err != nil {
			return fail(err)
		}
		lastSum = []uint64{checksum.Sum(buf[:tail])}
	}
	nChunks := checksum.NumChunks(keepLen, w.chunk)
	if err := data.Truncate(keepLen); err != nil {
		return fail(err)
	}
	if err := meta.Truncate(checksum.SumOffset(nChunks)); err != nil {
		return fail(err)
	}
	if lastSum != nil {
		if _, err := meta.WriteAt(checksum.EncodeSums(nil, lastSum), checksum.SumOffset(nChunks-1)); err != nil {
			return fail(err)
		}
	}
	nb := w.b
	nb.GenStamp, nb.Len = gs, keepLen
	if _, err := meta.WriteAt(checksum.NewHeader(uint64(nb.ID), uint64(gs), w.chunk).Marshal(), 0); err != nil {
		return fail(err)
	}
	if err := errors.Join(data.Sync(), meta.Sync()); err != nil {
		return fail(err)
	}
	if nb.GenStamp != w.b.GenStamp {
		if err := os.Rename(s.metaPathRBW(w.b), s.metaPathRBW(nb)); err != nil {
			return fail(err)
		}
		if err := versionfile.SyncDir(s.rbwDir()); err != nil {
			return fail(err)
		}
	}
	w.b = nb
	w.done = false
	return nil
}

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
	b := w.Block()
	if b.GenStamp < want.GenStamp {
		return nil, cairn.E("blockd.OpenSource", cairn.KindNotExist, want.String(), fmt.Sprintf("replica is stale (generation stamp %d)", b.GenStamp))
	}
	data, err := os.Open(s.dataPathRBW(b.ID))
	if err != nil {
		return nil, cairn.E("blockd.OpenSource", cairn.KindIO, want.String(), err.Error())
	}
	meta, err := os.Open(s.metaPathRBW(b))
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
	if f.w != nil {
		f.w.mu.RLock()
		defer f.w.mu.RUnlock()
	}
	n := f.Block().Len
	if f.w != nil {
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

// recoverRBW looks at what an earlier run left in rbw/: each replica is cut
// back to its last verified chunk and kept, released, for metad to decide
// on; files without their partner and temporary files go.
func (s *Store) recoverRBW() ([]cairn.Block, error) {
	ents, err := os.ReadDir(s.rbwDir())
	if err != nil {
		return nil, err
	}
	metas := map[uint64]cairn.Block{}
	for _, e := range ents {
		if id, gs, ok := checksum.ParseMetaFileName(e.Name()); ok {
			if old, dup := metas[id]; !dup || uint64(old.GenStamp) < gs {
				metas[id] = cairn.Block{ID: cairn.BlockID(id), GenStamp: cairn.GenStamp(gs)}
			}
		}
	}
	var recovered []cairn.Block
	for _, e := range ents {
		name := e.Name()
		path := filepath.Join(s.rbwDir(), name)
		if id, gs, ok := checksum.ParseMetaFileName(name); ok {
			if metas[id].GenStamp != cairn.GenStamp(gs) {
				s.log.Warn("removing an older meta left in rbw", zap.String("file", path))
				_ = os.Remove(path)
			}
			continue
		}
		var id uint64
		if _, err := fmt.Sscanf(name, "blk_%d", &id); err != nil || checksum.BlockFileName(id) != name {
			s.log.Warn("removing a leftover file in rbw", zap.String("file", path))
			_ = os.Remove(path)
			continue
		}
		b, ok := metas[id]
		if !ok {
			s.log.Warn("removing a block file without meta in rbw", zap.String("file", path))
			_ = os.Remove(path)
			continue
		}
		w := &rbwReplica{s: s, b: b}
		n, err := w.cutToVerified()
		if err != nil {
			s.log.Error("replica left in rbw is unreadable; removing it", zap.Stringer("block", b), zap.Error(err))
			_ = os.Remove(path)
			_ = os.Remove(s.metaPathRBW(b))
			continue
		}
		w.b.Len = n
		s.rbw[b.ID] = w
		recovered = append(recovered, w.b)
		s.log.Info("replica left being written recovered", zap.Stringer("block", w.b), zap.Int64("len", n))
		delete(metas, id)
	}
	for id, b := range metas {
		s.log.Warn("removing a meta without block file in rbw", zap.Uint64("block", id))
		_ = os.Remove(s.metaPathRBW(b))
	}
	return recovered, nil
}

// cutToVerified verifies the replica chunk by chunk and truncates it after
// the last chunk that matches its checksum.
func (w *rbwReplica) cutToVerified() (int64, error) {
	s := w.s
	data, err := os.OpenFile(s.dataPathRBW(w.b.ID), os.O_RDWR, 0)
	if err != nil {
		return 0, err
	}
	defer data.Close()
	meta, err := os.OpenFile(s.metaPathRBW(w.b), os.O_RDWR, 0)
	if err != nil {
		return 0, err
	}
	defer meta.Close()
	hb := make([]byte, checksum.HeaderSize)
	if _, err := io.ReadFull(meta, hb); err != nil {
		return 0, fmt.Errorf("meta header: %w", err)
	}
	h, err := checksum.ParseHeader(hb)
	if err != nil {
		return 0, err
	}
	w.chunk = int(h.ChunkSize)
	st, err := data.Stat()
	if err != nil {
		return 0, err
	}
	mst, err := meta.Stat()
	if err != nil {
		return 0, err
	}
	sumsOnDisk := (mst.Size() - checksum.HeaderSize) / checksum.SumSize
	chunks := min(checksum.NumChunks(st.Size(), w.chunk), sumsOnDisk)
	buf := make([]byte, w.chunk)
	var good int64
	for c := int64(0); c < chunks; c++ {
		start := c * int64(w.chunk)
		k, err := data.ReadAt(buf, start)
		if err != nil && !errors.Is(err, io.EOF) {
			return 0, err
		}
		sums, err := checksum.ReadSums(meta, c, 1)
		if err != nil {
			break
		}
		if checksum.Verify(uint64(w.b.ID), w.chunk, c, buf[:k], sums) != nil {
			// The last checksum may cover a partial chunk (an hflush)
			// followed by bytes a crash left without their checksum:
			// keep the longest prefix that matches.
			if c == chunks-1 {
				if n := matchingPrefix(buf[:k], sums[0]); n > 0 {
					good = start + int64(n)
				}
			}
			break
		}
		good = start + int64(k)
		if k < w.chunk {
			break
		}
	}
	if good != st.Size() || checksum.SumOffset(checksum.NumChunks(good, w.chunk)) != mst.Size() {
		if err := data.Truncate(good); err != nil {
			return 0, err
		}
		if err := meta.Truncate(checksum.SumOffset(checksum.NumChunks(good, w.chunk))); err != nil {
			return 0, err
		}
		if err := errors.Join(data.Sync(), meta.Sync()); err != nil {
			return 0, err
		}
	}
	return good, nil
}

// matchingPrefix returns the length of the longest prefix of b whose
// checksum is sum, or 0.
func matchingPrefix(b []byte, sum uint64) int {
	for n := len(b); n > 0; n-- {
		if checksum.Sum(b[:n]) == sum {
			return n
		}
	}
	return 0
}

// removeTemps deletes temporary files an interrupted atomic write left.
func (s *Store) removeTemps() {
	_ = filepath.WalkDir(s.dir, func(path string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() && filepath.Ext(path) == ".tmp" {
			s.log.Info("removing a leftover temporary file", zap.String("file", path))
			_ = os.Remove(path)
		}
		return nil
	})
}
