package tests

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"cairn"
	"cairn/checksum"
	"cairn/tests/cluster"
)

// replicaPath is the block file of blk's finalized replica on blockd i.
func replicaPath(c *cluster.Cluster, i int, blk cairn.Block) string {
	return filepath.Join(cluster.FinalizedDir(c.BlockdDataDirs()[i], uint64(blk.ID)), checksum.BlockFileName(uint64(blk.ID)))
}

// TestClientReportsCannotHideReplicas: one client reports each of a
// healthy block's three replicas bad. metad asks each blockd to verify its
// replica, finds nothing wrong, and the file keeps its three replicas:
// readable, on disk, fsck HEALTHY.
func TestClientReportsCannotHideReplicas(t *testing.T) {
	c := cluster.Start(t, cluster.Config{Blockds: 3, BlockSize: 1 << 20, Replication: 3,
		BlockdArgs: []string{"--scan-rate", "64M"}})
	cl := dial(t, c)
	ctx := context.Background()
	write(t, cl, "/f", 3, 1<<20)
	fb, err := cl.NS.BlockLocations(ctx, cairn.FileRef{Path: "/f"})
	if err != nil {
		t.Fatal(err)
	}
	blk := fb.Blocks[0]
	for _, n := range blk.Locations {
		if err := cl.NS.ReportBadReplicas(ctx, []cairn.BadReplica{{Block: blk.Block, StorageID: n.StorageID, Reason: "checksum mismatch at chunk 0"}}); err != nil {
			t.Fatal(err)
		}
	}
	for _, n := range blk.Locations {
		c.WaitLog(t, "metad", blockdWait, "client reported a bad replica", n.StorageID, `"verify_asked": true`)
	}
	// Ten heartbeats: the verify commands go out and the scanners re-read
	// the replicas (and would report a bad one).
	time.Sleep(10 * 200 * time.Millisecond)

	sameAs(t, cl, "/f", 3, 1<<20)
	fb, err = cl.NS.BlockLocations(ctx, cairn.FileRef{Path: "/f"})
	if err != nil {
		t.Fatal(err)
	}
	if n := len(fb.Blocks[0].Locations); n != 3 || fb.Blocks[0].Corrupt != 0 {
		t.Errorf("after three clients' reports metad offers %d replicas, %d corrupt; want 3, 0", n, fb.Blocks[0].Corrupt)
	}
	for _, n := range blk.Locations {
		if _, err := os.Stat(replicaPath(c, c.BlockdIndex(n.StorageID), blk.Block)); err != nil {
			t.Errorf("replica on %s: %v", n.StorageID, err)
		}
	}
	out, code := c.Run(t, "fsck", "/")
	if code != 0 || cluster.LastLine(out) != cluster.HealthyLine("/") || !strings.Contains(out, "Average block replication:\t3.0\n") {
		t.Errorf("fsck / after three clients' reports: exit %d\n%s", code, out)
	}
}

// TestCorruptReplicaReplacedThenDeleted: a byte flipped in one replica,
// read by a client, is confirmed bad by its blockd; metad copies the block
// to the fourth blockd and only then deletes the bad replica; the file
// reads back and fsck is HEALTHY with three good replicas.
func TestCorruptReplicaReplacedThenDeleted(t *testing.T) {
	c := cluster.Start(t, cluster.Config{Blockds: 4, BlockSize: 1 << 20, Replication: 3,
		BlockdArgs: []string{"--scan-rate", "64M"}})
	cl := dial(t, c)
	ctx := context.Background()
	const size = 1 << 20
	write(t, cl, "/f", 5, size)
	r, err := cl.Open(ctx, "/f")
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	blk := r.Blocks()[0]
	victim := blk.Locations[0]
	vi := c.BlockdIndex(victim.StorageID)
	path := replicaPath(c, vi, blk.Block)
	flipAt(t, path, 4321)
	got := make([]byte, size)
	if n, err := r.ReadAt(got, 0); n != size {
		t.Fatalf("read through a corrupt replica: %d bytes, %v", n, err)
	}
	c.WaitLog(t, "metad", blockdWait, "replica reported corrupt", blk.Block.String(), victim.StorageID)

	deadline := time.Now().Add(blockdWait)
	for {
		fb, err := cl.NS.BlockLocations(ctx, cairn.FileRef{Path: "/f"})
		if err != nil {
			t.Fatal(err)
		}
		lb := fb.Blocks[0]
		onVictim := false
		for _, n := range lb.Locations {
			onVictim = onVictim || n.StorageID == victim.StorageID
		}
		_, statErr := os.Stat(path)
		if len(lb.Locations) == 3 && !onVictim && lb.Corrupt == 0 && os.IsNotExist(statErr) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%v after the bad replica was confirmed: offered %v, %d corrupt, bad replica file: %v", blockdWait, lb.Locations, lb.Corrupt, statErr)
		}
		time.Sleep(100 * time.Millisecond)
	}
	sameAs(t, cl, "/f", 5, size)
	out, code := c.Run(t, "fsck", "/")
	if code != 0 || !strings.Contains(out, "Average block replication:\t3.0\n") {
		t.Errorf("fsck / once the bad replica is replaced: exit %d\n%s", code, out)
	}
}

// TestFsckVerify: `cairn fsck / -verify` has every blockd re-read its
// replicas; a byte flipped in one replica (which nothing has read) is
// named with its block, its blockd and the reason, and the path stays
// HEALTHY as two good replicas are left. It needs the blockds' VERIFY_BLOCK.
func TestFsckVerify(t *testing.T) {
	c := cluster.Start(t, cluster.Config{Blockds: 3, BlockSize: 1 << 20, Replication: 3})
	cl := dial(t, c)
	ctx := context.Background()
	write(t, cl, "/v", 9, 2<<20+100)
	fb, err := cl.NS.BlockLocations(ctx, cairn.FileRef{Path: "/v"})
	if err != nil {
		t.Fatal(err)
	}
	blk := fb.Blocks[1]
	victim := blk.Locations[0]
	flipAt(t, replicaPath(c, c.BlockdIndex(victim.StorageID), blk.Block), 70000)

	out, code := c.Run(t, "fsck", "/", "-verify")
	line := fmt.Sprintf("/v: bad replica of %s on %s (%s)", blk.Block, victim.DataAddr, victim.StorageID)
	if code != 0 || !strings.Contains(out, line) || !strings.Contains(out, "checksum mismatch") {
		t.Errorf("fsck / -verify: exit %d; want 0 and a line %q ... naming the checksum mismatch:\n%s", code, line, out)
	}
	if n := strings.Count(out, ": bad replica of "); n != 1 {
		t.Errorf("fsck -verify names %d bad replicas, want 1:\n%s", n, out)
	}
	if !strings.Contains(out, " Replicas verified:\t9\n") {
		t.Errorf("fsck -verify does not say it verified the 9 replicas:\n%s", out)
	}
	if strings.Contains(out, "\r") {
		t.Errorf("fsck -verify draws a progress line on a pipe:\n%q", out)
	}
}
