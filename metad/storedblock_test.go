package metad

import (
	"context"
	"testing"

	"cairn"
)

// bigFile writes a closed file of n blocks straight into the store (as
// AddBlock would, without blockds) and returns its blocks.
func bigFile(t testing.TB, m *Metad, path string, n int) []cairn.Block {
	t.Helper()
	ctx := context.Background()
	fi, err := m.Create(ctx, path, cairn.CreateOptions{Client: "w", Replication: 3, BlockSize: 64 << 20})
	if err != nil {
		t.Fatal(err)
	}
	in, err := m.st.inode(fi.Inode)
	if err != nil {
		t.Fatal(err)
	}
	b := m.st.db.NewBatch()
	var blocks []cairn.Block
	for i := range n {
		blk := cairn.Block{ID: cairn.BlockID(uint64(5<<30) + uint64(i)*3), GenStamp: 1000, Len: 64 << 20}
		_ = b.Set(fileBlockKey(in.Id, uint32(i)), encodeBlock(blk), nil)
		_ = b.Set(blockKey(blk.ID), u64(in.Id), nil)
		blocks = append(blocks, blk)
	}
	in.Blocks = uint32(n)
	in.Size = int64(n) * (64 << 20)
	in.LeaseHolder = ""
	must(t, setInode(b, in))
	must(t, b.Commit(nil))
	return blocks
}

// TestStoredBlockFindsEveryBlockOfABigFile: the binary search finds each
// block of a file of many blocks, and no block that is not there.
func TestStoredBlockFindsEveryBlockOfABigFile(t *testing.T) {
	m := openCfg(t, Config{})
	blocks := bigFile(t, m, "/big", 1000)
	for _, want := range blocks {
		got, writing, ok, err := m.storedBlock(want.ID)
		if err != nil || !ok || writing || got != want {
			t.Fatalf("storedBlock(%d) = %v, %v, %v, %v; want %v", want.ID, got, writing, ok, err, want)
		}
	}
	if _, _, ok, err := m.storedBlock(blocks[10].ID + 1); ok || err != nil {
		t.Fatalf("a block of no file found: %v, %v", ok, err)
	}
}

// BenchmarkStoredBlockBigFile looks up every block of one file of 8,000
// blocks (512 GiB): what a full block report of them costs in reads.
//
//	go test -run '^$' -bench StoredBlockBigFile -benchtime 1x ./metad/
func BenchmarkStoredBlockBigFile(b *testing.B) {
	m := openCfg(b, Config{})
	blocks := bigFile(b, m, "/big", 8000)
	b.ResetTimer()
	for range b.N {
		for _, blk := range blocks {
			if _, _, ok, err := m.storedBlock(blk.ID); !ok || err != nil {
				b.Fatal(ok, err)
			}
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(blocks)), "ns/lookup")
}
