package checksum

import (
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/minio/highwayhash"
)

var benchChunkSizes = []int{512, 4 << 10, 16 << 10, 64 << 10, 256 << 10, 1 << 20}

func sizeName(n int) string {
	switch {
	case n >= 1<<20 && n%(1<<20) == 0:
		return fmt.Sprintf("%dMiB", n>>20)
	case n >= 1<<10 && n%(1<<10) == 0:
		return fmt.Sprintf("%dKiB", n>>10)
	}
	return fmt.Sprintf("%dB", n)
}

// benchBytes returns n pseudo-random bytes, quickly.
func benchBytes(n int) []byte {
	b := make([]byte, n)
	r := rand.New(rand.NewPCG(1, 2))
	for i := 0; i+8 <= n; i += 8 {
		binary.LittleEndian.PutUint64(b[i:], r.Uint64())
	}
	return b
}

// BenchmarkChunkSize measures checksum throughput (Sums) over a 64 MiB
// buffer for each candidate chunk size.
func BenchmarkChunkSize(b *testing.B) {
	data := benchBytes(64 << 20)
	for _, cs := range benchChunkSizes {
		b.Run(sizeName(cs), func(b *testing.B) {
			dst := make([]uint64, 0, NumChunks(int64(len(data)), cs))
			b.SetBytes(int64(len(data)))
			for b.Loop() {
				dst = Sums(data, cs, dst[:0])
			}
		})
	}
}

// BenchmarkRandomRead measures the verification cost of small reads at
// random, unaligned offsets: every chunk covering a read is checksummed. One
// op is randomReadBatch reads; it reports the time per read and the bytes
// verified per read relative to the read size (read amplification).
func BenchmarkRandomRead(b *testing.B) {
	const randomReadBatch = 1024
	data := benchBytes(64 << 20)
	for _, readSize := range []int{4 << 10, 64 << 10} {
		for _, cs := range benchChunkSizes {
			b.Run(fmt.Sprintf("read=%s/chunk=%s", sizeName(readSize), sizeName(cs)), func(b *testing.B) {
				sums := Sums(data, cs, nil)
				r := rand.New(rand.NewPCG(3, 4))
				var verified, reads int64
				for b.Loop() {
					for range randomReadBatch {
						off := r.Int64N(int64(len(data) - readSize))
						first, count := ChunkSpan(off, int64(readSize), cs)
						end := min((first+count)*int64(cs), int64(len(data)))
						chunk := data[first*int64(cs) : end]
						verified += int64(len(chunk))
						if err := Verify(1, cs, first, chunk, sums[first:first+count]); err != nil {
							b.Fatal(err)
						}
					}
					reads += randomReadBatch
				}
				b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(reads), "ns/read")
				b.ReportMetric(float64(verified)/float64(reads)/float64(readSize), "amplification")
			})
		}
	}
}

