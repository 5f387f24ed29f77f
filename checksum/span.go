package checksum

import "fmt"

// Checksums of a run of bytes that starts inside a chunk: a writer that
// continues a block whose last chunk is partial (after an hflush, an append
// or a pipeline recovery) sends the bytes from where the block ends. The
// first checksum then covers only the piece up to the next chunk boundary;
// every later one covers a whole chunk (the last may be short). The block
// daemon verifies the piece against it, verifies the bytes already on disk
// against their stored checksum, and only then stores the checksum of the
// joined chunk.

// SumsAt appends to dst the checksums of data, which starts at block offset
// off, in the layout described above.
func SumsAt(off int64, data []byte, chunkSize int, dst []uint64) []uint64 {
	if head := pieceLen(off, len(data), chunkSize); head > 0 {
		dst = append(dst, Sum(data[:head]))
		data = data[head:]
	}
	return Sums(data, chunkSize, dst)
}

// NumSumsAt is how many checksums SumsAt gives for n bytes at offset off.
func NumSumsAt(off int64, n, chunkSize int) int {
	if n <= 0 {
		return 0
	}
	_, count := ChunkSpan(off, int64(n), chunkSize)
	return int(count)
}

// pieceLen is the length of the leading piece of n bytes at off that lies
// inside a chunk begun before off: 0 when off is on a boundary.
func pieceLen(off int64, n, chunkSize int) int {
	into := int(off % int64(chunkSize))
	if into == 0 {
		return 0
	}
	return min(n, chunkSize-into)
}

// VerifyAt checks data starting at block offset off against sums in the
// layout of SumsAt. A mismatch is a *CorruptionError naming the chunk.
func VerifyAt(blockID uint64, chunkSize int, off int64, data []byte, sums []uint64) error {
	if chunkSize <= 0 || off < 0 {
		return fmt.Errorf("checksum: verify at %d with chunk size %d", off, chunkSize)
	}
	if want := NumSumsAt(off, len(data), chunkSize); want != len(sums) {
		return fmt.Errorf("checksum: verify: %d bytes at %d need %d checksums, got %d", len(data), off, want, len(sums))
	}
	if head := pieceLen(off, len(data), chunkSize); head > 0 {
		if Sum(data[:head]) != sums[0] {
			chunk := off / int64(chunkSize)
			return &CorruptionError{BlockID: blockID, Chunk: chunk, Offset: chunk * int64(chunkSize), Reason: "checksum mismatch"}
		}
		data, sums, off = data[head:], sums[1:], off+int64(head)
	}
	if len(data) == 0 {
		return nil
	}
	return Verify(blockID, chunkSize, off/int64(chunkSize), data, sums)
}
