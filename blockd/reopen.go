package blockd

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"syscall"

	"go.uber.org/zap"

	"cairn"
	"cairn/checksum"
)

// Reopen makes the replica of b.ID writable again at generation stamp
// b.GenStamp, keeping its first keepLen bytes: for pipeline recovery (an
// rbw replica) and append (a finalized one, moved back to rbw/). A stream
// still holding the replica (stuck on a stalled upstream, say) is
// preempted. The last partial chunk's checksum is verified against what is
// on disk and then recomputed for the bytes kept. A replica under recovery
// is not reopened (KindBusy).
func (s *Store) Reopen(b cairn.Block, keepLen int64) (*ReplicaWriter, error) {
	const op = "blockd.Reopen"
	h, err := s.takeForReopen(b)
	if err != nil {
		return nil, err
	}
	if err := h.r.reopen(h.token, b.GenStamp, keepLen); err != nil {
		h.Release()
		return nil, cairn.E(op, noSpace(err), b.String(), err.Error())
	}
	return h, nil
}

// writeMeta writes and syncs a new .meta file at path.
func (s *Store) writeMeta(path string, content []byte) error {
	f, err := s.fs.OpenFile(path, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	err = s.fs.WriteAt(f, content, 0)
	if err == nil {
		err = s.fs.Sync(f)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
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
		if w.state == cairn.ReplicaRUR {
			return nil, cairn.E(op, cairn.KindBusy, b.String(), fmt.Sprintf("replica is under recovery %d", w.rid))
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
	w.mu.Lock() // no one else sees w yet
	defer w.mu.Unlock()
	h := w.hold()
	delete(s.replicas, b.ID)
	s.used -= r.disk()
	s.rbw[b.ID] = w
	s.mu.Unlock()
	if err := s.moveToRBW(old); err != nil {
		w.done, w.active = true, false
		s.putBackFinalized(w, r)
		return nil, cairn.E(op, cairn.KindIO, b.String(), fmt.Sprintf("move finalized replica to rbw: %v", err))
	}
	return h, nil
}

// moveToRBW moves a finalized replica back to rbw/ for append: the .meta
// first, then the block file, then both directories are synced. A crash
// between the two renames leaves the block file in finalized/ and its .meta
// in rbw/, which the next start completes into finalized/, as it was.
func (s *Store) moveToRBW(b cairn.Block) error {
	if err := s.fs.Rename(s.MetaPath(b), s.metaPathRBW(b)); err != nil {
		return err
	}
	if err := s.fs.Rename(s.BlockPath(b), s.dataPathRBW(b.ID)); err != nil {
		return err
	}
	return errors.Join(s.fs.SyncDir(s.rbwDir()), s.fs.SyncDir(s.finalizedDir(b.ID)))
}

// putBackFinalized undoes a failed moveToRBW as far as the disk allows:
// halves already in rbw/ go back to finalized/, and the replica is
// finalized again if both are there. Caller holds w.mu.
func (s *Store) putBackFinalized(w *rbwReplica, r replica) {
	b := w.b
	for _, mv := range [][2]string{{s.metaPathRBW(b), s.MetaPath(b)}, {s.dataPathRBW(b.ID), s.BlockPath(b)}} {
		if _, err := os.Stat(mv[0]); err == nil {
			_ = s.fs.Rename(mv[0], mv[1])
		}
	}
	_, errData := os.Stat(s.BlockPath(b))
	_, errMeta := os.Stat(s.MetaPath(b))
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.rbw[b.ID] == w {
		delete(s.rbw, b.ID)
	}
	if errData == nil && errMeta == nil {
		s.replicas[b.ID] = r
		s.used += r.disk()
	}
}

func (w *rbwReplica) reopen(token uint64, gs cairn.GenStamp, keepLen int64) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.token != token {
		return errPreempted
	}
	if err := w.restamp(gs, keepLen); err != nil {
		return err
	}
	s := w.s
	data, err := s.fs.OpenFile(w.dataPath(), os.O_RDWR, 0)
	if err != nil {
		return err
	}
	meta, err := s.fs.OpenFile(w.metaPath(), os.O_RDWR, 0)
	if err != nil {
		_ = data.Close()
		return err
	}
	w.data, w.meta = data, meta
	w.done = false
	return nil
}

// restamp cuts the replica to newLen bytes (never more than it holds) at
// generation stamp gs, crash-atomically, in the directory its files are
// in. The chunk that becomes the last is verified as it is on disk and its
// checksum recomputed for the bytes kept. The steps:
//
//  1. the new .meta (header at gs, the kept checksums) is written in full
//     as blk_<id>_<gs>.meta.tmp and fsynced;
//  2. it is renamed to blk_<id>_<gs>.meta (replacing the old one when the
//     stamp does not change) and the directory fsynced: from here the
//     replica is at gs;
//  3. the block file is truncated to newLen and fsynced;
//  4. an old .meta of another stamp is removed and the directory fsynced.
//
// A crash before 2 leaves the replica as it was (the .tmp is removed at
// start); after 2, the start finds the newest .meta, cuts the block file to
// what it covers and removes the older one.
//
// The files must be closed (w.data, w.meta nil). Caller holds w.mu.
func (w *rbwReplica) restamp(gs cairn.GenStamp, newLen int64) error {
	s := w.s
	data, err := os.Open(w.dataPath())
	if err != nil {
		return err
	}
	defer data.Close()
	meta, err := os.Open(w.metaPath())
	if err != nil {
		return err
	}
	defer meta.Close()
	hb := make([]byte, checksum.HeaderSize)
	if _, err := io.ReadFull(meta, hb); err != nil {
		return fmt.Errorf("read meta header: %w", err)
	}
	h, err := checksum.ParseHeader(hb)
	if err != nil {
		return err
	}
	w.chunk = int(h.ChunkSize)
	st, err := data.Stat()
	if err != nil {
		return err
	}
	mst, err := meta.Stat()
	if err != nil {
		return err
	}
	size := st.Size()
	if newLen < 0 || newLen > size {
		return cairn.E("blockd.restamp", cairn.KindInvalid, w.b.String(), fmt.Sprintf("replica holds %d bytes, %d must be kept", size, newLen))
	}
	chunk := int64(w.chunk)
	n := checksum.NumChunks(newLen, w.chunk)
	sums, err := checksum.ReadSums(meta, 0, n)
	if err != nil {
		return err
	}
	if tail := newLen % chunk; tail != 0 {
		// Verify the chunk that will become the last, as it is on disk,
		// then recompute its checksum over the bytes kept.
		c := n - 1
		start := c * chunk
		buf := make([]byte, min(start+chunk, size)-start)
		if _, err := data.ReadAt(buf, start); err != nil {
			return fmt.Errorf("read chunk %d: %w", c, err)
		}
		if err := checksum.Verify(uint64(w.b.ID), w.chunk, c, buf, sums[c:]); err != nil {
			return err
		}
		sums[c] = checksum.Sum(buf[:tail])
	}
	if gs == w.b.GenStamp && newLen == size && mst.Size() == checksum.SumOffset(n) {
		w.b.Len = newLen
		return nil // nothing changes
	}
	dir := w.dir()
	oldMeta := w.metaPath()
	newMeta := filepath.Join(dir, checksum.MetaFileName(uint64(w.b.ID), uint64(gs)))
	tmp := newMeta + ".tmp"
	content := checksum.EncodeSums(checksum.NewHeader(uint64(w.b.ID), uint64(gs), w.chunk).Marshal(), sums)
	err = s.writeMeta(tmp, content)
	if errors.Is(err, syscall.ENOSPC) && s.useReserve(int64(len(content))) {
		err = s.writeMeta(tmp, content)
	}
	if err == nil {
		err = s.fs.Rename(tmp, newMeta)
	}
	if err != nil {
		_ = removeIfExists(s.fs, tmp)
		return err
	}
	if err := s.fs.SyncDir(dir); err != nil {
		return err
	}
	w.b.GenStamp = gs
	if newLen < size {
		df, err := s.fs.OpenFile(w.dataPath(), os.O_WRONLY, 0)
		if err != nil {
			return err
		}
		err = s.fs.Truncate(df, newLen)
		if err == nil {
			err = s.fs.Sync(df)
		}
		if cerr := df.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return err
		}
	}
	w.b.Len = newLen
	if oldMeta != newMeta {
		if err := removeIfExists(s.fs, oldMeta); err != nil {
			return err
		}
		if err := s.fs.SyncDir(dir); err != nil {
			return err
		}
	}
	return nil
}
