package checksum

import (
	"errors"
	"math/rand/v2"
	"testing"
)

func TestSumsAtVerifyAt(t *testing.T) {
	const cs = 64
	block := make([]byte, 1000)
	for i := range block {
		block[i] = byte(rand.IntN(256))
	}
	for _, off := range []int64{0, 1, 63, 64, 65, 130, 999} {
		for _, n := range []int{0, 1, 10, 63, 64, 65, 200, int(1000 - off)} {
			if int(off)+n > len(block) {
				continue
			}
			data := block[off : int(off)+n]
			sums := SumsAt(off, data, cs, nil)
			if len(sums) != NumSumsAt(off, n, cs) {
				t.Fatalf("off %d n %d: %d sums, NumSumsAt %d", off, n, len(sums), NumSumsAt(off, n, cs))
			}
			if err := VerifyAt(7, cs, off, data, sums); err != nil {
				t.Fatalf("off %d n %d: %v", off, n, err)
			}
			if n == 0 {
				continue
			}
			bad := append([]byte(nil), data...)
			i := rand.IntN(n)
			bad[i] ^= 0x40
			err := VerifyAt(7, cs, off, bad, sums)
			var ce *CorruptionError
			if !errors.As(err, &ce) || ce.Chunk != (off+int64(i))/cs {
				t.Fatalf("off %d n %d flip %d: %v, want corruption at chunk %d", off, n, i, err, (off+int64(i))/cs)
			}
		}
	}
	// A run that starts on a boundary has the plain layout.
	if got, want := SumsAt(128, block[128:400], cs, nil), Sums(block[128:400], cs, nil); len(got) != len(want) || got[0] != want[0] {
		t.Fatalf("aligned SumsAt differs from Sums")
	}
}

func FuzzVerifyAt(f *testing.F) {
	f.Add(int64(3), []byte("hello, world"), uint16(4), []byte{1, 2, 3})
	f.Fuzz(func(t *testing.T, off int64, data []byte, cs uint16, raw []byte) {
		if off < 0 || off > 1<<40 || cs == 0 {
			return
		}
		var sums []uint64
		for i := 0; i+8 <= len(raw); i += 8 {
			sums = append(sums, uint64(raw[i])|uint64(raw[i+1])<<8)
		}
		_ = VerifyAt(1, int(cs), off, data, sums)
		good := SumsAt(off, data, int(cs), nil)
		if err := VerifyAt(1, int(cs), off, data, good); err != nil {
			t.Fatalf("own sums fail: %v", err)
		}
	})
}