// BenchmarkWrite256MiB writes a 256 MiB replica to a file in 64 KiB packets
// three ways: the bytes alone ("plain"); the bytes plus their checksums at
// DefaultChunkSize through a Writer to a .meta file ("checksummed"); and
// HighwayHash over the bytes in memory, no I/O ("hash-only"). The
// checksummed runs report their time relative to plain as x-plain, and
// "checksummed-chunk=N" repeats them for each candidate chunk size.
// Files are written and closed but not synced: the page cache absorbs the
// writes, so the checksum share measured here is an upper bound of what a
// write to disk sees.
func BenchmarkWrite256MiB(b *testing.B) {
	const size = 256 << 20
	const packet = 64 << 10
	data := benchBytes(size)
	dir := b.TempDir()
	blockPath := filepath.Join(dir, BlockFileName(1))
	metaPath := filepath.Join(dir, MetaFileName(1, 1))

	writeBlock := func(b *testing.B, withSums bool, chunkSize int, durable ...bool) {
		f, err := os.Create(blockPath)
		if err != nil {
			b.Fatal(err)
		}
		var m *os.File
		var w *Writer
		if withSums {
			if m, err = os.Create(metaPath); err != nil {
				b.Fatal(err)
			}
			if w, err = NewWriter(m, NewHeader(1, 1, chunkSize)); err != nil {
				b.Fatal(err)
			}
		}
		for p := data; len(p) > 0; p = p[packet:] {
			if _, err := f.Write(p[:packet]); err != nil {
				b.Fatal(err)
			}
			if withSums {
				if _, err := w.Write(p[:packet]); err != nil {
					b.Fatal(err)
				}
			}
		}
		if withSums {
			if err := w.Close(); err != nil {
				b.Fatal(err)
			}
		}
		if len(durable) > 0 && durable[0] {
			// As a replica is finalized: data and meta on disk.
			if err := f.Sync(); err != nil {
				b.Fatal(err)
			}
			if withSums {
				if err := m.Sync(); err != nil {
					b.Fatal(err)
				}
			}
		}
		if err := f.Close(); err != nil {
			b.Fatal(err)
		}
		if withSums {
			if err := m.Close(); err != nil {
				b.Fatal(err)
			}
		}
		b.StopTimer()
		os.Remove(blockPath)
		os.Remove(metaPath)
		b.StartTimer()
	}

	// One untimed round of each first, so that neither timed run pays for
	// warming up the file system.
	writeBlock(b, false, 0)
	writeBlock(b, true, 0)

	var plain, summed time.Duration
	b.Run("plain", func(b *testing.B) {
		b.SetBytes(size)
		for b.Loop() {
			writeBlock(b, false, 0)
		}
		plain = b.Elapsed() / time.Duration(b.N)
	})
	b.Run("checksummed", func(b *testing.B) {
		b.SetBytes(size)
		for b.Loop() {
			writeBlock(b, true, DefaultChunkSize)
		}
		summed = b.Elapsed() / time.Duration(b.N)
		if plain > 0 {
			b.ReportMetric(float64(summed)/float64(plain), "x-plain")
		}
	})
	// The same, durable: fsync before close, as a replica is finalized.
	var plainSync, summedSync time.Duration
	b.Run("plain-fsync", func(b *testing.B) {
		b.SetBytes(size)
		for b.Loop() {
			writeBlock(b, false, 0, true)
		}
		plainSync = b.Elapsed() / time.Duration(b.N)
	})
	b.Run("checksummed-fsync", func(b *testing.B) {
		b.SetBytes(size)
		for b.Loop() {
			writeBlock(b, true, DefaultChunkSize, true)
		}
		summedSync = b.Elapsed() / time.Duration(b.N)
		if plainSync > 0 {
			b.ReportMetric(float64(summedSync)/float64(plainSync), "x-plain")
		}
	})
	b.Run("hash-only", func(b *testing.B) {
		b.SetBytes(size)
		h, err := highwayhash.New64(Key[:])
		if err != nil {
			b.Fatal(err)
		}
		for b.Loop() {
			h.Reset()
			h.Write(data)
			h.Sum64()
		}
	})
	// The same with each candidate chunk size, to see how much the chunk
	// size matters end to end.
	for _, cs := range benchChunkSizes {
		b.Run("checksummed-chunk="+sizeName(cs), func(b *testing.B) {
			b.SetBytes(size)
			for b.Loop() {
				writeBlock(b, true, cs)
			}
			if plain > 0 {
				b.ReportMetric(float64(b.Elapsed()/time.Duration(b.N))/float64(plain), "x-plain")
			}
		})
	}
	if plain > 0 && summed > 0 {
		b.Logf("256 MiB write: plain %v, with checksums %v, ratio %.3f", plain, summed, float64(summed)/float64(plain))
	}
	if plainSync > 0 && summedSync > 0 {
		b.Logf("256 MiB durable write: plain %v, with checksums %v, ratio %.3f", plainSync, summedSync, float64(summedSync)/float64(plainSync))
	}
}
