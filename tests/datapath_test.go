package tests

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"cairn"
	"cairn/client"
	"cairn/tests/cluster"
	"go.uber.org/zap/zaptest"
)

// stream is a reproducible stream of pseudo-random bytes: the test writes
// it and compares what it reads back without keeping it in memory.
type stream struct{ r *rand.ChaCha8 }

func newStream(seed uint64) *stream {
	var s [32]byte
	for i := range s {
		s[i] = byte(seed >> (8 * (i % 8)))
	}
	return &stream{r: rand.NewChaCha8(s)}
}

func (s *stream) Read(p []byte) (int, error) { return s.r.Read(p) }

func dial(t *testing.T, c *cluster.Cluster) *client.Client {
	t.Helper()
	cl, err := client.Dial(c.MetadAddr(), client.Options{Creds: c.ClientCreds(), Logger: zaptest.NewLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cl.Close() })
	return cl
}

// sameAs reads the whole file and compares it with the stream of seed.
func sameAs(t *testing.T, cl *client.Client, path string, seed uint64, size int64) {
	t.Helper()
	r, err := cl.Open(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if r.Size() != size {
		t.Fatalf("%s: size %d, want %d", path, r.Size(), size)
	}
	want := newStream(seed)
	got := io.NewSectionReader(r, 0, size)
	a, b := make([]byte, 1<<20), make([]byte, 1<<20)
	for off := int64(0); off < size; {
		n := int(min(int64(len(a)), size-off))
		if _, err := io.ReadFull(got, a[:n]); err != nil {
			t.Fatalf("%s: read at %d: %v", path, off, err)
		}
		_, _ = want.Read(b[:n])
		if !bytes.Equal(a[:n], b[:n]) {
			t.Fatalf("%s: bytes differ in the MiB at %d", path, off)
		}
		off += int64(n)
	}
}

// TestWriteSurvivesBlockdKill writes 200 MiB with replication 3 and kills
// one of the three blockds with SIGKILL halfway: the write completes
// without an error, the file reads back equal, and fsck finds blocks
// under-replicated but none missing.
func TestWriteSurvivesBlockdKill(t *testing.T) {
	const size = 200 << 20
	c := cluster.Start(t, cluster.Config{Blockds: 3, BlockSize: 4 << 20, Replication: 3, DeadAfter: 3 * time.Second})
	cl := dial(t, c)
	w, err := cl.Create(context.Background(), "/big", 0o644)
	if err != nil {
		t.Fatal(err)
	}
	src := newStream(1)
	buf := make([]byte, 256<<10)
	for written := 0; written < size; written += len(buf) {
		if written == size/2 {
			c.KillBlockd(t, 1)
			t.Logf("blockd1 killed after %d MiB", written>>20)
		}
		_, _ = src.Read(buf)
		if _, err := w.Write(buf); err != nil {
			t.Fatalf("write at %d: %v", written, err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	sameAs(t, cl, "/big", 1, size)
	out, code := c.Run(t, "fsck", "/")
	if code != 0 || !strings.Contains(out, "is HEALTHY") {
		t.Fatalf("fsck exit %d, want 0 and HEALTHY:\n%s", code, out)
	}
	if strings.Contains(out, "Under-replicated blocks:\t0 ") || !strings.Contains(out, "Missing blocks:\t\t0\n") {
		t.Fatalf("fsck should show under-replicated blocks and no missing ones:\n%s", out)
	}
}

// TestCorruptReplica flips a byte in the replica a reader tries first: the
// read returns the right bytes, the replica's blockd confirms it bad and
// metad records it, and a later read does not pick it first. With three
// blockds and replication 3 there is nowhere to copy the block to, so the
// bad replica stays on its disk (the block does not have its full count of
// good replicas) and fsck names it.
func TestCorruptReplica(t *testing.T) {
	const size = 3<<20 + 777
	c := cluster.Start(t, cluster.Config{Blockds: 3, BlockSize: 1 << 20, Replication: 3})
	cl := dial(t, c)
	ctx := context.Background()
	write(t, cl, "/f", 7, size)
	r, err := cl.Open(ctx, "/f")
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	blk := r.Blocks()[1]
	victim := blk.Locations[0]
	i := c.BlockdIndex(victim.StorageID)
	if i < 0 {
		t.Fatalf("no blockd with storage ID %s", victim.StorageID)
	}
	path := filepath.Join(cluster.FinalizedDir(c.BlockdDataDirs()[i], uint64(blk.ID)), fmt.Sprintf("blk_%d", blk.ID))
	flipAt(t, path, 12345)

	sameAs(t, cl, "/f", 7, size) // a new reader; it may or may not try the victim first
	got := make([]byte, blk.Len)
	if n, err := r.ReadAt(got, blk.Offset); n != len(got) || (err != nil && err != io.EOF) {
		t.Fatalf("read of the corrupt block: %d, %v", n, err)
	}
	want := make([]byte, size)
	_, _ = newStream(7).Read(want)
	if !bytes.Equal(got, want[blk.Offset:blk.Offset+blk.Len]) {
		t.Fatal("read through a corrupt replica returned wrong bytes")
	}
	// The client's report is confirmed by the replica's own blockd
	// (its scanner re-reads it) before metad counts it.
	var after cairn.LocatedBlock
	deadline := time.Now().Add(time.Minute)
	for {
		fb, err := cl.NS.BlockLocations(ctx, cairn.FileRef{Path: "/f"})
		if err != nil {
			t.Fatal(err)
		}
		if after = fb.Blocks[1]; after.Corrupt == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("metad counts %d corrupt replicas of %s a minute after the read, want 1", after.Corrupt, after.Block)
		}
		time.Sleep(100 * time.Millisecond)
	}
	for _, n := range after.Locations {
		if n.StorageID == victim.StorageID {
			t.Errorf("metad still offers the corrupt replica on %s", n.DataAddr)
		}
	}
	r2, err := cl.Open(ctx, "/f")
	if err != nil {
		t.Fatal(err)
	}
	defer r2.Close()
	if first := r2.Blocks()[1].Locations[0]; first.StorageID == victim.StorageID {
		t.Errorf("a new reader tries the corrupt replica first")
	}
	out, code := c.Run(t, "fsck", "/")
	line := fmt.Sprintf("/f: bad replica of %s on %s (%s)", blk.Block, victim.DataAddr, victim.StorageID)
	if code != 0 || !strings.Contains(out, line) || !strings.Contains(out, "checksum mismatch") || !strings.Contains(out, "Under-replicated blocks:\t1 ") {
		t.Errorf("fsck: exit %d; want 0 (two good replicas are left), the block under-replicated and the line %q:\n%s", code, line, out)
	}
	if _, err := os.Stat(path); err != nil {
		t.Errorf("the bad replica was deleted while its block has 2 good replicas of 3: %v", err)
	}
}

// TestRandomReads compares 1,000 positional reads at random offsets and
// lengths with the source.
func TestRandomReads(t *testing.T) {
	const size = 5<<20 + 4321
	c := cluster.Start(t, cluster.Config{Blockds: 3, BlockSize: 1 << 20, Replication: 3})
	cl := dial(t, c)
	write(t, cl, "/r", 9, size)
	want := make([]byte, size)
	_, _ = newStream(9).Read(want)
	r, err := cl.Open(context.Background(), "/r")
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	rnd := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < 1000; i++ {
		off := rnd.Int64N(size + 10)
		n := rnd.IntN(1 << 18)
		if i%10 == 0 {
			n = rnd.IntN(2 << 20)
		}
		got := make([]byte, n)
		k, err := r.ReadAt(got, off)
		end := min(off+int64(n), size)
		if off >= size {
			end = off
		}
		if int64(k) != end-off || !bytes.Equal(got[:k], want[off:end]) {
			t.Fatalf("ReadAt(%d bytes at %d) = %d, %v: wrong bytes", n, off, k, err)
		}
		if k < n && !errors.Is(err, io.EOF) {
			t.Fatalf("short ReadAt(%d bytes at %d) = %d without io.EOF: %v", n, off, k, err)
		}
	}
}

// TestAppendAndFlush: appends continue the last partial block (a thousand
// appends of 100 bytes make one block), and hflush makes bytes visible to a
// new reader before close.
func TestAppendAndFlush(t *testing.T) {
	c := cluster.Start(t, cluster.Config{Blockds: 3, BlockSize: 1 << 20, Replication: 3})
	cl := dial(t, c)
	ctx := context.Background()
	w, err := cl.Create(ctx, "/log", 0o644)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	var all bytes.Buffer
	for i := 0; i < 1000; i++ {
		line := []byte(fmt.Sprintf("%-99d\n", i))
		w, err := cl.Append(ctx, "/log")
		if err != nil {
			t.Fatalf("append %d: %v", i, err)
		}
		if _, err := w.Write(line); err != nil {
			t.Fatalf("append %d: %v", i, err)
		}
		if err := w.Close(); err != nil {
			t.Fatalf("append %d: close: %v", i, err)
		}
		all.Write(line)
	}
	// close waits for one replica to be reported; the others follow.
	var fb cairn.FileBlocks
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if fb, err = cl.NS.BlockLocations(ctx, cairn.FileRef{Path: "/log"}); err != nil {
			t.Fatal(err)
		}
		if len(fb.Blocks) != 1 || len(fb.Blocks[0].Locations) == 3 || time.Now().After(deadline) {
			break
		}
	}
	if len(fb.Blocks) != 1 || fb.Size != 100000 || len(fb.Blocks[0].Locations) != 3 {
		t.Fatalf("after 1000 appends: %d blocks, %d bytes, %d replicas; want 1, 100000, 3", len(fb.Blocks), fb.Size, len(fb.Blocks[0].Locations))
	}
	checkContent(t, cl, "/log", all.Bytes())

	// hflush: visible before close, to a reader opened after it.
	w, err = cl.Append(ctx, "/log")
	if err != nil {
		t.Fatal(err)
	}
	more := bytes.Repeat([]byte("flushed\n"), 5000)
	if _, err := w.Write(more); err != nil {
		t.Fatal(err)
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	all.Write(more)
	checkContent(t, cl, "/log", all.Bytes())
	if _, err := w.Write([]byte("tail\n")); err != nil {
		t.Fatal(err)
	}
	if err := w.Sync(); err != nil {
		t.Fatal(err)
	}
	all.WriteString("tail\n")
	checkContent(t, cl, "/log", all.Bytes())
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	checkContent(t, cl, "/log", all.Bytes())
}

// TestTailFollowsAppends runs tail -f on a file in the mount while another
// process appends to it with >>.
func TestTailFollowsAppends(t *testing.T) {
	RequireFUSE(t)
	c := cluster.Start(t, cluster.Config{Blockds: 3, BlockSize: 1 << 20, Replication: 3})
	mnt := c.Mount(t)
	f := filepath.Join(mnt, "follow.log")
	run(t, "sh", "-c", "echo start > "+f)
	var out lockedBuffer
	tail := exec.Command("tail", "-n", "+1", "-s", "0.1", "-f", f)
	tail.Stdout = &out
	if err := tail.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tail.Process.Kill(); _ = tail.Wait() })
	var want strings.Builder
	want.WriteString("start\n")
	for i := 0; i < 20; i++ {
		line := fmt.Sprintf("line %d", i)
		run(t, "sh", "-c", "echo '"+line+"' >> "+f)
		want.WriteString(line + "\n")
	}
	deadline := time.Now().Add(30 * time.Second)
	for out.String() != want.String() {
		if time.Now().After(deadline) {
			t.Fatalf("tail -f shows %q, want %q", out.String(), want.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func write(t *testing.T, cl *client.Client, path string, seed uint64, size int) {
	t.Helper()
	w, err := cl.Create(context.Background(), path, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, size)
	_, _ = newStream(seed).Read(buf)
	if _, err := w.Write(buf); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
}

func checkContent(t *testing.T, cl *client.Client, path string, want []byte) {
	t.Helper()
	r, err := cl.Open(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	got, err := io.ReadAll(io.NewSectionReader(r, 0, r.Size()))
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("%s: read %d bytes (%v), want %d equal bytes", path, len(got), err, len(want))
	}
}

// lockedBuffer collects a process's output while the test reads it.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// TestPipelineAddsNode kills two of the three blockds of a pipeline while a
// block is being written: with one left, the writer asks metad for another
// blockd, has the survivor copy what was acknowledged to it, and goes on;
// the file reads back equal.
func TestPipelineAddsNode(t *testing.T) {
	const size = 24 << 20
	c := cluster.Start(t, cluster.Config{Blockds: 5, BlockSize: 16 << 20, Replication: 3})
	cl := dial(t, c)
	ctx := context.Background()
	w, err := cl.Create(ctx, "/f", 0o644)
	if err != nil {
		t.Fatal(err)
	}
	src := newStream(3)
	buf := make([]byte, 1<<20)
	for written := 0; written < size; written += len(buf) {
		if written == 6<<20 {
			if err := w.Flush(); err != nil { // metad now names the pipeline's blockds
				t.Fatal(err)
			}
			fb, err := cl.NS.BlockLocations(ctx, cairn.FileRef{Path: "/f"})
			if err != nil {
				t.Fatal(err)
			}
			pipe := fb.Blocks[len(fb.Blocks)-1].Locations
			if len(pipe) != 3 {
				t.Fatalf("pipeline of %d blockds, want 3", len(pipe))
			}
			for _, n := range pipe[:2] {
				c.KillBlockd(t, c.BlockdIndex(n.StorageID))
			}
			t.Logf("killed two of the pipeline; %s survives", pipe[2].DataAddr)
		}
		_, _ = src.Read(buf)
		if _, err := w.Write(buf); err != nil {
			t.Fatalf("write at %d: %v", written, err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	sameAs(t, cl, "/f", 3, size)
	fb, err := cl.NS.BlockLocations(ctx, cairn.FileRef{Path: "/f"})
	if err != nil {
		t.Fatal(err)
	}
	if n := len(fb.Blocks[0].Locations); n < 2 {
		t.Errorf("the block written through the failures has %d live replicas; a blockd should have been added", n)
	}
}

// TestAllReplicasGone: when every replica of a block is gone, a read fails
// with an I/O error naming the file, the block and what was tried.
func TestAllReplicasGone(t *testing.T) {
	c := cluster.Start(t, cluster.Config{Blockds: 3, BlockSize: 1 << 20, Replication: 3})
	cl := dial(t, c)
	write(t, cl, "/g", 5, 2<<20)
	r, err := cl.Open(context.Background(), "/g")
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	blk := r.Blocks()[1]
	for _, dir := range c.BlockdDataDirs() {
		p := filepath.Join(cluster.FinalizedDir(dir, uint64(blk.ID)), fmt.Sprintf("blk_%d", blk.ID))
		if err := os.Remove(p); err != nil {
			t.Fatal(err)
		}
	}
	buf := make([]byte, 100)
	_, err = r.ReadAt(buf, blk.Offset+10)
	if !errors.Is(err, cairn.ErrIO) {
		t.Fatalf("read of a block with no replica left: %v, want an I/O error", err)
	}
	for _, want := range []string{"/g", blk.Block.String(), "every replica failed"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not name %q", err, want)
		}
	}
	if _, err := r.ReadAt(buf, 10); err != nil {
		t.Errorf("the other block still reads: %v", err)
	}
}

// TestReReplication: when a blockd dies, metad copies its blocks from the
// surviving replicas to another blockd until every block has its
// replication again.
func TestReReplication(t *testing.T) {
	c := cluster.Start(t, cluster.Config{Blockds: 4, BlockSize: 1 << 20, Replication: 3, DeadAfter: 2 * time.Second})
	cl := dial(t, c)
	write(t, cl, "/r", 21, 6<<20+5)
	fb, err := cl.NS.BlockLocations(context.Background(), cairn.FileRef{Path: "/r"})
	if err != nil {
		t.Fatal(err)
	}
	victim := c.BlockdIndex(fb.Blocks[0].Locations[0].StorageID)
	c.KillBlockd(t, victim)
	deadline := time.Now().Add(60 * time.Second)
	for {
		fb, err := cl.NS.BlockLocations(context.Background(), cairn.FileRef{Path: "/r"})
		if err != nil {
			t.Fatal(err)
		}
		short := 0
		for _, b := range fb.Blocks {
			good := 0
			for _, n := range b.Locations {
				if c.BlockdIndex(n.StorageID) != victim {
					good++
				}
			}
			if good < 3 {
				short++
			}
		}
		if short == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d blocks still under-replicated a minute after blockd%d died", short, victim)
		}
		time.Sleep(200 * time.Millisecond)
	}
	out, code := c.Run(t, "fsck", "/")
	if code != 0 || !strings.Contains(out, "Under-replicated blocks:\t0 ") {
		t.Fatalf("fsck after re-replication: exit %d\n%s", code, out)
	}
	sameAs(t, cl, "/r", 21, 6<<20+5)
}

// TestPipelineDropsStalledNode stops (SIGSTOP) a blockd in the middle of a
// pipeline while a block is being written: the node before it stops getting
// acks, reports it failed, and the writer goes on without it.
func TestPipelineDropsStalledNode(t *testing.T) {
	const size = 12 << 20
	c := cluster.Start(t, cluster.Config{Blockds: 3, BlockSize: 16 << 20, Replication: 3,
		BlockdArgs: []string{"--ack-timeout", "2s"}})
	cl, err := client.Dial(c.MetadAddr(), client.Options{Creds: c.ClientCreds(), Logger: zaptest.NewLogger(t), AckTimeout: 6 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx := context.Background()
	w, err := cl.Create(ctx, "/s", 0o644)
	if err != nil {
		t.Fatal(err)
	}
	src := newStream(4)
	buf := make([]byte, 1<<20)
	var stalled int
	for written := 0; written < size; written += len(buf) {
		if written == 4<<20 {
			if err := w.Flush(); err != nil {
				t.Fatal(err)
			}
			fb, err := cl.NS.BlockLocations(ctx, cairn.FileRef{Path: "/s"})
			if err != nil {
				t.Fatal(err)
			}
			mid := fb.Blocks[0].Locations[1]
			stalled = c.BlockdIndex(mid.StorageID)
			c.SignalBlockd(stalled, syscall.SIGSTOP)
			t.Cleanup(func() { c.SignalBlockd(stalled, syscall.SIGCONT) })
			t.Logf("stopped blockd%d (%s), second in the pipeline", stalled, mid.DataAddr)
		}
		_, _ = src.Read(buf)
		if _, err := w.Write(buf); err != nil {
			t.Fatalf("write at %d: %v", written, err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	c.SignalBlockd(stalled, syscall.SIGCONT)
	sameAs(t, cl, "/s", 4, size)
	fb, err := cl.NS.BlockLocations(ctx, cairn.FileRef{Path: "/s"})
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range fb.Blocks[0].Locations {
		if c.BlockdIndex(n.StorageID) == stalled {
			t.Errorf("the stalled blockd%d still holds a current replica", stalled)
		}
	}
	// The node after the stalled one was stuck waiting for it; the recovery
	// takes its replica over, so both other blockds keep theirs.
	if n := len(fb.Blocks[0].Locations); n != 2 {
		t.Errorf("the block has %d current replicas, want the 2 on the blockds that did not stall", n)
	}
}
