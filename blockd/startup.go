package blockd

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"go.uber.org/zap"

	"cairn"
	"cairn/checksum"
)

// halves is what a start finds of one block in one directory (rbw/ or its
// finalized/ leaf): the block file or not, and the stamps of its .meta
// files, ascending.
type halves struct {
	data  bool
	metas []uint64
}

func (h *halves) newest() uint64 {
	if h == nil || len(h.metas) == 0 {
		return 0
	}
	return h.metas[len(h.metas)-1]
}

func (h *halves) pair() bool { return h != nil && h.data && len(h.metas) > 0 }

// load builds the replica maps from what is on disk, completing or undoing
// whatever a crash interrupted. Each rule is in docs/FORMAT.md ("Replica
// transitions"); every step it takes is itself safe to interrupt, since
// the next start applies the same rules to what it left.
func (s *Store) load() error {
	s.removeTemps()
	fin := map[uint64]*halves{}
	rbw := map[uint64]*halves{}
	add := func(m map[uint64]*halves, name string) bool {
		if id, gs, ok := checksum.ParseMetaFileName(name); ok {
			h := m[id]
			if h == nil {
				h = &halves{}
				m[id] = h
			}
			h.metas = append(h.metas, gs)
			return true
		}
		if id, ok := parseBlockFileName(name); ok {
			h := m[id]
			if h == nil {
				h = &halves{}
				m[id] = h
			}
			h.data = true
			return true
		}
		return false
	}
	root := filepath.Join(s.dir, "current", "finalized")
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			return nil
		}
		if id, ok := blockOf(d.Name()); !ok || filepath.Dir(path) != s.finalizedDir(cairn.BlockID(id)) {
			s.log.Warn("ignoring a file that is not a replica's in finalized/", zap.String("file", path))
			return nil
		}
		add(fin, d.Name())
		return nil
	})
	if err != nil {
		return fmt.Errorf("blockd store: scan %s: %w", root, err)
	}
	ents, err := os.ReadDir(s.rbwDir())
	if err != nil {
		return fmt.Errorf("blockd store: scan %s: %w", s.rbwDir(), err)
	}
	for _, e := range ents {
		if !add(rbw, e.Name()) {
			path := filepath.Join(s.rbwDir(), e.Name())
			s.log.Warn("removing a leftover file in rbw", zap.String("file", path))
			_ = removeIfExists(s.fs, path)
		}
	}
	ids := make([]uint64, 0, len(fin)+len(rbw))
	for id := range fin {
		ids = append(ids, id)
	}
	for id := range rbw {
		if fin[id] == nil {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	for _, id := range ids {
		for _, h := range []*halves{fin[id], rbw[id]} {
			if h != nil {
				slices.Sort(h.metas)
			}
		}
		if err := s.settle(cairn.BlockID(id), fin[id], rbw[id]); err != nil {
			return fmt.Errorf("blockd store: block %d: %w", id, err)
		}
	}
	return nil
}

// blockOf returns the block ID a replica file's name carries.
func blockOf(name string) (uint64, bool) {
	if id, _, ok := checksum.ParseMetaFileName(name); ok {
		return id, true
	}
	return parseBlockFileName(name)
}

// settle decides what the files of block id found in its finalized/ leaf
// (f) and in rbw/ (r) are, repairs them, and records the replica.
func (s *Store) settle(id cairn.BlockID, f, r *halves) error {
	finDir, rbwDir := s.finalizedDir(id), s.rbwDir()
	switch {
	case f.pair() && r.pair() && r.newest() > f.newest():
		// Two whole replicas: the newer one, being written, wins.
		s.log.Warn("a finalized replica beside a newer one in rbw; removing the finalized one", zap.Uint64("block", uint64(id)))
		if err := s.removeHalves(finDir, id, f); err != nil {
			return err
		}
		return s.keepRWR(id, r)
	case f.pair():
		if err := s.removeHalves(rbwDir, id, r); err != nil {
			return err
		}
		return s.keepFinalized(id, f)
	case f != nil && f.data && r != nil && !r.data && len(r.metas) > 0:
		// A move between the directories cut short: finalize moved the
		// block file and not yet the .meta, or a reopen for append moved
		// the .meta and not yet the block file. Either way the replica is
		// complete and synced: finish it in finalized/.
		gs := r.newest()
		s.log.Warn("completing a replica whose move was interrupted: its .meta joins its block file in finalized/", zap.Uint64("block", uint64(id)), zap.Uint64("gen_stamp", gs))
		from := filepath.Join(rbwDir, checksum.MetaFileName(uint64(id), gs))
		if err := s.fs.Rename(from, filepath.Join(finDir, checksum.MetaFileName(uint64(id), gs))); err != nil {
			return err
		}
		if err := errors.Join(s.fs.SyncDir(finDir), s.fs.SyncDir(rbwDir)); err != nil {
			return err
		}
		r.metas = r.metas[:len(r.metas)-1]
		f.metas = append(f.metas, gs)
		slices.Sort(f.metas)
		if err := s.removeHalves(rbwDir, id, r); err != nil {
			return err
		}
		return s.keepFinalized(id, f)
	case f != nil && !f.data && len(f.metas) > 0 && r != nil && r.data && len(r.metas) == 0:
		// The other order of the same cut (a .meta moved into finalized/
		// before its block file): the block file follows it.
		s.log.Warn("completing a replica whose move was interrupted: its block file joins its .meta in finalized/", zap.Uint64("block", uint64(id)))
		if err := s.fs.Rename(filepath.Join(rbwDir, checksum.BlockFileName(uint64(id))), filepath.Join(finDir, checksum.BlockFileName(uint64(id)))); err != nil {
			return err
		}
		if err := errors.Join(s.fs.SyncDir(finDir), s.fs.SyncDir(rbwDir)); err != nil {
			return err
		}
		f.data = true
		return s.keepFinalized(id, f)
	case r.pair():
		if f != nil {
			if f.data {
				s.log.Warn("a block file without .meta in finalized/ beside a replica in rbw; left alone", zap.Uint64("block", uint64(id)))
				f.data = false
			}
			if err := s.removeHalves(finDir, id, f); err != nil {
				return err
			}
		}
		return s.keepRWR(id, r)
	}
	// Halves without their partner: a creation or deletion cut short.
	if f != nil && f.data {
		s.log.Warn("a block file without .meta in finalized/; left alone", zap.Uint64("block", uint64(id)), zap.String("dir", finDir))
		f.data = false
	}
	if r != nil && r.data {
		s.log.Warn("removing a block file without meta in rbw", zap.Uint64("block", uint64(id)))
	}
	if r != nil && len(r.metas) > 0 || f != nil && len(f.metas) > 0 {
		s.log.Warn("removing a meta without block file", zap.Uint64("block", uint64(id)))
	}
	return errors.Join(s.removeHalves(rbwDir, id, r), s.removeHalves(finDir, id, f))
}

// removeHalves removes what h lists of block id in dir: the block file
// first, then the .meta files.
func (s *Store) removeHalves(dir string, id cairn.BlockID, h *halves) error {
	if h == nil {
		return nil
	}
	if h.data {
		if err := removeIfExists(s.fs, filepath.Join(dir, checksum.BlockFileName(uint64(id)))); err != nil {
			return err
		}
	}
	for _, gs := range h.metas {
		if err := removeIfExists(s.fs, filepath.Join(dir, checksum.MetaFileName(uint64(id), gs))); err != nil {
			return err
		}
	}
	if h.data || len(h.metas) > 0 {
		return s.fs.SyncDir(dir)
	}
	return nil
}

// keepFinalized records the finalized replica of id. Several .meta files
// beside it mean a recovery's restamp was cut short: the newest wins, the
// block file is cut to what it covers, and the older ones go.
func (s *Store) keepFinalized(id cairn.BlockID, f *halves) error {
	dir := s.finalizedDir(id)
	gs := f.newest()
	b := cairn.Block{ID: id, GenStamp: cairn.GenStamp(gs)}
	if len(f.metas) > 1 {
		n, _, err := cutToVerified(s.fs, s.BlockPath(b), s.MetaPath(b), id)
		if err != nil {
			s.log.Error("finalized replica with several .meta files is unreadable; keeping it for the scanner", zap.Stringer("block", b), zap.Error(err))
		} else {
			s.log.Warn("completing an interrupted restamp of a finalized replica", zap.Stringer("block", b), zap.Int64("len", n))
		}
		if err := s.removeHalves(dir, id, &halves{metas: f.metas[:len(f.metas)-1]}); err != nil {
			return err
		}
	}
	fi, err := os.Stat(s.BlockPath(b))
	if err != nil {
		return err
	}
	mi, err := os.Stat(s.MetaPath(b))
	if err != nil {
		return err
	}
	r := replica{gs: b.GenStamp, len: fi.Size(), metaLen: mi.Size()}
	s.replicas[id] = r
	s.used += r.disk()
	return nil
}

// keepRWR records the replica of id left in rbw/ by an earlier run, waiting
// to be recovered: the newest .meta wins, the block file and .meta are cut
// back to what verifies, and older .meta files go. A replica whose .meta
// cannot be read (a creation cut short before its header was written) is
// removed.
func (s *Store) keepRWR(id cairn.BlockID, r *halves) error {
	b := cairn.Block{ID: id, GenStamp: cairn.GenStamp(r.newest())}
	n, chunk, err := cutToVerified(s.fs, s.dataPathRBW(id), s.metaPathRBW(b), id)
	if err != nil {
		if !checksum.IsCorruption(err) {
			return err
		}
		s.log.Error("replica left in rbw is unreadable; removing it", zap.Stringer("block", b), zap.Error(err))
		return s.removeHalves(s.rbwDir(), id, r)
	}
	if err := s.removeHalves(s.rbwDir(), id, &halves{metas: r.metas[:len(r.metas)-1]}); err != nil {
		return err
	}
	b.Len = n
	s.rbw[id] = &rbwReplica{s: s, b: b, chunk: chunk, state: cairn.ReplicaRWR}
	s.log.Info("replica left being written recovered", zap.Stringer("block", b), zap.Int64("len", n))
	return nil
}

// cutToVerified verifies a replica chunk by chunk and truncates the block
// file and the .meta after the last chunk that matches its checksum (or
// the longest prefix of the last chunk that matches). It returns the
// length kept and the chunk size. A .meta whose header cannot be read is a
// corruption error.
func cutToVerified(fsys fileSystem, dataPath, metaPath string, id cairn.BlockID) (int64, int, error) {
	data, err := fsys.OpenFile(dataPath, os.O_RDWR, 0)
	if err != nil {
		return 0, 0, err
	}
	defer data.Close()
	meta, err := fsys.OpenFile(metaPath, os.O_RDWR, 0)
	if err != nil {
		return 0, 0, err
	}
	defer meta.Close()
	hb := make([]byte, checksum.HeaderSize)
	n, err := io.ReadFull(meta, hb)
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
		return 0, 0, err
	}
	h, err := checksum.ParseHeader(hb[:n])
	if err != nil {
		return 0, 0, checksum.MarkCorruption(err)
	}
	if h.BlockID != uint64(id) {
		return 0, 0, checksum.MarkCorruption(fmt.Errorf("meta header names block %d", h.BlockID))
	}
	chunk := int(h.ChunkSize)
	st, err := data.Stat()
	if err != nil {
		return 0, 0, err
	}
	mst, err := meta.Stat()
	if err != nil {
		return 0, 0, err
	}
	sumsOnDisk := (mst.Size() - checksum.HeaderSize) / checksum.SumSize
	chunks := min(checksum.NumChunks(st.Size(), chunk), sumsOnDisk)
	buf := make([]byte, chunk)
	var good int64
	for c := int64(0); c < chunks; c++ {
		start := c * int64(chunk)
		k, err := data.ReadAt(buf, start)
		if err != nil && !errors.Is(err, io.EOF) {
			return 0, 0, err
		}
		sums, err := checksum.ReadSums(meta, c, 1)
		if err != nil {
			break
		}
		if checksum.Verify(uint64(id), chunk, c, buf[:k], sums) != nil {
			// The last checksum may cover a partial chunk (an hflush, or a
			// restamp that had not yet cut the block file) followed by
			// bytes it does not cover: keep the longest prefix that matches.
			if c == chunks-1 {
				if n := matchingPrefix(buf[:k], sums[0]); n > 0 {
					good = start + int64(n)
				}
			}
			break
		}
		good = start + int64(k)
		if k < chunk {
			break
		}
	}
	if good != st.Size() || checksum.SumOffset(checksum.NumChunks(good, chunk)) != mst.Size() {
		// The block file first: a crash between the two leaves extra
		// checksums, which the next start cuts the same way.
		if err := fsys.Truncate(data, good); err != nil {
			return 0, 0, err
		}
		if err := fsys.Sync(data); err != nil {
			return 0, 0, err
		}
		if err := fsys.Truncate(meta, checksum.SumOffset(checksum.NumChunks(good, chunk))); err != nil {
			return 0, 0, err
		}
		if err := fsys.Sync(meta); err != nil {
			return 0, 0, err
		}
	}
	return good, chunk, nil
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
		if err == nil && !d.IsDir() && strings.HasSuffix(path, ".tmp") {
			s.log.Info("removing a leftover temporary file", zap.String("file", path))
			_ = removeIfExists(s.fs, path)
		}
		return nil
	})
}
