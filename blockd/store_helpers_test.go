package blockd

import (
	"bytes"
	"testing"

	"go.uber.org/zap/zaptest"

	"cairn"
	"cairn/checksum"
)

// openTestStore opens a store on dir for a test and closes it at the end.
func openTestStore(t testing.TB, dir string) *Store {
	t.Helper()
	s, err := OpenStore(dir, zaptest.NewLogger(t))
	if err != nil {
		t.Fatalf("OpenStore(%s): %v", dir, err)
	}
	t.Cleanup(s.Close)
	return s
}

// writeAt writes data at off to the replica held by w, in packets of
// packet bytes, with the checksums a client would send.
func writeAt(t testing.TB, w *ReplicaWriter, off int64, data []byte, packet int) {
	t.Helper()
	chunk := w.ChunkSize()
	for len(data) > 0 {
		n := min(packet, len(data))
		sums := checksum.SumsAt(off, data[:n], chunk, nil)
		if err := w.Write(off, data[:n], sums); err != nil {
			t.Fatalf("write %d bytes at %d: %v", n, off, err)
		}
		off += int64(n)
		data = data[n:]
	}
}

// readAll reads every byte of the replica of b through OpenSource,
// verifying each chunk against its stored checksum.
func readAll(t testing.TB, s interface {
	OpenSource(cairn.Block) (Source, error)
}, b cairn.Block) []byte {
	t.Helper()
	src, err := s.OpenSource(b)
	if err != nil {
		t.Fatalf("open %s for reading: %v", b, err)
	}
	defer src.Close()
	have := src.Block()
	chunk := src.ChunkSize()
	n := checksum.NumChunks(have.Len, chunk)
	buf := make([]byte, n*int64(chunk))
	data, sums, err := src.ReadChunks(0, n, buf)
	if err != nil {
		t.Fatalf("read %s: %v", have, err)
	}
	if err := checksum.Verify(uint64(have.ID), chunk, 0, data, sums); err != nil {
		t.Fatalf("read %s: %v", have, err)
	}
	return bytes.Clone(data)
}

func checksumsAt(off int64, data []byte, chunk int) []uint64 {
	return checksum.SumsAt(off, data, chunk, nil)
}
