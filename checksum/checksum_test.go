package checksum

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"testing"
	"testing/iotest"
)

// testBytes returns n deterministic pseudo-random bytes.
func testBytes(n int, seed uint64) []byte {
	b := make([]byte, n)
	x := seed*0x9e3779b97f4a7c15 + 1
	for i := range b {
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
		b[i] = byte(x >> 24)
	}
	return b
}

func metaBytes(t testing.TB, h Header, sums []uint64) []byte {
	t.Helper()
	var buf bytes.Buffer
	mw, err := NewMetaWriter(&buf, h)
	if err != nil {
		t.Fatal(err)
	}
	if err := mw.AppendSums(sums); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func wantCorruption(t *testing.T, err error, reason string) *CorruptionError {
	t.Helper()
	if err == nil {
		t.Fatalf("got nil error, want corruption %q", reason)
	}
	if !errors.Is(err, ErrCorruption) || !IsCorruption(err) {
		t.Fatalf("error %v is not a corruption error", err)
	}
	var ce *CorruptionError
	if !errors.As(err, &ce) {
		t.Fatalf("error %v is not a *CorruptionError", err)
	}
	if !strings.Contains(ce.Reason, reason) {
		t.Fatalf("reason %q does not contain %q", ce.Reason, reason)
	}
	return ce
}

func TestKey(t *testing.T) {
	want := []byte("cairn block checksum key v1 \x00\x00\x00\x00")
	if !bytes.Equal(Key[:], want) {
		t.Fatalf("Key = %q, want %q", Key[:], want)
	}
}

func TestHeaderRoundTrip(t *testing.T) {
	for _, h := range []Header{
		NewHeader(0, 0, 1),
		NewHeader(17, 1001, 512),
		NewHeader(1<<63+5, 1<<40, MaxChunkSize),
		NewHeader(^uint64(0), ^uint64(0), 64<<10),
	} {
		b := h.Marshal()
		if len(b) != HeaderSize {
			t.Fatalf("Marshal: %d bytes", len(b))
		}
		if string(b[:4]) != Magic {
			t.Fatalf("magic %q", b[:4])
		}
		got, err := ParseHeader(b)
		if err != nil {
			t.Fatalf("ParseHeader(%+v): %v", h, err)
		}
		if got != h {
			t.Fatalf("round trip: got %+v, want %+v", got, h)
		}
		// Trailing bytes are ignored.
		if got, err := ParseHeader(append(b, 1, 2, 3)); err != nil || got != h {
			t.Fatalf("with trailing bytes: %+v, %v", got, err)
		}
	}
}

func TestNewHeader(t *testing.T) {
	h := NewHeader(3, 4, 0)
	if h.ChunkSize != uint32(DefaultChunkSize) || h.Version != FormatVersion || h.Algorithm != AlgHighway64 ||
		h.BlockID != 3 || h.GenStamp != 4 {
		t.Fatalf("NewHeader(3, 4, 0) = %+v", h)
	}
	if err := h.Validate(); err != nil {
		t.Fatal(err)
	}
	for _, cs := range []int{-1, MaxChunkSize + 1, 1<<32 + 512} {
		h := NewHeader(1, 1, cs)
		if err := h.Validate(); err == nil || IsCorruption(err) {
			t.Errorf("NewHeader(.., %d).Validate() = %v, want a non-corruption error", cs, err)
		}
		if _, err := NewWriter(io.Discard, h); err == nil {
			t.Errorf("NewWriter accepted chunk size %d", cs)
		}
		if _, err := NewMetaWriter(io.Discard, h); err == nil {
			t.Errorf("NewMetaWriter accepted chunk size %d", cs)
		}
	}
}

// reseal recomputes the header checksum of b in place.
func reseal(b []byte) []byte {
	binary.LittleEndian.PutUint64(b[32:40], Sum(b[:32]))
	return b
}

func TestParseHeaderErrors(t *testing.T) {
	good := NewHeader(17, 1001, 4096).Marshal()
	mod := func(f func(b []byte) []byte) []byte {
		return f(bytes.Clone(good))
	}
	cases := []struct {
		name   string
		b      []byte
		reason string
		id     uint64
	}{
		{"empty", nil, "short header", 0},
		{"short", good[:HeaderSize-1], "short header", 17},
		{"short without id", good[:20], "short header", 0},
		{"magic", mod(func(b []byte) []byte { b[0] = 'X'; return b }), "bad header magic", 17},
		{"version", NewHeader(17, 1, 4096).withVersion(2).Marshal(), "unknown format version 2", 17},
		{"version 0", NewHeader(17, 1, 4096).withVersion(0).Marshal(), "unknown format version 0", 17},
		{"algorithm", Header{Version: 1, Algorithm: 2, ChunkSize: 512, BlockID: 17}.Marshal(), "unknown checksum algorithm 2", 17},
		{"chunk size 0", Header{Version: 1, Algorithm: 1, ChunkSize: 0, BlockID: 17}.Marshal(), "chunk size 0", 17},
		{"chunk size too big", Header{Version: 1, Algorithm: 1, ChunkSize: MaxChunkSize + 1, BlockID: 17}.Marshal(), "exceeds", 17},
		{"chunk size max uint32", Header{Version: 1, Algorithm: 1, ChunkSize: ^uint32(0), BlockID: 17}.Marshal(), "exceeds", 17},
		{"header checksum", mod(func(b []byte) []byte { b[35] ^= 1; return b }), "header checksum mismatch", 17},
		{"field flip", mod(func(b []byte) []byte { b[24] ^= 0x80; return b }), "header checksum mismatch", 17},
		{"reserved byte 7", mod(func(b []byte) []byte { b[7] = 1; return reseal(b) }), "non-zero reserved", 17},
		{"reserved bytes 12..15", mod(func(b []byte) []byte { b[15] = 1; return reseal(b) }), "non-zero reserved", 17},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := ParseHeader(c.b)
			ce := wantCorruption(t, err, c.reason)
			if ce.Chunk != -1 || ce.Offset != -1 || ce.BlockID != c.id {
				t.Fatalf("error fields: %+v", ce)
			}
		})
	}
	if _, err := ParseHeader(good); err != nil {
		t.Fatal(err)
	}
	// Chunk size bounds are inclusive of MaxChunkSize and 1.
	for _, cs := range []uint32{1, MaxChunkSize} {
		if _, err := ParseHeader(Header{Version: 1, Algorithm: 1, ChunkSize: cs}.Marshal()); err != nil {
			t.Errorf("chunk size %d: %v", cs, err)
		}
	}
}

