package checksum

import (
	"bytes"
	"encoding/binary"
	"errors"
	"testing"
)

func FuzzParseHeader(f *testing.F) {
	f.Add(NewHeader(17, 1001, 512).Marshal())
	f.Add(NewHeader(0, 0, MaxChunkSize).Marshal())
	f.Add(Header{Version: 2, Algorithm: 1, ChunkSize: 512}.Marshal())
	f.Add(Header{Version: 1, Algorithm: 9, ChunkSize: 512}.Marshal())
	f.Add(Header{Version: 1, Algorithm: 1, ChunkSize: 0}.Marshal())
	f.Add([]byte("CRNM"))
	f.Add([]byte{})
	f.Add(append(NewHeader(1, 2, 3).Marshal(), 0xff))
	f.Fuzz(func(t *testing.T, b []byte) {
		h, err := ParseHeader(b)
		if err != nil {
			var ce *CorruptionError
			if !errors.As(err, &ce) || !IsCorruption(err) || ce.Chunk != -1 || ce.Offset != -1 || ce.Reason == "" {
				t.Fatalf("ParseHeader error %v is not a header corruption error", err)
			}
			return
		}
		if err := h.Validate(); err != nil {
			t.Fatalf("parsed header does not validate: %v", err)
		}
		if !bytes.Equal(h.Marshal(), b[:HeaderSize]) {
			t.Fatalf("Marshal(ParseHeader(b)) != b")
		}
	})
}

func FuzzReadMeta(f *testing.F) {
	f.Add(metaBytes(f, NewHeader(17, 1001, 512), []uint64{1, 2, 3}))
	f.Add(metaBytes(f, NewHeader(17, 1001, 512), nil))
	f.Add(append(metaBytes(f, NewHeader(17, 1001, 512), []uint64{1}), 7))
	f.Add(NewHeader(1, 1, 1).Marshal()[:39])
	f.Add([]byte("CRNM\x01\x00\x01\x00"))
	f.Fuzz(func(t *testing.T, b []byte) {
		h, sums, err := ReadMeta(bytes.NewReader(b))
		if err != nil {
			if !IsCorruption(err) {
				t.Fatalf("ReadMeta of in-memory bytes failed without corruption: %v", err)
			}
			return
		}
		if got := metaBytes(t, h, sums); !bytes.Equal(got, b) {
			t.Fatalf("ReadMeta did not round trip")
		}
		// VerifyFile agrees on the number of chunks: a block of exactly
		// len(sums) chunks passes the length check.
		blockLen := int64(len(sums)) * int64(h.ChunkSize)
		if blockLen <= 1<<20 {
			err := VerifyFile(bytes.NewReader(make([]byte, blockLen)), blockLen, bytes.NewReader(b))
			if err != nil {
				var ce *CorruptionError
				if !errors.As(err, &ce) || ce.Reason != "checksum mismatch" {
					t.Fatalf("VerifyFile: %v", err)
				}
			}
		}
	})
}

func FuzzVerify(f *testing.F) {
	f.Add([]byte("hello, world"), []byte{}, 4, int64(0), uint16(0))
	f.Add(testBytes(1300, 1), []byte{1, 2, 3, 4, 5, 6, 7, 8}, 512, int64(3), uint16(700))
	f.Add(testBytes(100, 2), make([]byte, 8*100), 1, int64(0), uint16(99))
	f.Add([]byte{}, []byte{}, 0, int64(-1), uint16(0))
	f.Add(testBytes(64, 3), []byte{}, -7, int64(1<<62), uint16(5))
	f.Fuzz(func(t *testing.T, data, rawSums []byte, chunkSize int, firstChunk int64, flip uint16) {
		sums := make([]uint64, len(rawSums)/SumSize)
		for i := range sums {
			sums[i] = binary.LittleEndian.Uint64(rawSums[i*SumSize:])
		}
		// Arbitrary sums: must not panic.
		if err := Verify(5, chunkSize, firstChunk, data, sums); err != nil {
			var ce *CorruptionError
			if errors.As(err, &ce) && (ce.BlockID != 5 || ce.Chunk < firstChunk || ce.Chunk >= firstChunk+int64(len(sums))) {
				t.Fatalf("bad corruption error %+v", ce)
			}
		}
		if chunkSize <= 0 || firstChunk < 0 {
			return
		}
		// Correct sums verify; a flipped byte is caught in the right chunk.
		good := Sums(data, chunkSize, nil)
		if err := Verify(5, chunkSize, firstChunk, data, good); err != nil {
			t.Fatalf("Verify with Sums: %v", err)
		}
		if len(data) == 0 {
			return
		}
		pos := int(flip) % len(data)
		bad := bytes.Clone(data)
		bad[pos] ^= 1 << (flip % 8)
		err := Verify(5, chunkSize, firstChunk, bad, good)
		var ce *CorruptionError
		if !errors.As(err, &ce) {
			t.Fatalf("flipped byte %d not detected: %v", pos, err)
		}
		if want := firstChunk + int64(pos/chunkSize); ce.Chunk != want || ce.Offset != want*int64(chunkSize) {
			t.Fatalf("flip at %d reported as %+v", pos, ce)
		}
	})
}
