package blockd

import (
	"errors"
	"os"
	"path/filepath"
	"syscall"

	"go.uber.org/zap"
	"golang.org/x/sys/unix"

	"cairn"
)

// The metadata reserve. Ending a replica — a pipeline's recovery, the
// close of a writer whose disk filled, a block recovery, an append —
// writes a new .meta before it removes the old one, so that a crash
// between the two loses nothing (reopen.go, restamp). On a disk filled to
// the last byte by the replica's own data that write would fail, and the
// acknowledged bytes could never be finalized. So each data directory
// keeps current/reserve, reserveSize bytes allocated at start: a restamp
// that meets ENOSPC gives the reserve back to the filesystem and tries
// again, and the disk check allocates it anew once there is room. A
// restamp takes only what its .meta needs (rounded up to 64 KiB), so one
// reserve ends many replicas.

// reserveName is the reserve file in current/.
const reserveName = "reserve"

// reserveSize holds the new .meta of some thirty 64 MiB blocks.
const reserveSize = 1 << 20

func (s *Store) reservePath() string { return filepath.Join(s.dir, "current", reserveName) }

// ensureReserve allocates the reserve if it is not whole; a disk without
// room for it is left as it is (the reserve comes back at a later check).
func (s *Store) ensureReserve() {
	s.reserveMu.Lock()
	defer s.reserveMu.Unlock()
	if st, err := os.Stat(s.reservePath()); err == nil && st.Size() >= reserveSize {
		return
	}
	f, err := os.OpenFile(s.reservePath(), os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		s.log.Warn("metadata reserve not allocated", zap.String("dir", s.dir), zap.Error(err))
		return
	}
	defer f.Close()
	err = unix.Fallocate(int(f.Fd()), 0, 0, reserveSize)
	if errors.Is(err, syscall.EOPNOTSUPP) {
		err = f.Truncate(0)
		if err == nil {
			_, err = f.Write(make([]byte, reserveSize))
		}
	}
	if err == nil {
		err = f.Sync()
	}
	if err != nil {
		_ = f.Truncate(0)
		if !errors.Is(err, syscall.ENOSPC) {
			s.log.Warn("metadata reserve not allocated", zap.String("dir", s.dir), zap.Error(err))
		}
	}
}

// useReserve gives n bytes of the reserve (rounded up to 64 KiB) back to
// the filesystem, so a write of metadata that met a full disk can be
// tried again; it reports whether there was a reserve to give.
func (s *Store) useReserve(n int64) bool {
	s.reserveMu.Lock()
	defer s.reserveMu.Unlock()
	st, err := os.Stat(s.reservePath())
	if err != nil || st.Size() == 0 {
		return false
	}
	const unit = 64 << 10
	n = (n + unit - 1) / unit * unit
	if err := os.Truncate(s.reservePath(), max(0, st.Size()-n)); err != nil {
		s.log.Warn("metadata reserve not released", zap.String("dir", s.dir), zap.Error(err))
		return false
	}
	s.log.Info("full disk: the metadata reserve was used to end a replica", zap.String("dir", s.dir))
	return true
}

// noSpace is an error's kind with a full disk (ENOSPC) said as KindNoSpace,
// so the peer reports ENOSPC and not an I/O error.
func noSpace(err error) cairn.Kind {
	if errors.Is(err, syscall.ENOSPC) {
		return cairn.KindNoSpace
	}
	return cairn.KindOf(err)
}
