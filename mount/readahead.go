package mount

import (
	"fmt"
	"os"
	"strconv"
	"syscall"

	"go.uber.org/zap"
	"golang.org/x/sys/unix"
)

// DefaultReadAheadKB is the read-ahead a mount asks the kernel for. The
// kernel starts a FUSE mount at 128 KiB, which it reads in requests of
// 128 KiB, one or two in flight: a fifth of what the mount can serve. With
// 4 MiB it sends requests of up to 1 MiB (MaxWrite), several in flight,
// and the client's stream from the blockd keeps ahead of them.
const DefaultReadAheadKB = 4096

// setReadAhead sets the read-ahead of the mount at mountpoint: the
// read_ahead_kb of its backing device info, named by its device number.
// The kernel lets only root write it; otherwise the mount keeps the
// kernel's default, and says so.
func setReadAhead(mountpoint string, kb int, log *zap.Logger) {
	if kb < 0 {
		return
	}
	if kb == 0 {
		kb = DefaultReadAheadKB
	}
	var st syscall.Stat_t
	if err := syscall.Stat(mountpoint, &st); err != nil {
		log.Info("read-ahead not set", zap.String("mountpoint", mountpoint), zap.Error(err))
		return
	}
	dev := uint64(st.Dev)
	path := fmt.Sprintf("/sys/class/bdi/%d:%d/read_ahead_kb", unix.Major(dev), unix.Minor(dev))
	if err := os.WriteFile(path, []byte(strconv.Itoa(kb)), 0); err != nil {
		log.Info("read-ahead not set; the kernel's default stays", zap.String("mountpoint", mountpoint), zap.String("file", path), zap.Error(err))
		return
	}
	log.Debug("read-ahead set", zap.String("mountpoint", mountpoint), zap.Int("kib", kb))
}
