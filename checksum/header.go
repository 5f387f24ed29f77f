package checksum

import (
	"encoding/binary"
	"fmt"
)

// Header is the fixed-size header at the start of a .meta file.
//
// Marshaled layout (HeaderSize bytes, little-endian):
//
//	 0  magic "CRNM"            4 bytes
//	 4  version                 uint16
//	 6  algorithm               uint8
//	 7  reserved, zero          uint8
//	 8  chunk size in bytes     uint32
//	12  reserved, zero          uint32
//	16  block id                uint64
//	24  generation stamp        uint64
//	32  HighwayHash-64 (Key) of bytes 0..31
type Header struct {
	Version   uint16
	Algorithm uint8
	ChunkSize uint32
	BlockID   uint64
	GenStamp  uint64
}

// NewHeader returns a current-version HighwayHash-64 header. A chunkSize of
// 0 means DefaultChunkSize. A chunkSize outside (0, MaxChunkSize] gives a
// header that Validate (and so NewWriter and NewMetaWriter) rejects.
func NewHeader(blockID, genStamp uint64, chunkSize int) Header {
	if chunkSize == 0 {
		chunkSize = DefaultChunkSize
	}
	if chunkSize < 0 || chunkSize > MaxChunkSize {
		chunkSize = MaxChunkSize + 1
	}
	return Header{
		Version:   FormatVersion,
		Algorithm: AlgHighway64,
		ChunkSize: uint32(chunkSize),
		BlockID:   blockID,
		GenStamp:  genStamp,
	}
}

// Validate reports whether h can be written: current version, known
// algorithm and a chunk size in (0, MaxChunkSize]. The error is not a
// corruption error.
func (h Header) Validate() error {
	if reason := h.invalid(); reason != "" {
		return fmt.Errorf("checksum: invalid header: %s", reason)
	}
	return nil
}

func (h Header) invalid() string {
	switch {
	case h.Version != FormatVersion:
		return fmt.Sprintf("unknown format version %d", h.Version)
	case h.Algorithm != AlgHighway64:
		return fmt.Sprintf("unknown checksum algorithm %d", h.Algorithm)
	case h.ChunkSize == 0:
		return "chunk size 0"
	case h.ChunkSize > MaxChunkSize:
		return fmt.Sprintf("chunk size %d exceeds %d", h.ChunkSize, MaxChunkSize)
	}
	return ""
}

// Marshal returns the HeaderSize-byte encoding of h, header checksum
// included. It encodes h as is; see Validate.
func (h Header) Marshal() []byte {
	b := make([]byte, HeaderSize)
	copy(b[0:4], Magic)
	binary.LittleEndian.PutUint16(b[4:6], h.Version)
	b[6] = h.Algorithm
	binary.LittleEndian.PutUint32(b[8:12], h.ChunkSize)
	binary.LittleEndian.PutUint64(b[16:24], h.BlockID)
	binary.LittleEndian.PutUint64(b[24:32], h.GenStamp)
	binary.LittleEndian.PutUint64(b[32:40], Sum(b[:32]))
	return b
}

// ParseHeader decodes the header in the first HeaderSize bytes of b; further
// bytes are ignored. Every error is a *CorruptionError (Chunk and Offset -1)
// whose Reason says what is wrong: short header, bad magic, unknown version,
// header checksum mismatch, non-zero reserved bytes, unknown algorithm, or a
// chunk size of 0 or above MaxChunkSize. The magic and version are checked
// before the header checksum, everything else after it.
func ParseHeader(b []byte) (Header, error) {
	var id uint64
	if len(b) >= 24 {
		id = binary.LittleEndian.Uint64(b[16:24])
	}
	if len(b) < HeaderSize {
		return Header{}, headerError(id, "short header: %d bytes, want %d", len(b), HeaderSize)
	}
	b = b[:HeaderSize]
	if string(b[0:4]) != Magic {
		return Header{}, headerError(id, "bad header magic %q", b[0:4])
	}
	h := Header{
		Version:   binary.LittleEndian.Uint16(b[4:6]),
		Algorithm: b[6],
		ChunkSize: binary.LittleEndian.Uint32(b[8:12]),
		BlockID:   id,
		GenStamp:  binary.LittleEndian.Uint64(b[24:32]),
	}
	if h.Version != FormatVersion {
		return Header{}, headerError(id, "unknown format version %d", h.Version)
	}
	if got, want := binary.LittleEndian.Uint64(b[32:40]), Sum(b[:32]); got != want {
		return Header{}, headerError(id, "header checksum mismatch: stored %#016x, computed %#016x", got, want)
	}
	if b[7] != 0 || binary.LittleEndian.Uint32(b[12:16]) != 0 {
		return Header{}, headerError(id, "non-zero reserved header bytes")
	}
	if reason := h.invalid(); reason != "" {
		return Header{}, headerError(id, "%s", reason)
	}
	return h, nil
}
