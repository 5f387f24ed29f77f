package blockd

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"

	"go.uber.org/zap"
	"golang.org/x/sys/unix"

	"cairn"
	"cairn/checksum"
)

// rbwReplica is a replica that is not finalized: being written (RBW), left
// in rbw/ by an earlier run (RWR), or claimed by a block recovery (RUR). It
// outlives a broken stream: the replica stays in rbw/ (released, files
// closed) until a writer reopens it for pipeline recovery or append, a
// block recovery claims it, metad has it deleted, or it is finalized.
// Readers may read it concurrently up to what has been written.
//
// Lock order: a replica's mu before the Store's mu. The Store's mu may be
// held while locking a replica no other goroutine can see yet.
type rbwReplica struct {
	s *Store

	mu    sync.RWMutex // held by Write for a packet; by readers for a read
	b     cairn.Block  // b.Len is the bytes written
	chunk int
	data  *os.File // open while active
	meta  *os.File
	state cairn.ReplicaState // RBW, RWR or RUR
	// RUR: the recovery that claims the replica, and the state it found.
	rid   cairn.GenStamp
	prior cairn.ReplicaState
	// inFinalized: the files are in finalized/, not rbw/ (an RUR of a
	// finalized replica: recovery finalizes it in place).
	inFinalized bool
	active      bool        // a stream owns the replica
	done        bool        // finalized or deleted
	dirSynced   atomic.Bool // rbw/ was fsynced after the files were created (set under the read lock, by Sync)
	enc         []byte
	cmp         []byte
	kicked      int64  // bytes whose writeback has been started
	token       uint64 // of the stream that holds it; a newer stream preempts an older one
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
	r.state = cairn.ReplicaRBW
	return &ReplicaWriter{r: r, token: r.token}
}

// stopWriter ends any stream's hold: the stream's later calls fail with
// errPreempted and change nothing. Caller holds r.mu.
func (r *rbwReplica) stopWriter() {
	r.release()
	r.token++
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

// dir is the directory of the replica's files. Caller holds w.mu.
func (w *rbwReplica) dir() string {
	if w.inFinalized {
		return w.s.finalizedDir(w.b.ID)
	}
	return w.s.rbwDir()
}

func (w *rbwReplica) dataPath() string {
	return filepath.Join(w.dir(), checksum.BlockFileName(uint64(w.b.ID)))
}

func (w *rbwReplica) metaPath() string {
	return filepath.Join(w.dir(), checksum.MetaFileName(uint64(w.b.ID), uint64(w.b.GenStamp)))
}

// Create starts a new replica of b. A replica of the block already here is
// replaced when it is older (a lower stamp, in any state but under
// recovery) or unfinished at b's stamp with no live writer: a copy onto
// this node supersedes it (HDFS's createTemporary). The old replica is
// deleted whole first, then the new one created: a crash between leaves
// neither, never a mix. A finalized replica at b's stamp or newer, a newer
// one being written, or one under recovery is KindExist (KindBusy).
func (s *Store) Create(b cairn.Block, chunkSize int) (*ReplicaWriter, error) {
	const op = "blockd.Create"
	b.Len = 0
	h := checksum.NewHeader(uint64(b.ID), uint64(b.GenStamp), chunkSize)
	if err := h.Validate(); err != nil {
		return nil, cairn.E(op, cairn.KindInvalid, b.String(), err.Error())
	}
	w := &rbwReplica{s: s, b: b, chunk: chunkSize}
	for {
		s.mu.Lock()
		r, fin := s.replicas[b.ID]
		old := s.rbw[b.ID]
		if !fin && old == nil {
			w.mu.Lock() // no one else sees w yet
			s.rbw[b.ID] = w
			s.mu.Unlock()
			break
		}
		s.mu.Unlock()
		if err := s.replaceForCopy(b, fin, r, old); err != nil {
			return nil, err
		}
	}
	defer w.mu.Unlock()
	hw := w.hold()
	var err error
	w.data, err = s.fs.OpenFile(w.dataPath(), os.O_CREATE|os.O_EXCL|os.O_RDWR, 0o644)
	if err == nil {
		w.meta, err = s.fs.OpenFile(w.metaPath(), os.O_CREATE|os.O_EXCL|os.O_RDWR, 0o644)
	}
	if err == nil {
		err = s.fs.WriteAt(w.meta, h.Marshal(), 0)
	}
	if err != nil {
		_ = w.abortLocked()
		return nil, fmt.Errorf("create replica %s: %w", b, err)
	}
	return hw, nil
}

// replaceForCopy deletes the replica found here when a new replica b may
// replace it (see Create). It returns nil when the caller may try again.
func (s *Store) replaceForCopy(b cairn.Block, fin bool, r replica, old *rbwReplica) error {
	const op = "blockd.Create"
	if fin {
		if r.gs >= b.GenStamp {
			return cairn.E(op, cairn.KindExist, b.String(), "replica already exists")
		}
		s.log.Info("a new replica replaces an older finalized one", zap.Stringer("block", b), zap.Uint64("old_gen_stamp", uint64(r.gs)))
		return s.deleteFinalized(cairn.Block{ID: b.ID, GenStamp: r.gs})
	}
	old.mu.Lock()
	defer old.mu.Unlock()
	switch {
	case old.done:
		return nil
	case old.state == cairn.ReplicaRUR:
		return cairn.E(op, cairn.KindBusy, b.String(), fmt.Sprintf("replica is under recovery %d", old.rid))
	case old.b.GenStamp > b.GenStamp:
		return cairn.E(op, cairn.KindExist, b.String(), fmt.Sprintf("a replica with the newer generation stamp %d exists", old.b.GenStamp))
	case old.b.GenStamp == b.GenStamp && old.active:
		return cairn.E(op, cairn.KindExist, b.String(), "replica already exists, being written")
	}
	s.log.Info("a new replica replaces an unfinished or older one", zap.Stringer("block", b), zap.Stringer("old", old.b), zap.Stringer("old_state", old.state))
	old.stopWriter()
	return old.abortLocked()
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

// sync makes what was written durable, and the first time, the replica's
// entries in rbw/. Caller holds w.mu.
func (w *rbwReplica) sync() error {
	if err := syncBoth(w.s.fs, w.data, w.meta); err != nil {
		return fmt.Errorf("replica %s: sync: %w", w.b, err)
	}
	if !w.dirSynced.Load() {
		if err := w.s.fs.SyncDir(w.dir()); err != nil {
			return fmt.Errorf("replica %s: sync %s: %w", w.b, w.dir(), err)
		}
		w.dirSynced.Store(true)
	}
	return nil
}

// finalize syncs the replica, moves it into finalized/ and syncs the
// directories, so it survives a crash from the moment this returns.
// Caller holds w.mu.
func (w *rbwReplica) finalize() (cairn.Block, error) {
	s := w.s
	b := w.b
	err := syncBoth(s.fs, w.data, w.meta)
	if err == nil {
		err = w.closeFiles()
	}
	if err == nil {
		err = s.moveToFinalized(b)
	}
	if err != nil {
		return b, fmt.Errorf("finalize %s: %w", b, err)
	}
	w.finished()
	return b, nil
}

// finished records w, now finalized/ on disk, as a finalized replica.
// Caller holds w.mu.
func (w *rbwReplica) finished() {
	s := w.s
	w.done, w.active = true, false
	r := replica{gs: w.b.GenStamp, len: w.b.Len, metaLen: checksum.MetaSize(w.b.Len, w.chunk)}
	s.mu.Lock()
	if s.rbw[w.b.ID] == w {
		delete(s.rbw, w.b.ID)
	}
	s.replicas[w.b.ID] = r
	s.used += r.disk()
	s.mu.Unlock()
}

// moveToFinalized moves the synced replica b from rbw/ into its finalized/
// leaf: the block file first, then the .meta, then the leaf is synced. A
// crash between the two renames leaves the block file in finalized/ and
// its .meta in rbw/, which the next start completes (see docs/FORMAT.md,
// "Replica transitions"). rbw/ is not synced: the replica is durable once
// its names in the leaf are, and names of it that a crash might leave in
// rbw/ as well are removed at the next start, as anything of a block
// finalized/ holds whole is. One fsync fewer per replica is a quarter of
// what finalizing a small block costs.
func (s *Store) moveToFinalized(b cairn.Block) error {
	dir := s.finalizedDir(b.ID)
	if err := s.ensureLeaf(dir); err != nil {
		return err
	}
	if err := s.fs.Rename(s.dataPathRBW(b.ID), s.BlockPath(b)); err != nil {
		return err
	}
	if err := s.fs.Rename(s.metaPathRBW(b), s.MetaPath(b)); err != nil {
		return err
	}
	return s.fs.SyncDir(dir)
}

// closeFiles closes the open files. Caller holds w.mu.
func (w *rbwReplica) closeFiles() error {
	var err error
	for _, f := range []*os.File{w.data, w.meta} {
		if f != nil {
			err = errors.Join(err, f.Close())
		}
	}
	w.data, w.meta = nil, nil
	return err
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
			_ = w.s.fs.Sync(f)
		}
	}
	_ = w.closeFiles()
}

