package cluster

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

func TestMain(m *testing.M) { os.Exit(Main(m)) }

// TestCluster starts a cluster without a mount and drives the harness's own
// operations: fsck on the empty namespace, a metad restart on the same
// address, a blockd killed and started again.
func TestCluster(t *testing.T) {
	c := Start(t, Config{Blockds: 2, Replication: 2, BlockSize: 1 << 20})
	c.WaitHealthy(t, 30*time.Second)
	if got := len(c.BlockdDataDirs()); got != 2 {
		t.Fatalf("BlockdDataDirs: %d directories, want 2", got)
	}

	addr := c.MetadAddr()
	c.StopMetad(t)
	c.StartMetad(t)
	if c.MetadAddr() != addr {
		t.Fatalf("metad moved from %s to %s", addr, c.MetadAddr())
	}
	c.WaitHealthy(t, time.Minute)

	c.KillBlockd(t, 1)
	c.StartBlockd(t, 1)
	c.WaitHealthy(t, time.Minute)

	for dir, blocks := range c.BlockFiles(t) {
		if len(blocks) != 0 {
			t.Errorf("%s: block files in an empty namespace: %v", dir, blocks)
		}
	}
}

func TestBlockNames(t *testing.T) {
	for path, want := range map[string]uint64{
		"/d/current/finalized/subdir0/subdir0/blk_1073741825": 1073741825,
		"blk_0": 0,
	} {
		if id, ok := BlockID(path); !ok || id != want {
			t.Errorf("BlockID(%q) = %d, %v; want %d", path, id, ok, want)
		}
	}
	for _, path := range []string{"blk_1_2.meta", "blk_", "blk_x", "xblk_1", "blk_1.tmp"} {
		if id, ok := BlockID(path); ok {
			t.Errorf("BlockID(%q) = %d, true; want not a block file", path, id)
		}
	}
	id := uint64(7<<16 | 3<<8 | 9)
	if got, want := FinalizedDir("/d", id), "/d/current/finalized/subdir7/subdir3"; got != want {
		t.Errorf("FinalizedDir(%d) = %s, want %s", id, got, want)
	}

	dir := t.TempDir()
	for _, name := range []string{"blk_5", "blk_5_1001.meta", "blk_55_1001.meta", "blk_5_x.meta", "blk_6_1001.meta"} {
		if err := os.WriteFile(filepath.Join(dir, name), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got := MetaFiles(filepath.Join(dir, "blk_5"))
	if want := []string{filepath.Join(dir, "blk_5_1001.meta")}; !slices.Equal(got, want) {
		t.Errorf("MetaFiles(blk_5) = %v, want %v", got, want)
	}
}