func (h Header) withVersion(v uint16) Header { h.Version = v; return h }

func TestSums(t *testing.T) {
	data := testBytes(10*1000+7, 1)
	for _, cs := range []int{1, 7, 512, 1000, 4096, len(data), len(data) + 1, 1 << 20} {
		sums := Sums(data, cs, nil)
		if want := NumChunks(int64(len(data)), cs); int64(len(sums)) != want {
			t.Fatalf("cs %d: %d sums, want %d", cs, len(sums), want)
		}
		for i, s := range sums {
			end := min((i+1)*cs, len(data))
			if s != Sum(data[i*cs:end]) {
				t.Fatalf("cs %d: sum %d wrong", cs, i)
			}
		}
		// Appends.
		pre := []uint64{42}
		if got := Sums(data, cs, pre); got[0] != 42 || len(got) != len(sums)+1 || got[1] != sums[0] {
			t.Fatalf("cs %d: Sums does not append", cs)
		}
	}
	if got := Sums(nil, 512, nil); len(got) != 0 {
		t.Fatalf("Sums(nil) = %v", got)
	}
	func() {
		defer func() {
			if recover() == nil {
				t.Error("Sums with chunk size 0 did not panic")
			}
		}()
		Sums(data, 0, nil)
	}()
}

func TestNumChunksMetaSize(t *testing.T) {
	for _, c := range []struct {
		n      int64
		cs     int
		chunks int64
	}{
		{0, 512, 0}, {1, 512, 1}, {511, 512, 1}, {512, 512, 1}, {513, 512, 2},
		{1024, 512, 2}, {256 << 20, 64 << 10, 4096}, {256<<20 + 1, 64 << 10, 4097},
	} {
		if got := NumChunks(c.n, c.cs); got != c.chunks {
			t.Errorf("NumChunks(%d, %d) = %d, want %d", c.n, c.cs, got, c.chunks)
		}
		if got := MetaSize(c.n, c.cs); got != HeaderSize+8*c.chunks {
			t.Errorf("MetaSize(%d, %d) = %d", c.n, c.cs, got)
		}
	}
}

