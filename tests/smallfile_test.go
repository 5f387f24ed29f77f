package tests

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"cairn/tests/cluster"
)

// metadCounters reads metad's /metrics: each counter (with its labels, as
// `cairn_metad_rpcs_total{method="Create"}`) and its value.
func metadCounters(t *testing.T, c *cluster.Cluster) map[string]int64 {
	t.Helper()
	resp, err := c.MetadGet("/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics: %s", resp.Status)
	}
	out := map[string]int64{}
	s := bufio.NewScanner(resp.Body)
	for s.Scan() {
		line := s.Text()
		if !strings.HasPrefix(line, "cairn_") {
			continue // comments, the Go runtime's and the process's metrics
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			t.Fatalf("/metrics line %q: %v", line, err)
		}
		out[line[:i]] = int64(v)
	}
	if err := s.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// counterDelta returns after-before of every counter that moved.
func counterDelta(before, after map[string]int64) map[string]int64 {
	d := map[string]int64{}
	for k, v := range after {
		if v != before[k] {
			d[k] = v - before[k]
		}
	}
	return d
}

func rpcCount(d map[string]int64, method string) int64 {
	return d[fmt.Sprintf("cairn_metad_rpcs_total{method=%q}", method)]
}

const walSyncs = "cairn_metad_wal_syncs_total"

