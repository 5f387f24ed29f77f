// Package checksum owns the on-disk format of block replica .meta files and
// the chunked checksums they hold.
//
// A replica of block <id> is stored as the file blk_<id>, with a sibling
// blk_<id>_<genstamp>.meta. The .meta starts with a HeaderSize-byte header
// (see Header) followed by one SumSize-byte checksum per chunk of the block:
// chunk i covers block bytes [i*ChunkSize, (i+1)*ChunkSize), the last chunk
// may be short, and an empty block has no sums. Each checksum is the
// HighwayHash-64 of the chunk's bytes under the fixed Key, stored
// little-endian.
//
// The checksums detect corruption (bit rot, torn or misdirected writes,
// truncation); the key is public, so they do not authenticate anything.
//
// A reader of the byte range [off, off+n) reads and verifies every chunk that
// covers it (see ChunkSpan, ReadSums and Verify), so the chunk size bounds the
// read amplification of small reads. docs/FORMAT.md describes the format byte
// by byte.
package checksum

import (
	"fmt"

	"github.com/minio/highwayhash"
)

const (
	// Magic is the first 4 bytes of every .meta file.
	Magic = "CRNM"
	// FormatVersion is the .meta format version this package writes and reads.
	FormatVersion uint16 = 1
	// AlgHighway64 is HighwayHash-64 keyed with Key.
	AlgHighway64 uint8 = 1
	// HeaderSize is the size in bytes of a marshaled Header.
	HeaderSize = 40
	// SumSize is the size in bytes of one chunk checksum (little-endian uint64).
	SumSize = 8
	// MaxChunkSize is the largest chunk size a header may declare.
	MaxChunkSize = 16 << 20
)

// DefaultChunkSize is the chunk size new replicas are written with: 16 KiB.
// At that size checksumming runs within about 1% of its large-chunk speed,
// while a small random read verifies at most a few times its own size; four
// chunks fill a 64 KiB data packet. docs/FORMAT.md ("Chunk size") has the
// measurements behind the choice. Existing replicas keep the chunk size
// recorded in their header.
var DefaultChunkSize = 16 << 10

// Key is the fixed HighwayHash key of AlgHighway64: the ASCII bytes of
// "cairn block checksum key v1 " followed by four zero bytes. It is public;
// it only makes the checksums specific to this format.
var Key = [32]byte{
	'c', 'a', 'i', 'r', 'n', ' ', 'b', 'l', 'o', 'c', 'k', ' ',
	'c', 'h', 'e', 'c', 'k', 's', 'u', 'm', ' ', 'k', 'e', 'y', ' ',
	'v', '1', ' ', 0, 0, 0, 0,
}

// Sum returns the HighwayHash-64 of p under Key.
func Sum(p []byte) uint64 {
	return highwayhash.Sum64(p, Key[:])
}

// Sums appends to dst one checksum per chunkSize-byte chunk of p (the last
// chunk may be short) and returns the extended slice. An empty p adds
// nothing. Sums panics if chunkSize <= 0.
func Sums(p []byte, chunkSize int, dst []uint64) []uint64 {
	if chunkSize <= 0 {
		panic(fmt.Sprintf("checksum: chunk size %d", chunkSize))
	}
	dst = growUint64(dst, int(NumChunks(int64(len(p)), chunkSize)))
	for len(p) > chunkSize {
		dst = append(dst, Sum(p[:chunkSize]))
		p = p[chunkSize:]
	}
	if len(p) > 0 {
		dst = append(dst, Sum(p))
	}
	return dst
}

func growUint64(s []uint64, n int) []uint64 {
	if n <= cap(s)-len(s) {
		return s
	}
	g := make([]uint64, len(s), len(s)+n)
	copy(g, s)
	return g
}

// NumChunks returns the number of chunks of a block of blockLen bytes:
// ceil(blockLen/chunkSize). It panics if blockLen < 0 or chunkSize <= 0.
func NumChunks(blockLen int64, chunkSize int) int64 {
	if blockLen < 0 || chunkSize <= 0 {
		panic(fmt.Sprintf("checksum: NumChunks(%d, %d)", blockLen, chunkSize))
	}
	cs := int64(chunkSize)
	return blockLen/cs + min(blockLen%cs, 1)
}

// MetaSize returns the size in bytes of the .meta of a block of blockLen
// bytes: HeaderSize + SumSize*NumChunks(blockLen, chunkSize).
func MetaSize(blockLen int64, chunkSize int) int64 {
	return SumOffset(NumChunks(blockLen, chunkSize))
}

// ChunkSpan returns the chunks covering the byte range [off, off+n): the
// index of the first one and how many there are. For n == 0 count is 0 and
// first is the chunk containing off. It panics if off < 0, n < 0 or
// chunkSize <= 0.
func ChunkSpan(off, n int64, chunkSize int) (first, count int64) {
	if off < 0 || n < 0 || chunkSize <= 0 {
		panic(fmt.Sprintf("checksum: ChunkSpan(%d, %d, %d)", off, n, chunkSize))
	}
	cs := int64(chunkSize)
	first = off / cs
	if n == 0 {
		return first, 0
	}
	last := (off + n - 1) / cs
	return first, last - first + 1
}

// SumOffset returns the byte offset in a .meta of the checksum of chunk:
// HeaderSize + SumSize*chunk.
func SumOffset(chunk int64) int64 {
	return HeaderSize + SumSize*chunk
}

// Verify checks data against sums. data starts at the start of chunk
// firstChunk of block blockID and sums[0] is the checksum of that chunk.
// Every chunk of data but the last must be whole, and data must span exactly
// len(sums) chunks; otherwise Verify returns an error that is not a
// corruption error, since the caller passed mismatched arguments.
//
// On a checksum mismatch Verify returns a *CorruptionError naming blockID,
// the absolute index of the first bad chunk and its byte offset in the block.
func Verify(blockID uint64, chunkSize int, firstChunk int64, data []byte, sums []uint64) error {
	if chunkSize <= 0 {
		return fmt.Errorf("checksum: verify: invalid chunk size %d", chunkSize)
	}
	if firstChunk < 0 {
		return fmt.Errorf("checksum: verify: negative chunk index %d", firstChunk)
	}
	if n := NumChunks(int64(len(data)), chunkSize); n != int64(len(sums)) {
		return fmt.Errorf("checksum: verify: %d bytes from chunk %d span %d chunks of %d bytes, got %d checksums",
			len(data), firstChunk, n, chunkSize, len(sums))
	}
	for i, want := range sums {
		c := data[i*chunkSize:]
		if len(c) > chunkSize {
			c = c[:chunkSize]
		}
		if Sum(c) != want {
			chunk := firstChunk + int64(i)
			return &CorruptionError{
				BlockID: blockID,
				Chunk:   chunk,
				Offset:  chunk * int64(chunkSize),
				Reason:  "checksum mismatch",
			}
		}
	}
	return nil
}