func TestChunkSpan(t *testing.T) {
	for _, c := range []struct {
		off, n       int64
		cs           int
		first, count int64
	}{
		{0, 0, 512, 0, 0},
		{100, 0, 512, 0, 0},
		{512, 0, 512, 1, 0},
		{0, 1, 512, 0, 1},
		{0, 512, 512, 0, 1},
		{0, 513, 512, 0, 2},
		{511, 1, 512, 0, 1},
		{511, 2, 512, 0, 2},
		{512, 512, 512, 1, 1},
		{513, 511, 512, 1, 1},
		{513, 512, 512, 1, 2},
		{1000, 5000, 1024, 0, 6},
		{5, 10, 1, 5, 10},
		{1 << 40, 1, 64 << 10, 1 << 24, 1},
		{1<<40 - 1, 2, 64 << 10, 1<<24 - 1, 2},
	} {
		first, count := ChunkSpan(c.off, c.n, c.cs)
		if first != c.first || count != c.count {
			t.Errorf("ChunkSpan(%d, %d, %d) = %d, %d, want %d, %d", c.off, c.n, c.cs, first, count, c.first, c.count)
		}
	}
	for _, args := range [][3]int64{{-1, 1, 512}, {0, -1, 512}, {0, 1, 0}} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("ChunkSpan%v did not panic", args)
				}
			}()
			ChunkSpan(args[0], args[1], int(args[2]))
		}()
	}
}

func TestSumOffset(t *testing.T) {
	if SumOffset(0) != 40 || SumOffset(1) != 48 || SumOffset(4095) != 40+8*4095 {
		t.Fatal("SumOffset")
	}
}

func TestVerifyEveryChunk(t *testing.T) {
	const cs = 512
	data := testBytes(7*cs+100, 2) // 8 chunks, the last short
	sums := Sums(data, cs, nil)
	if err := Verify(17, cs, 0, data, sums); err != nil {
		t.Fatal(err)
	}
	for _, pos := range []int{0, 1, cs - 1, cs, 3*cs + 17, 7 * cs, len(data) - 1} {
		bad := bytes.Clone(data)
		bad[pos] ^= 0x01
		err := Verify(17, cs, 0, bad, sums)
		ce := wantCorruption(t, err, "checksum mismatch")
		chunk := int64(pos / cs)
		if ce.BlockID != 17 || ce.Chunk != chunk || ce.Offset != chunk*cs {
			t.Fatalf("flip at %d: %+v", pos, ce)
		}
		want := fmt.Sprintf("block 17: checksum mismatch at chunk %d (offset %d)", chunk, chunk*cs)
		if err.Error() != want {
			t.Fatalf("message %q, want %q", err.Error(), want)
		}
	}
}

