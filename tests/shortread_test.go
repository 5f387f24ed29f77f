package tests

import (
	"bytes"
	"cairn"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"cairn/tests/cluster"
)

// TestReadAcrossLostBlock reads through a real mount from 4 KiB before a
// block boundary into the next block, after every blockd holding that
// next block was killed with SIGKILL. The mount must answer EIO (or every
// byte, were another replica to serve them), never a short count, which
// the kernel takes for the end of the file: an O_DIRECT read, which the
// kernel hands to the mount as it is, fails with EIO; a program reading on
// through the page cache, as cat does, ends with EIO, never at an early
// end of file; and the file still shows its whole size.
func TestReadAcrossLostBlock(t *testing.T) {
	RequireFUSE(t)
	const blockSize = 1 << 20
	c := cluster.Start(t, cluster.Config{Blockds: 3, BlockSize: blockSize, Replication: 1})
	cl := dial(t, c)
	ctx := context.Background()

	// Placement is random: write files until one has its second block on
	// blockds that do not hold its first (two in three do).
	var path string
	var seed uint64
	var victims []int
	for i := 0; i < 20 && path == ""; i++ {
		p := fmt.Sprintf("/straddle%d", i)
		write(t, cl, p, uint64(500+i), 2*blockSize)
		fb, err := cl.NS.BlockLocations(ctx, cairn.FileRef{Path: p})
		if err != nil {
			t.Fatal(err)
		}
		if len(fb.Blocks) != 2 {
			t.Fatalf("%s: %d blocks, want 2", p, len(fb.Blocks))
		}
		first := map[string]bool{}
		for _, n := range fb.Blocks[0].Locations {
			first[n.StorageID] = true
		}
		ok := len(fb.Blocks[1].Locations) > 0
		var second []int
		for _, n := range fb.Blocks[1].Locations {
			ok = ok && !first[n.StorageID]
			second = append(second, c.BlockdIndex(n.StorageID))
		}
		if ok {
			path, seed, victims = p, uint64(500+i), second
		}
	}
	if path == "" {
		t.Fatal("20 files, each with both blocks on one blockd")
	}
	want := make([]byte, 2*blockSize)
	_, _ = newStream(seed).Read(want)

	mnt := c.Mount(t)
	file := filepath.Join(mnt, path)
	// Opened before the kill, so the reads below are of a file the mount
	// has open, as a program's would be.
	direct, err := os.OpenFile(file, os.O_RDONLY|syscall.O_DIRECT, 0)
	if err != nil {
		t.Fatalf("open with O_DIRECT: %v", err)
	}
	defer direct.Close()
	cached, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer cached.Close()
	for _, i := range victims {
		c.KillBlockd(t, i)
	}
	t.Logf("%s: blockds %v, holding its second block, killed", path, victims)
	const off = blockSize - 4096

	// Through the page cache, as cat reads: read(2) may return the good
	// bytes before the lost block, but the next read must fail; a
	// program must never reach the end of the file early.
	if _, err := cached.Seek(off, 0); err != nil {
		t.Fatal(err)
	}
	total := 0
	chunk := make([]byte, 64<<10)
	for {
		n, err := cached.Read(chunk)
		if n > 0 && !bytes.Equal(chunk[:n], want[off+total:off+total+n]) {
			t.Errorf("read at %d: the bytes differ from those written", off+total)
		}
		total += n
		if err != nil {
			if !errors.Is(err, syscall.EIO) {
				t.Errorf("reading on from %d: %v after %d bytes, want EIO: the file has %d bytes from there",
					off, err, total, 2*blockSize-off)
			} else {
				t.Logf("reading on from %d: %d good bytes, then %v, as it should", off, total, err)
			}
			break
		}
		if total > 2*blockSize {
			t.Fatalf("read %d bytes from %d of a file of %d", total, off, 2*blockSize)
		}
	}

	// O_DIRECT: the kernel passes the read to the mount as it is and
	// returns what the mount answers.
	buf, err := unix.Mmap(-1, 0, 64<<10, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_ANON|unix.MAP_PRIVATE)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Munmap(buf)
	n, err := unix.Pread(int(direct.Fd()), buf, off)
	switch {
	case err != nil && !errors.Is(err, syscall.EIO):
		t.Errorf("O_DIRECT pread of %d bytes at %d: %v, want EIO", len(buf), off, err)
	case err != nil:
		t.Logf("O_DIRECT pread across the boundary: %v, as it should", err)
	case n != len(buf):
		t.Errorf("O_DIRECT pread of %d bytes at %d, %d bytes before the end of the file: %d bytes and no error; the mount answered a short count before the end",
			len(buf), off, 2*blockSize-off, n)
	case !bytes.Equal(buf, want[off:off+len(buf)]):
		t.Errorf("O_DIRECT pread at %d: the bytes differ from those written", off)
	}

	st, err := cached.Stat()
	if err != nil {
		t.Fatal(err)
	}
	if st.Size() != 2*blockSize {
		t.Errorf("after the failed reads the file shows %d bytes, want %d", st.Size(), 2*blockSize)
	}
}
