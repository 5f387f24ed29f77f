package metad

import (
	"context"
	"math/rand/v2"
	"testing"

	"cairn"
)

// fileWithIDs writes a file whose blocks have ids, in that order, straight
// into the store (as AddBlock would); with writer, the file is being
// written.
func fileWithIDs(t testing.TB, m *Metad, path string, ids []cairn.BlockID, writer string) []cairn.Block {
	t.Helper()
	fi, err := m.Create(context.Background(), path, cairn.CreateOptions{Client: "w", Replication: 2, BlockSize: 64 << 20})
	must(t, err)
	in, err := m.st.inode(fi.Inode)
	must(t, err)
	b := m.st.db.NewBatch()
	var blocks []cairn.Block
	for i, id := range ids {
		blk := cairn.Block{ID: id, GenStamp: cairn.GenStamp(1000 + i), Len: 1 << 20}
		_ = b.Set(fileBlockKey(in.Id, uint32(i)), encodeBlock(blk), nil)
		_ = b.Set(blockKey(blk.ID), u64(in.Id), nil)
		blocks = append(blocks, blk)
	}
	in.Blocks, in.Size, in.LeaseHolder = uint32(len(ids)), int64(len(ids))<<20, writer
	must(t, setInode(b, in))
	must(t, b.Commit(nil))
	return blocks
}

// TestBlockLookupAgreesWithStoredBlock: the lookup that judges a slice of
// a report (one iterator, each file read once, the index guessed from the
// ID) finds every block storedBlock finds, with the same record and file,
// whatever the spacing of a file's block IDs: one after another, evenly
// spaced, in uneven gaps, one or two blocks, out of order (a store the
// search does not expect), a file being written; and finds no block of no
// file, nor one whose file lacks its record.
func TestBlockLookupAgreesWithStoredBlock(t *testing.T) {
	m := openCfg(t, Config{})
	rng := rand.New(rand.NewPCG(1, 2))
	var blocks []cairn.Block
	seq := func(first, n, step int) []cairn.BlockID {
		var ids []cairn.BlockID
		for i := range n {
			ids = append(ids, cairn.BlockID(first+i*step))
		}
		return ids
	}
	var uneven []cairn.BlockID
	for id := 3_000_000; len(uneven) < 500; id += 1 + rng.IntN(50) {
		uneven = append(uneven, cairn.BlockID(id))
	}
	files := map[string][]cairn.BlockID{
		"/contiguous": seq(1_000_000, 1000, 1),
		"/stride":     seq(2_000_000, 700, 3),
		"/uneven":     uneven,
		"/one":        seq(4_000_000, 1, 1),
		"/two":        seq(4_000_100, 2, 7),
		"/three":      seq(4_000_200, 3, 1),
		"/backwards":  seq(5_000_000, 50, -1),
		"/shuffled":   {6_000_005, 6_000_001, 6_000_009, 6_000_002, 6_000_100},
	}
	for p, ids := range files {
		blocks = append(blocks, fileWithIDs(t, m, p, ids, "")...)
	}
	blocks = append(blocks, fileWithIDs(t, m, "/writing", seq(7_000_000, 20, 1), "client-1")...)
	// A "k" key whose file has no record of the block.
	fi, err := m.Stat(context.Background(), "/three")
	must(t, err)
	must(t, m.st.db.Set(blockKey(4_000_150), u64(fi.Inode), nil))

	look, err := m.newBlockLookup()
	must(t, err)
	defer look.close()
	rng.Shuffle(len(blocks), func(i, j int) { blocks[i], blocks[j] = blocks[j], blocks[i] })
	for _, want := range blocks {
		got, f, ok, err := look.find(want.ID)
		sgot, swriting, sok, serr := m.storedBlock(want.ID)
		if err != nil || serr != nil || !ok || !sok || got != want || sgot != want || f.writing != swriting {
			t.Fatalf("blk_%d: lookup %v writing=%v ok=%v err=%v; storedBlock %v writing=%v ok=%v err=%v; want %v",
				want.ID, got, f.writing, ok, err, sgot, swriting, sok, serr, want)
		}
		if f.want != 2 || f.writing != (want.ID >= 7_000_000) {
			t.Fatalf("blk_%d: file %+v, want replication 2 and writing only for /writing", want.ID, f)
		}
	}
	for _, id := range []cairn.BlockID{999_999, 1_000_000 + 1000, 2_000_001, 3_000_001, 4_000_150, 4_000_201 + 100, 6_000_003, 42} {
		_, _, sok, serr := m.storedBlock(id)
		if _, _, ok, err := look.find(id); ok || err != nil || sok || serr != nil {
			t.Fatalf("blk_%d of no file: lookup ok=%v err=%v, storedBlock ok=%v err=%v", id, ok, err, sok, serr)
		}
	}
}

// BenchmarkBlockLookupBigFile looks up every block of one file of 8,000
// blocks as a block report's slices do (one lookup per slice of
// reportSlice): the counterpart of BenchmarkStoredBlockBigFile.
//
//	go test -run '^$' -bench 'StoredBlockBigFile|BlockLookupBigFile' -benchtime 3x ./metad/
func BenchmarkBlockLookupBigFile(b *testing.B) {
	m := openCfg(b, Config{})
	blocks := bigFile(b, m, "/big", 8000)
	b.ResetTimer()
	for range b.N {
		for i := 0; i < len(blocks); i += reportSlice {
			look, err := m.newBlockLookup()
			if err != nil {
				b.Fatal(err)
			}
			for _, blk := range blocks[i:min(i+reportSlice, len(blocks))] {
				if _, _, ok, err := look.find(blk.ID); !ok || err != nil {
					b.Fatal(ok, err)
				}
			}
			look.close()
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(blocks)), "ns/lookup")
}