func TestVerifyRange(t *testing.T) {
	const cs = 1024
	data := testBytes(20*cs+333, 3)
	sums := Sums(data, cs, nil)
	meta := bytes.NewReader(metaBytes(t, NewHeader(9, 1, cs), sums))
	for _, r := range [][2]int64{{0, 1}, {5000, 4000}, {cs, cs}, {19*cs + 10, 500}, {0, int64(len(data))}, {20 * cs, 333}} {
		first, count := ChunkSpan(r[0], r[1], cs)
		got, err := ReadSums(meta, first, count)
		if err != nil {
			t.Fatal(err)
		}
		end := min((first+count)*cs, int64(len(data)))
		chunkData := data[first*cs : end]
		if err := Verify(9, cs, first, chunkData, got); err != nil {
			t.Fatalf("range %v: %v", r, err)
		}
		bad := bytes.Clone(chunkData)
		bad[len(bad)-1] ^= 0xff
		ce := wantCorruption(t, Verify(9, cs, first, bad, got), "checksum mismatch")
		if last := first + count - 1; ce.Chunk != last || ce.Offset != last*cs {
			t.Fatalf("range %v: %+v", r, ce)
		}
	}
}

func TestVerifyShortLastChunk(t *testing.T) {
	const cs = 4096
	data := testBytes(cs+1, 4)
	sums := Sums(data, cs, nil)
	if len(sums) != 2 || sums[1] != Sum(data[cs:]) {
		t.Fatal("short last chunk not summed alone")
	}
	if err := Verify(1, cs, 0, data, sums); err != nil {
		t.Fatal(err)
	}
	// The short chunk is not the zero-padded chunk.
	padded := append(bytes.Clone(data), make([]byte, cs-1)...)
	ce := wantCorruption(t, Verify(1, cs, 0, padded, sums), "checksum mismatch")
	if ce.Chunk != 1 {
		t.Fatalf("%+v", ce)
	}
}

func TestVerifyArgumentErrors(t *testing.T) {
	data := testBytes(1000, 5)
	sums := Sums(data, 512, nil)
	for name, err := range map[string]error{
		"chunk size":     Verify(1, 0, 0, data, sums),
		"negative chunk": Verify(1, 512, -1, data, sums),
		"too few sums":   Verify(1, 512, 0, data, sums[:1]),
		"too many sums":  Verify(1, 512, 0, data[:100], sums),
		"no data":        Verify(1, 512, 0, nil, sums),
	} {
		if err == nil || IsCorruption(err) {
			t.Errorf("%s: got %v, want a non-corruption error", name, err)
		}
	}
	if err := Verify(1, 512, 3, nil, nil); err != nil {
		t.Errorf("empty: %v", err)
	}
}

func TestWriterMatchesSums(t *testing.T) {
	data := testBytes(100*1000+3, 6)
	for _, cs := range []int{1, 3, 512, 1000, 4096, 64 << 10, 1 << 20} {
		want := metaBytes(t, NewHeader(5, 6, cs), Sums(data, cs, nil))
		for _, sizes := range [][]int{{1}, {7}, {cs}, {cs - 1, 2}, {3, 5, 7, 11, 4099, 13}, {len(data)}} {
			var meta bytes.Buffer
			w, err := NewWriter(&meta, NewHeader(5, 6, cs))
			if err != nil {
				t.Fatal(err)
			}
			p := data
			for i := 0; len(p) > 0; i++ {
				k := max(min(sizes[i%len(sizes)], len(p)), 1)
				n, err := w.Write(p[:k])
				if n != k || err != nil {
					t.Fatalf("Write: %d, %v", n, err)
				}
				if i%17 == 0 {
					if err := w.Flush(); err != nil {
						t.Fatal(err)
					}
				}
				p = p[k:]
			}
			if w.Size() != int64(len(data)) {
				t.Fatalf("Size %d", w.Size())
			}
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}
			if err := w.Close(); err != nil {
				t.Fatal("second Close:", err)
			}
			if !bytes.Equal(meta.Bytes(), want) {
				t.Fatalf("cs %d sizes %v: Writer output differs from Sums", cs, sizes)
			}
			if _, err := w.Write([]byte{1}); err == nil {
				t.Fatal("Write after Close succeeded")
			}
		}
	}
}

