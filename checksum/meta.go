package checksum

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
)

// sumBatch is how many checksums Writer collects before writing them out.
const sumBatch = 512

var errClosed = errors.New("checksum: write to closed Writer")

// MetaWriter writes a .meta whose checksums the caller already has, e.g. a
// block daemon storing the checksums a client computed and sent with the
// data. It does not buffer: each AppendSums is one Write to the underlying
// writer.
type MetaWriter struct {
	w   io.Writer
	buf []byte
	n   int64
	err error
}

// NewMetaWriter validates h and writes it to w.
func NewMetaWriter(w io.Writer, h Header) (*MetaWriter, error) {
	if err := h.Validate(); err != nil {
		return nil, err
	}
	if _, err := w.Write(h.Marshal()); err != nil {
		return nil, err
	}
	return &MetaWriter{w: w}, nil
}

// AppendSums writes sums after those already written. After a failed write
// every later call returns the same error.
func (m *MetaWriter) AppendSums(sums []uint64) error {
	if m.err != nil {
		return m.err
	}
	if len(sums) == 0 {
		return nil
	}
	m.buf = appendSums(m.buf[:0], sums)
	if _, err := m.w.Write(m.buf); err != nil {
		m.err = err
		return err
	}
	m.n += int64(len(sums))
	return nil
}

// Count returns how many checksums have been written.
func (m *MetaWriter) Count() int64 { return m.n }

func appendSums(b []byte, sums []uint64) []byte {
	for _, s := range sums {
		b = binary.LittleEndian.AppendUint64(b, s)
	}
	return b
}

// Writer computes the checksums of bytes as they stream in, in writes of any
// size, and writes them to a .meta. It is how a .meta is rebuilt from a block
// file. Checksums of whole chunks are written in batches; Flush writes those
// pending and Close adds the last, short chunk's checksum. Closing a Writer
// does not close the underlying writer.
type Writer struct {
	meta    io.Writer
	cs      int
	partial []byte // bytes of the current, incomplete chunk
	pending []byte // encoded checksums not yet written
	n       int64
	err     error
	closed  bool
}

// NewWriter validates h and writes it to meta.
func NewWriter(meta io.Writer, h Header) (*Writer, error) {
	if err := h.Validate(); err != nil {
		return nil, err
	}
	if _, err := meta.Write(h.Marshal()); err != nil {
		return nil, err
	}
	return &Writer{
		meta:    meta,
		cs:      int(h.ChunkSize),
		partial: make([]byte, 0, h.ChunkSize),
		pending: make([]byte, 0, sumBatch*SumSize),
	}, nil
}

// Write checksums p. It returns len(p) unless the Writer is closed; an error
// writing checksums to the .meta is returned by this and every later call.
func (w *Writer) Write(p []byte) (int, error) {
	if w.closed {
		return 0, errClosed
	}
	if w.err != nil {
		return 0, w.err
	}
	n := len(p)
	w.n += int64(n)
	if len(w.partial) > 0 {
		k := min(w.cs-len(w.partial), len(p))
		w.partial = append(w.partial, p[:k]...)
		p = p[k:]
		if len(w.partial) == w.cs {
			w.add(Sum(w.partial))
			w.partial = w.partial[:0]
		}
	}
	for len(p) >= w.cs {
		w.add(Sum(p[:w.cs]))
		p = p[w.cs:]
	}
	w.partial = append(w.partial, p...)
	return n, w.err
}

func (w *Writer) add(sum uint64) {
	w.pending = binary.LittleEndian.AppendUint64(w.pending, sum)
	if len(w.pending) == cap(w.pending) {
		w.flush()
	}
}

func (w *Writer) flush() {
	if w.err != nil || len(w.pending) == 0 {
		return
	}
	if _, err := w.meta.Write(w.pending); err != nil {
		w.err = err
	}
	w.pending = w.pending[:0]
}

// Flush writes the checksums of all whole chunks seen so far.
func (w *Writer) Flush() error {
	if w.closed {
		return w.err
	}
	w.flush()
	return w.err
}

// Size returns the number of bytes checksummed so far.
func (w *Writer) Size() int64 { return w.n }

// Close checksums the last, short chunk if there is one and writes all
// pending checksums. Closing again returns the same result.
func (w *Writer) Close() error {
	if w.closed {
		return w.err
	}
	w.closed = true
	if len(w.partial) > 0 {
		w.pending = binary.LittleEndian.AppendUint64(w.pending, Sum(w.partial))
		w.partial = w.partial[:0]
	}
	w.flush()
	return w.err
}

// ReadMeta reads a whole .meta: its header and every checksum. A damaged
// header, or a length that is not HeaderSize plus a multiple of SumSize, is a
// corruption error.
func ReadMeta(r io.Reader) (Header, []uint64, error) {
	var hb [HeaderSize]byte
	n, err := io.ReadFull(r, hb[:])
	if err == io.ErrUnexpectedEOF || err == io.EOF {
		_, err = ParseHeader(hb[:n])
		return Header{}, nil, err
	}
	if err != nil {
		return Header{}, nil, err
	}
	h, err := ParseHeader(hb[:])
	if err != nil {
		return Header{}, nil, err
	}
	rest, err := io.ReadAll(r)
	if err != nil {
		return Header{}, nil, err
	}
	if k := len(rest) % SumSize; k != 0 {
		return Header{}, nil, &CorruptionError{
			BlockID: h.BlockID, Chunk: -1, Offset: -1,
			Reason: fmt.Sprintf("meta ends with a partial checksum of %d bytes", k),
		}
	}
	sums := make([]uint64, len(rest)/SumSize)
	for i := range sums {
		sums[i] = binary.LittleEndian.Uint64(rest[i*SumSize:])
	}
	return h, sums, nil
}