// Abort deletes the replica.
func (w *rbwReplica) Abort() {
	w.mu.Lock()
	defer w.mu.Unlock()
	_ = w.abortLocked()
}

// abortLocked is Abort with w.mu held: the block file is removed first,
// then the .meta, so a crash between leaves a .meta alone, which the next
// start removes.
func (w *rbwReplica) abortLocked() error {
	if w.done {
		return nil
	}
	w.done, w.active = true, false
	_ = w.closeFiles()
	err := removeIfExists(w.s.fs, w.dataPath())
	if err == nil {
		err = removeIfExists(w.s.fs, w.metaPath())
	}
	w.s.mu.Lock()
	if w.s.rbw[w.b.ID] == w {
		delete(w.s.rbw, w.b.ID)
	}
	w.s.mu.Unlock()
	if err != nil {
		return fmt.Errorf("delete %s: %w", w.b, err)
	}
	return nil
}

// deleteIdle deletes a replica that is not finalized and whose stamp is not
// newer than gs; one a stream is writing is left alone.
func (w *rbwReplica) deleteIdle(gs cairn.GenStamp) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.active || w.b.GenStamp > gs {
		return nil
	}
	return w.abortLocked()
}

// ensureLeaf makes a finalized/ leaf directory (and its parents) if
// missing, fsyncing each new directory's parent. A leaf that was there
// already has its parent and grandparent fsynced the first time in a run,
// so a leaf an earlier run made but did not sync is durable before a
// replica is moved into it.
func (s *Store) ensureLeaf(dir string) error {
	s.leafMu.Lock()
	defer s.leafMu.Unlock()
	if s.leaves[dir] {
		return nil
	}
	made, err := mkdirAll(s.fs, dir)
	if err != nil {
		return err
	}
	if !made {
		parent := filepath.Dir(dir)
		if err := errors.Join(s.fs.SyncDir(parent), s.fs.SyncDir(filepath.Dir(parent))); err != nil {
			return err
		}
	}
	s.leaves[dir] = true
	return nil
}