func TestWriterEmpty(t *testing.T) {
	var meta bytes.Buffer
	w, err := NewWriter(&meta, NewHeader(1, 2, 512))
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if meta.Len() != HeaderSize {
		t.Fatalf("empty block meta is %d bytes", meta.Len())
	}
	if err := VerifyFile(bytes.NewReader(nil), 0, &meta); err != nil {
		t.Fatal(err)
	}
}

type failWriter struct{ after int }

func (f *failWriter) Write(p []byte) (int, error) {
	if f.after <= 0 {
		return 0, errors.New("disk full")
	}
	f.after--
	return len(p), nil
}

func TestWriterErrors(t *testing.T) {
	if _, err := NewWriter(&failWriter{}, NewHeader(1, 1, 512)); err == nil {
		t.Fatal("header write error lost")
	}
	w, err := NewWriter(&failWriter{after: 1}, NewHeader(1, 1, 1))
	if err != nil {
		t.Fatal(err)
	}
	_, err = w.Write(make([]byte, sumBatch))
	if err == nil || err.Error() != "disk full" {
		t.Fatalf("got %v", err)
	}
	if _, err := w.Write([]byte{1}); err == nil {
		t.Fatal("error not sticky")
	}
	if err := w.Close(); err == nil {
		t.Fatal("Close lost the error")
	}

	if _, err := NewMetaWriter(&failWriter{}, NewHeader(1, 1, 512)); err == nil {
		t.Fatal("header write error lost")
	}
	mw, err := NewMetaWriter(&failWriter{after: 1}, NewHeader(1, 1, 512))
	if err != nil {
		t.Fatal(err)
	}
	if err := mw.AppendSums([]uint64{1}); err == nil {
		t.Fatal("AppendSums error lost")
	}
	if err := mw.AppendSums([]uint64{1}); err == nil {
		t.Fatal("AppendSums error not sticky")
	}
}

