package blockd

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sync"
	"testing"
	"time"

	"cairn"
	"cairn/checksum"
)

// TestCleanRestartKeepsReplicaBeingWritten writes and syncs a replica in
// rbw/, releases it and closes the store as a clean shutdown does, and
// opens the store again: every synced byte reads back with its checksums.
func TestCleanRestartKeepsReplicaBeingWritten(t *testing.T) {
	dir := t.TempDir()
	s := openTestStore(t, dir)
	const chunk = 4096
	b := cairn.Block{ID: 1 << 30, GenStamp: 1001}
	data := pattern(10*chunk+1234, 3) // ends inside a chunk, as after an hflush
	w, err := s.Create(b, chunk)
	if err != nil {
		t.Fatal(err)
	}
	writeAt(t, w, 0, data, 3*chunk)
	if err := w.Sync(); err != nil {
		t.Fatal(err)
	}
	w.Release()
	s.Close()

	s = openTestStore(t, dir)
	b.Len = int64(len(data))
	if got := readAll(t, s, b); !bytes.Equal(got, data) {
		t.Fatalf("after a clean restart the replica reads %d bytes, want the %d synced", len(got), len(data))
	}
}

// TestReadersAndWriterOnOneReplica hammers one replica being written with
// readers while a writer appends to it. A read that took the replica's
// read lock twice hung for good once the writer queued between the two.
func TestReadersAndWriterOnOneReplica(t *testing.T) {
	s := openTestStore(t, t.TempDir())
	const chunk = 512
	b := cairn.Block{ID: 1<<30 + 7, GenStamp: 1001}
	w, err := s.Create(b, chunk)
	if err != nil {
		t.Fatal(err)
	}
	const writes = 3000
	data := pattern(writes*100, 9)

	done := make(chan struct{})
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for r := 0; r < 4; r++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, 4*chunk)
			for {
				select {
				case <-done:
					return
				default:
				}
				src, err := s.OpenSource(b)
				if err != nil {
					errs <- err
					return
				}
				n := src.Block().Len
				if last := n / chunk; n > 0 {
					first := max(0, last-3)
					if _, _, err := src.ReadChunks(first, last-first+1, buf); err != nil {
						src.Close()
						errs <- fmt.Errorf("read at %d of %d: %w", first, n, err)
						return
					}
				}
				src.Close()
			}
		}()
	}
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		for i := 0; i < writes; i++ {
			off := int64(i * 100)
			piece := data[off : off+100]
			if err := w.Write(off, piece, checksumsAt(off, piece, chunk)); err != nil {
				errs <- err
				break
			}
		}
		close(done)
		wg.Wait()
	}()
	watchdog(t, finished, "readers and a writer of one replica")
	w.Release()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// watchdog waits for done. If it does not come in a minute (the work takes
// a fraction of a second), the goroutines are deadlocked: it fails the test
// with every goroutine's stack instead of hanging the suite.
func watchdog(t *testing.T, done <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-done:
	case <-time.After(time.Minute):
		buf := make([]byte, 1<<20)
		buf = buf[:runtime.Stack(buf, true)]
		_, _ = os.Stderr.Write(buf)
		t.Fatalf("%s: deadlocked (goroutine stacks above)", what)
	}
}

// TestInterruptedMoveIsCompleted starts a store on the two halves a crash
// between the two renames of a move leaves: the block file in finalized/
// and its .meta in rbw/ (finalize moves the block file first; a reopen for
// append moves the .meta first), and the other way round (the order an
// earlier blockd finalized in). Either way the replica was finalized and
// synced: the start completes the move and the replica reads back whole.
func TestInterruptedMoveIsCompleted(t *testing.T) {
	for _, half := range []string{"meta", "block"} {
		t.Run(half+" in rbw", func(t *testing.T) {
			dir := t.TempDir()
			data := pattern(3000, 5)
			b := putReplica(t, dir, 1<<30+9, 1001, data, 512)
			name := checksum.BlockFileName(uint64(b.ID))
			if half == "meta" {
				name = checksum.MetaFileName(uint64(b.ID), uint64(b.GenStamp))
			}
			from := filepath.Join(dir, "current", "finalized", checksum.FinalizedSubdir(uint64(b.ID)), name)
			if err := os.MkdirAll(filepath.Join(dir, "current", "rbw"), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.Rename(from, filepath.Join(dir, "current", "rbw", name)); err != nil {
				t.Fatal(err)
			}
			s := openTestStore(t, dir)
			if have, ok := s.Lookup(b.ID); !ok || have != b {
				t.Fatalf("after the start: finalized replica %v, %v; want %v", have, ok, b)
			}
			if got := readAll(t, s, b); !bytes.Equal(got, data) {
				t.Fatalf("the replica reads %d bytes, want its %d", len(got), len(data))
			}
		})
	}
}

// TestReportListsEveryReplica: a full report carries every replica with its
// state, stamp and length — finalized, being written, left by an earlier
// run, under recovery — and a replica left in rbw/ stays in every report
// until it is recovered or deleted.
func TestReportListsEveryReplica(t *testing.T) {
	dir := t.TempDir()
	s := openTestStore(t, dir)
	blk := func(i int, gs cairn.GenStamp) cairn.Block {
		return cairn.Block{ID: cairn.BlockID(1<<30 + 100 + i), GenStamp: gs}
	}
	mk := func(b cairn.Block, n int) *ReplicaWriter {
		w, err := s.Create(b, 512)
		if err != nil {
			t.Fatal(err)
		}
		writeAt(t, w, 0, pattern(n, byte(n)), 1024)
		return w
	}
	if _, err := mk(blk(0, 1001), 1500).Finalize(); err != nil {
		t.Fatal(err)
	}
	mk(blk(1, 1002), 700).Release()
	s.Close()

	s = openTestStore(t, dir)
	w := mk(blk(2, 1003), 900)
	defer w.Release()
	if _, err := s.InitRecovery(blk(0, 1001), 1010); err != nil {
		t.Fatal(err)
	}
	want := []cairn.Replica{
		{Block: cairn.Block{ID: blk(0, 0).ID, GenStamp: 1001, Len: 1500}, State: cairn.ReplicaRUR},
		{Block: cairn.Block{ID: blk(1, 0).ID, GenStamp: 1002, Len: 700}, State: cairn.ReplicaRWR},
		{Block: cairn.Block{ID: blk(2, 0).ID, GenStamp: 1003, Len: 900}, State: cairn.ReplicaRBW},
	}
	for i := 0; i < 2; i++ {
		got := s.Report()
		slices.SortFunc(got, func(x, y cairn.Replica) int { return int(x.ID - y.ID) })
		if !slices.Equal(got, want) {
			t.Fatalf("report %d: %v, want %v", i, got, want)
		}
	}
}
