package blockd

import (
	"bufio"
	"fmt"
	"io"
	"os"

	"go.uber.org/zap"

	"cairn"
	"cairn/checksum"
	"cairn/rpc/pb"
)

// MaxChecksumSums bounds the chunk checksums one BLOCK_CHECKSUM answers
// (32 KiB of them, within xfer.MaxHeader): a client asks a longer
// replica's in several ops, from the offset after the last answered.
const MaxChecksumSums = 4096

// checksumPiece is how many bytes of the replica are read and checked at
// a time.
const checksumPiece = 1 << 20

// serveBlockChecksum answers BLOCK_CHECKSUM: the chunk checksums of this
// blockd's finalized replica of h.Block, at its stamp, from the chunk at
// h.Offset (a chunk boundary), at most MaxChecksumSums of them. The bytes
// they cover are re-read and checked against them first, so a damaged
// .meta (or block file) is an error, never a wrong file checksum.
func (d *Blockd) serveBlockChecksum(bw *bufio.Writer, h *pb.OpHeader) {
	const op = "blockd.BlockChecksum"
	id := cairn.BlockID(h.Block.Id)
	b, ok := d.store.Lookup(id)
	if !ok || b.GenStamp != cairn.GenStamp(h.Block.GenStamp) {
		replyErr(bw, cairn.KindNotExist, fmt.Sprintf("%s: no finalized replica of blk_%d at stamp %d here", op, h.Block.Id, h.Block.GenStamp))
		return
	}
	sums, chunk, err := d.blockSums(b, h.Offset)
	if now, ok := d.store.Lookup(id); err == nil && (!ok || now != b) {
		err = fmt.Errorf("replica changed while it was read; ask again")
	}
	if err != nil {
		if checksum.IsCorruption(err) {
			d.log.Warn("replica failed verification", zap.Stringer("block", b), zap.Error(err))
		}
		replyErr(bw, cairn.KindIO, fmt.Sprintf("%s: %s: %v", op, b, err))
		return
	}
	_ = reply(bw, &pb.OpReply{ChunkSize: uint32(chunk), BlockLen: b.Len, GenStamp: uint64(b.GenStamp),
		ReplicaState: int32(cairn.ReplicaFinalized), ChunkSums: checksum.EncodeSums(nil, sums)})
}

// blockSums reads the checksums of replica b's chunks from the one at
// byte off, checking the bytes they cover.
func (d *Blockd) blockSums(b cairn.Block, off int64) ([]uint64, int, error) {
	meta, err := os.Open(d.store.MetaPath(b))
	if err != nil {
		return nil, 0, err
	}
	defer meta.Close()
	var hb [checksum.HeaderSize]byte
	if _, err := io.ReadFull(meta, hb[:]); err != nil {
		return nil, 0, checksum.MarkCorruption(fmt.Errorf("meta header: %w", err))
	}
	mh, err := checksum.ParseHeader(hb[:])
	if err != nil {
		return nil, 0, err
	}
	chunk := int(mh.ChunkSize)
	if off < 0 || off%int64(chunk) != 0 || off > b.Len {
		return nil, 0, fmt.Errorf("offset %d is not a chunk boundary within %d bytes", off, b.Len)
	}
	first := off / int64(chunk)
	count := min(checksum.NumChunks(b.Len, chunk)-first, MaxChecksumSums)
	sums, err := checksum.ReadSums(meta, first, count)
	if err != nil {
		return nil, 0, err
	}
	data, err := os.Open(d.store.BlockPath(b))
	if err != nil {
		return nil, 0, err
	}
	defer data.Close()
	per := max(checksumPiece/chunk, 1)
	buf := make([]byte, per*chunk)
	for i := 0; i < len(sums); i += per {
		n := min(per, len(sums)-i)
		start := (first + int64(i)) * int64(chunk)
		want := min(int64(n*chunk), b.Len-start)
		got, err := data.ReadAt(buf[:want], start)
		if err != nil && !(err == io.EOF && int64(got) == want) {
			return nil, 0, checksum.MarkCorruption(fmt.Errorf("block file: %w", err))
		}
		if err := checksum.Verify(uint64(b.ID), chunk, first+int64(i), buf[:want], sums[i:i+n]); err != nil {
			return nil, 0, err
		}
	}
	return sums, chunk, nil
}