func TestMetaWriterReadMetaRoundTrip(t *testing.T) {
	h := NewHeader(77, 3, 512)
	data := testBytes(512*9+1, 7)
	sums := Sums(data, 512, nil)
	var buf bytes.Buffer
	mw, err := NewMetaWriter(&buf, h)
	if err != nil {
		t.Fatal(err)
	}
	for _, part := range [][]uint64{sums[:3], nil, sums[3:4], sums[4:]} {
		if err := mw.AppendSums(part); err != nil {
			t.Fatal(err)
		}
	}
	if mw.Count() != int64(len(sums)) {
		t.Fatalf("Count %d", mw.Count())
	}
	if int64(buf.Len()) != MetaSize(int64(len(data)), 512) {
		t.Fatalf("meta size %d", buf.Len())
	}
	gh, gs, err := ReadMeta(bytes.NewReader(buf.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	if gh != h || len(gs) != len(sums) {
		t.Fatalf("ReadMeta: %+v, %d sums", gh, len(gs))
	}
	for i := range sums {
		if gs[i] != sums[i] {
			t.Fatalf("sum %d", i)
		}
	}
	// One byte at a time works too.
	if _, gs2, err := ReadMeta(iotest.OneByteReader(bytes.NewReader(buf.Bytes()))); err != nil || len(gs2) != len(sums) {
		t.Fatalf("OneByteReader: %v", err)
	}
}

func TestReadMetaErrors(t *testing.T) {
	h := NewHeader(77, 3, 512)
	good := metaBytes(t, h, []uint64{1, 2, 3})
	for k := 1; k < SumSize; k++ {
		_, _, err := ReadMeta(bytes.NewReader(good[:len(good)-k]))
		if ce := wantCorruption(t, err, "partial checksum"); ce.BlockID != 77 {
			t.Fatalf("%+v", ce)
		}
	}
	for _, n := range []int{0, 1, HeaderSize - 1} {
		_, _, err := ReadMeta(bytes.NewReader(good[:n]))
		wantCorruption(t, err, "short header")
	}
	bad := bytes.Clone(good)
	bad[1] = 'x'
	_, _, err := ReadMeta(bytes.NewReader(bad))
	wantCorruption(t, err, "bad header magic")

	ioErr := errors.New("io")
	_, _, err = ReadMeta(iotest.ErrReader(ioErr))
	if !errors.Is(err, ioErr) || IsCorruption(err) {
		t.Fatalf("got %v", err)
	}
	_, _, err = ReadMeta(io.MultiReader(bytes.NewReader(good), iotest.ErrReader(ioErr)))
	if !errors.Is(err, ioErr) || IsCorruption(err) {
		t.Fatalf("got %v", err)
	}
	if h2, sums, err := ReadMeta(bytes.NewReader(good[:HeaderSize])); err != nil || h2 != h || len(sums) != 0 {
		t.Fatalf("header only: %+v %v %v", h2, sums, err)
	}
}

func TestReadSums(t *testing.T) {
	sums := []uint64{10, 11, 12, 13, 14}
	r := bytes.NewReader(metaBytes(t, NewHeader(1, 1, 512), sums))
	for _, c := range [][2]int64{{0, 5}, {0, 1}, {4, 1}, {2, 3}, {1, 2}} {
		got, err := ReadSums(r, c[0], c[1])
		if err != nil {
			t.Fatal(err)
		}
		for i, s := range got {
			if s != sums[int(c[0])+i] {
				t.Fatalf("ReadSums%v = %v", c, got)
			}
		}
	}
	if got, err := ReadSums(r, 3, 0); err != nil || len(got) != 0 {
		t.Fatal(got, err)
	}
	for _, c := range [][2]int64{{0, 6}, {5, 1}, {4, 2}, {100, 1}} {
		_, err := ReadSums(r, c[0], c[1])
		if !IsCorruption(err) {
			t.Errorf("ReadSums%v past the end: %v", c, err)
		}
	}
	for _, c := range [][2]int64{{-1, 1}, {0, -1}, {1 << 62, 1}, {0, 1 << 40}} {
		if _, err := ReadSums(r, c[0], c[1]); err == nil || IsCorruption(err) {
			t.Errorf("ReadSums%v: %v", c, err)
		}
	}
}

func TestVerifyFile(t *testing.T) {
	const cs = 512
	data := testBytes(10*cs+5, 8)
	h := NewHeader(17, 2, cs)
	meta := metaBytes(t, h, Sums(data, cs, nil))
	if err := VerifyFile(bytes.NewReader(data), int64(len(data)), bytes.NewReader(meta)); err != nil {
		t.Fatal(err)
	}
	if err := VerifyFile(iotest.HalfReader(bytes.NewReader(data)), int64(len(data)), iotest.OneByteReader(bytes.NewReader(meta))); err != nil {
		t.Fatal(err)
	}
	for _, pos := range []int{0, cs, 4*cs + 9, len(data) - 1} {
		bad := bytes.Clone(data)
		bad[pos] ^= 4
		ce := wantCorruption(t, VerifyFile(bytes.NewReader(bad), int64(len(bad)), bytes.NewReader(meta)), "checksum mismatch")
		if ce.BlockID != 17 || ce.Chunk != int64(pos/cs) || ce.Offset != int64(pos/cs*cs) {
			t.Fatalf("flip at %d: %+v", pos, ce)
		}
	}
	// A flipped checksum.
	bad := bytes.Clone(meta)
	bad[SumOffset(3)] ^= 1
	if ce := wantCorruption(t, VerifyFile(bytes.NewReader(data), int64(len(data)), bytes.NewReader(bad)), "checksum mismatch"); ce.Chunk != 3 {
		t.Fatalf("%+v", ce)
	}
}

func TestVerifyFileLengthMismatch(t *testing.T) {
	const cs = 512
	data := testBytes(5*cs, 9)
	meta := metaBytes(t, NewHeader(17, 2, cs), Sums(data, cs, nil)) // 5 sums
	verify := func(block []byte, meta []byte) error {
		return VerifyFile(bytes.NewReader(block), int64(len(block)), bytes.NewReader(meta))
	}
	cases := []struct {
		name        string
		block, meta []byte
		reason      string
	}{
		{"block longer by a chunk", append(bytes.Clone(data), testBytes(cs, 1)...), meta, "length mismatch: block has 6 chunks, meta has 5"},
		{"block longer by a byte", append(bytes.Clone(data), 0), meta, "length mismatch: block has 6 chunks, meta has 5"},
		{"block shorter by a chunk", data[:4*cs], meta, "length mismatch: block has 4 chunks, meta has 5"},
		{"block shorter by a byte", data[:5*cs-1], meta, "checksum mismatch"},
		{"block truncated mid chunk", data[:3*cs+7], meta, "length mismatch: block has 4 chunks, meta has 5"},
		{"meta shorter", data, meta[:SumOffset(4)], "length mismatch: block has 5 chunks, meta has 4"},
		{"meta empty", data, meta[:HeaderSize], "length mismatch: block has 5 chunks, meta has 0"},
		{"meta longer", data, append(bytes.Clone(meta), make([]byte, 16)...), "length mismatch: block has 5 chunks, meta has 7"},
		{"empty block", nil, meta, "length mismatch: block has 0 chunks, meta has 5"},
		{"meta partial sum", data, meta[:len(meta)-3], "partial checksum of 5 bytes"},
		{"meta trailing partial", data, append(bytes.Clone(meta), 1, 2), "partial checksum of 2 bytes"},
		{"meta short header", data, meta[:HeaderSize-1], "short header"},
		{"meta missing", data, nil, "short header"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ce := wantCorruption(t, verify(c.block, c.meta), c.reason)
			if ce.BlockID != 17 && !strings.Contains(c.reason, "header") {
				t.Fatalf("%+v", ce)
			}
		})
	}
	// The block reader ends before blockLen bytes.
	err := VerifyFile(bytes.NewReader(data[:2*cs+1]), int64(len(data)), bytes.NewReader(meta))
	wantCorruption(t, err, "block file ends at byte 1025 of 2560")
	// I/O errors pass through unmarked.
	ioErr := errors.New("io")
	err = VerifyFile(iotest.ErrReader(ioErr), int64(len(data)), bytes.NewReader(meta))
	if !errors.Is(err, ioErr) || IsCorruption(err) {
		t.Fatalf("block read error: %v", err)
	}
	err = VerifyFile(bytes.NewReader(data), int64(len(data)), io.MultiReader(bytes.NewReader(meta[:100]), iotest.ErrReader(ioErr)))
	if !errors.Is(err, ioErr) || IsCorruption(err) {
		t.Fatalf("meta read error: %v", err)
	}
	if err := VerifyFile(bytes.NewReader(data), -1, bytes.NewReader(meta)); err == nil || IsCorruption(err) {
		t.Fatalf("negative length: %v", err)
	}
}

func TestCorruptionErrors(t *testing.T) {
	ce := &CorruptionError{BlockID: 17, Chunk: 3, Offset: 196608, Reason: "checksum mismatch"}
	if got := ce.Error(); got != "block 17: checksum mismatch at chunk 3 (offset 196608)" {
		t.Fatal(got)
	}
	if got := (&CorruptionError{BlockID: 17, Chunk: 3, Offset: -1, Reason: "x"}).Error(); got != "block 17: x at chunk 3" {
		t.Fatal(got)
	}
	if got := (&CorruptionError{BlockID: 4, Chunk: -1, Offset: -1, Reason: "bad header magic"}).Error(); got != "block 4: bad header magic" {
		t.Fatal(got)
	}

	wrapped := fmt.Errorf("read blk_17: %w", ce)
	twice := fmt.Errorf("serve: %w", wrapped)
	if !errors.Is(twice, ErrCorruption) || !IsCorruption(twice) {
		t.Fatal("errors.Is through %w wrapping")
	}
	var got *CorruptionError
	if !errors.As(twice, &got) || got != ce {
		t.Fatal("errors.As through %w wrapping")
	}
	if IsCorruption(errors.New("x")) || IsCorruption(nil) || IsCorruption(io.EOF) {
		t.Fatal("IsCorruption false positive")
	}

	// MarkCorruption keeps message and chain.
	base := fmt.Errorf("sstable: %w", io.ErrUnexpectedEOF)
	m := MarkCorruption(base)
	if m.Error() != base.Error() {
		t.Fatalf("message %q", m.Error())
	}
	if !errors.Is(m, ErrCorruption) || !errors.Is(m, io.ErrUnexpectedEOF) || errors.Unwrap(m) != base {
		t.Fatal("MarkCorruption chain")
	}
	if w := fmt.Errorf("open: %w", m); !IsCorruption(w) || !errors.Is(w, io.ErrUnexpectedEOF) {
		t.Fatal("MarkCorruption through wrapping")
	}
	if MarkCorruption(nil) != nil {
		t.Fatal("MarkCorruption(nil)")
	}
	if MarkCorruption(ce) != error(ce) {
		t.Fatal("MarkCorruption re-wrapped a corruption error")
	}
	if errors.Is(errors.New("checksum: corruption"), ErrCorruption) {
		t.Fatal("ErrCorruption matched by message")
	}
}

func TestFileNames(t *testing.T) {
	if got := BlockFileName(1073741825); got != "blk_1073741825" {
		t.Fatal(got)
	}
	if got := MetaFileName(1073741825, 1001); got != "blk_1073741825_1001.meta" {
		t.Fatal(got)
	}
	for _, c := range []struct {
		name   string
		id, gs uint64
		ok     bool
	}{
		{"blk_1073741825_1001.meta", 1073741825, 1001, true},
		{"blk_0_0.meta", 0, 0, true},
		{"blk_18446744073709551615_1.meta", ^uint64(0), 1, true},
		{"blk_1_2", 0, 0, false},
		{"blk_1.meta", 0, 0, false},
		{"blk_1_.meta", 0, 0, false},
		{"blk__2.meta", 0, 0, false},
		{"blk_01_2.meta", 0, 0, false},
		{"blk_+1_2.meta", 0, 0, false},
		{"blk_1_2_3.meta", 0, 0, false},
		{"blk_18446744073709551616_1.meta", 0, 0, false},
		{"xblk_1_2.meta", 0, 0, false},
		{"blk_1_2.meta.tmp", 0, 0, false},
	} {
		id, gs, ok := ParseMetaFileName(c.name)
		if id != c.id || gs != c.gs || ok != c.ok {
			t.Errorf("ParseMetaFileName(%q) = %d, %d, %v", c.name, id, gs, ok)
		}
	}
	for _, c := range []struct {
		id   uint64
		want string
	}{
		{0, "subdir0/subdir0"},
		{0xff, "subdir0/subdir0"},
		{0x100, "subdir0/subdir1"},
		{0x1f00, "subdir0/subdir31"},
		{0x2000, "subdir0/subdir0"},
		{0x10000, "subdir1/subdir0"},
		{1073741825, "subdir0/subdir0"},
		{0x1f1f00, "subdir31/subdir31"},
		{0x12345678, "subdir20/subdir22"},
	} {
		if got := FinalizedSubdir(c.id); got != filepath.FromSlash(c.want) {
			t.Errorf("FinalizedSubdir(%#x) = %q, want %q", c.id, got, c.want)
		}
	}
}