// ReadSums reads count checksums starting with that of chunk first from a
// .meta whose header the caller has already parsed. A .meta too short to
// hold them gives an error marked as corruption (see MarkCorruption) that
// names the chunks but not the block; callers usually wrap it with the
// block id.
func ReadSums(r io.ReaderAt, first, count int64) ([]uint64, error) {
	if first < 0 || count < 0 {
		return nil, fmt.Errorf("checksum: ReadSums(%d, %d): negative argument", first, count)
	}
	if count == 0 {
		return nil, nil
	}
	if count > (math.MaxInt32-HeaderSize)/SumSize || first > (math.MaxInt64-HeaderSize)/SumSize-count {
		return nil, fmt.Errorf("checksum: ReadSums(%d, %d): range too large", first, count)
	}
	b := make([]byte, count*SumSize)
	n, err := r.ReadAt(b, SumOffset(first))
	if n < len(b) {
		if err == io.EOF || err == nil {
			return nil, MarkCorruption(fmt.Errorf("checksum: meta too short: want checksums of chunks %d..%d, it ends after %d bytes of them",
				first, first+count-1, n))
		}
		return nil, err
	}
	sums := make([]uint64, count)
	for i := range sums {
		sums[i] = binary.LittleEndian.Uint64(b[i*SumSize:])
	}
	return sums, nil
}

// VerifyFile checks the blockLen bytes read from block against the whole
// .meta read from meta: the header must be sound, the .meta must hold exactly
// NumChunks(blockLen, chunk size) checksums, and every chunk must match its
// checksum. Both readers are streamed; the block is never held in memory
// whole, only one chunk of it at a time.
//
// The first problem found is returned as a *CorruptionError: a damaged
// header, a length mismatch between block and .meta (reported before the
// last chunk is compared, so a truncated or extended replica reads as a
// length mismatch), a block reader that ends before blockLen bytes, or the
// first chunk whose checksum does not match. I/O errors other than an early
// end are returned as they are.
func VerifyFile(block io.Reader, blockLen int64, meta io.Reader) error {
	if blockLen < 0 {
		return fmt.Errorf("checksum: VerifyFile: negative block length %d", blockLen)
	}
	mr := bufio.NewReaderSize(meta, 64<<10)
	var hb [HeaderSize]byte
	n, err := io.ReadFull(mr, hb[:])
	if err != nil && err != io.ErrUnexpectedEOF && err != io.EOF {
		return err
	}
	h, err := ParseHeader(hb[:n])
	if err != nil {
		return err
	}
	cs := int(h.ChunkSize)
	chunks := NumChunks(blockLen, cs)
	corrupt := func(chunk int64, format string, args ...any) error {
		e := &CorruptionError{BlockID: h.BlockID, Chunk: chunk, Offset: -1, Reason: fmt.Sprintf(format, args...)}
		if chunk >= 0 {
			e.Offset = chunk * int64(cs)
		}
		return e
	}
	// checkEnd reads the rest of the .meta, which should be empty after
	// chunks checksums.
	checkEnd := func() error {
		extra, err := io.Copy(io.Discard, mr)
		if err != nil {
			return err
		}
		if extra%SumSize != 0 {
			return corrupt(-1, "meta ends with a partial checksum of %d bytes", extra%SumSize)
		}
		if extra > 0 {
			return corrupt(-1, "length mismatch: block has %d chunks, meta has %d", chunks, chunks+extra/SumSize)
		}
		return nil
	}
	if chunks == 0 {
		return checkEnd()
	}

	br := block
	if cs < 256<<10 {
		br = bufio.NewReaderSize(block, 256<<10)
	}
	buf := make([]byte, cs)
	var sb [SumSize]byte
	for i := range chunks {
		if k, err := io.ReadFull(mr, sb[:]); err != nil {
			switch err {
			case io.EOF:
				return corrupt(-1, "length mismatch: block has %d chunks, meta has %d", chunks, i)
			case io.ErrUnexpectedEOF:
				return corrupt(-1, "meta ends with a partial checksum of %d bytes", k)
			}
			return err
		}
		if i == chunks-1 {
			if err := checkEnd(); err != nil {
				return err
			}
		}
		c := buf[:min(int64(cs), blockLen-i*int64(cs))]
		if k, err := io.ReadFull(br, c); err != nil {
			if err == io.EOF || err == io.ErrUnexpectedEOF {
				return corrupt(-1, "block file ends at byte %d of %d", i*int64(cs)+int64(k), blockLen)
			}
			return err
		}
		if Sum(c) != binary.LittleEndian.Uint64(sb[:]) {
			return corrupt(i, "checksum mismatch")
		}
	}
	return nil
}

// EncodeSums appends sums to b as they are stored in a .meta, for writers
// that place checksums themselves (WriteAt at SumOffset).
func EncodeSums(b []byte, sums []uint64) []byte { return appendSums(b, sums) }