// TestSmallFilesCostOneSyncedWriteEach counts, at metad, what files made
// through a real mount cost. An empty file created and closed costs one
// synced write, its Create: the mount creates it closed, so its close
// needs no Complete. A file of 4 KiB costs two, its Create and its
// Complete: the AddBlock between is made durable by the Complete's sync.
// (Before: two and three, with a Complete RPC for every empty file.)
func TestSmallFilesCostOneSyncedWriteEach(t *testing.T) {
	RequireFUSE(t)
	c := cluster.Start(t, cluster.Config{Blockds: 1, Replication: 1})
	mp := c.MountProcess(t)
	dir := filepath.Join(mp.Dir, "d")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	page := make([]byte, 4096)
	for i := range page {
		page[i] = byte(i)
	}
	// The first block of a metad reserves a range of block IDs in a synced
	// batch; the files counted below take theirs from the range.
	if err := os.WriteFile(filepath.Join(dir, "warm"), page, 0o644); err != nil {
		t.Fatal(err)
	}

	const n = 20
	before := metadCounters(t, c)
	for i := range n {
		f, err := os.OpenFile(filepath.Join(dir, fmt.Sprintf("empty%d", i)), os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
		if err != nil {
			t.Fatal(err)
		}
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
	}
	// close(2) returns before the kernel's RELEASE of the file is served;
	// once the mount stopped, every RELEASE was.
	mp.Stop(t)
	empty := counterDelta(before, metadCounters(t, c))
	t.Logf("%d empty files: %v", n, empty)
	if empty[walSyncs] != n || rpcCount(empty, "Create") != n || rpcCount(empty, "Complete") != 0 {
		t.Errorf("%d empty files cost %d WAL syncs, %d Creates and %d Completes; want %d, %d and 0",
			n, empty[walSyncs], rpcCount(empty, "Create"), rpcCount(empty, "Complete"), n, n)
	}

	mp = c.MountProcess(t)
	dir = filepath.Join(mp.Dir, "d")
	before = metadCounters(t, c)
	for i := range n {
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("small%d", i)), page, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	mp.Stop(t)
	small := counterDelta(before, metadCounters(t, c))
	t.Logf("%d files of 4 KiB: %v", n, small)
	if small[walSyncs] != 2*n || rpcCount(small, "AddBlock") != n || rpcCount(small, "Complete") != n {
		t.Errorf("%d files of 4 KiB cost %d WAL syncs, %d AddBlocks and %d Completes; want %d, %d and %d",
			n, small[walSyncs], rpcCount(small, "AddBlock"), rpcCount(small, "Complete"), 2*n, n, n)
	}

	cl := dial(t, c)
	ctx := context.Background()
	for i := range n {
		for _, name := range []string{fmt.Sprintf("empty%d", i), fmt.Sprintf("small%d", i)} {
			fi, err := cl.NS.Stat(ctx, "/d/"+name)
			if err != nil {
				t.Fatal(err)
			}
			if fi.Writing {
				t.Errorf("/d/%s is still open for writing after its close", name)
			}
		}
		readBack(t, cl, fmt.Sprintf("/d/small%d", i), page)
	}
}

// TestFileCreatedThroughTheMountIsClosedUntilWritten: a file the mount
// creates is complete at metad until its first write. A mount that dies
// holding it open leaves a closed, empty file, with no lease to recover
// (before, the file stayed open for writing under the dead mount's lease
// until another client took it over or the hard limit passed); another
// client may append to it meanwhile, and the creator's first write then
// fails with EBUSY rather than write over those bytes.
func TestFileCreatedThroughTheMountIsClosedUntilWritten(t *testing.T) {
	RequireFUSE(t)
	c := cluster.Start(t, cluster.Config{Blockds: 1, Replication: 1})
	cl := dial(t, c)
	ctx := context.Background()

	mp := c.MountProcess(t)
	f, err := os.OpenFile(filepath.Join(mp.Dir, "held"), os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	mp.Kill(t)
	_ = f.Close() // ENOTCONN: the mount is gone
	fi, err := cl.NS.Stat(ctx, "/held")
	if err != nil {
		t.Fatal(err)
	}
	if fi.Writing || fi.Size != 0 {
		t.Fatalf("after its mount died holding it, the file created there is %+v; want complete and empty", fi)
	}
	w, err := cl.Append(ctx, "/held")
	if err != nil {
		t.Fatalf("append to the file a dead mount created: %v", err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}

	mnt := c.Mount(t)
	g, err := os.OpenFile(filepath.Join(mnt, "raced"), os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	aw, err := cl.Append(ctx, "/raced")
	if err != nil {
		t.Fatalf("another client's append to a file created but not yet written: %v", err)
	}
	if _, err := aw.Write([]byte("theirs")); err != nil {
		t.Fatal(err)
	}
	if err := aw.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := g.Write([]byte("mine")); !errors.Is(err, syscall.EBUSY) {
		t.Fatalf("the creator's first write after another client wrote the file: %v, want EBUSY", err)
	}
	readBack(t, cl, "/raced", []byte("theirs"))
}

// TestHsyncAtABlockBoundarySyncsMetad: AddBlock is not synced by itself,
// so an hsync whose bytes all lie in finished blocks — its last write
// ended a block, and no byte of the next was written — still makes a
// synced call to metad (Fsync of that block, which records its length),
// or a crash of metad could lose the block, bytes and all. (Before, such
// an hsync made no call: metad had synced the AddBlock.)
func TestHsyncAtABlockBoundarySyncsMetad(t *testing.T) {
	const blockSize = 1 << 20
	c := cluster.Start(t, cluster.Config{Blockds: 1, Replication: 1, BlockSize: blockSize})
	cl := dial(t, c)
	ctx := context.Background()
	w, err := cl.Create(ctx, "/f", 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	data := randomBytes(blockSize, 7)
	if _, err := w.Write(data); err != nil {
		t.Fatal(err)
	}
	before := metadCounters(t, c)
	if err := w.Sync(); err != nil {
		t.Fatal(err)
	}
	d := counterDelta(before, metadCounters(t, c))
	if rpcCount(d, "Fsync") != 1 || d[walSyncs] < 1 {
		t.Fatalf("hsync after a whole block made %d Fsync calls and %d WAL syncs at metad; want 1 and at least 1", rpcCount(d, "Fsync"), d[walSyncs])
	}
	fi, err := cl.NS.Stat(ctx, "/f")
	if err != nil {
		t.Fatal(err)
	}
	if fi.Size != blockSize {
		t.Fatalf("after the hsync metad records %d bytes, want %d", fi.Size, blockSize)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	readBack(t, cl, "/f", data)
}
