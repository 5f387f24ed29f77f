package client

import (
	"bufio"
	"context"
	"encoding/binary"
	"fmt"
	"time"

	"github.com/minio/highwayhash"

	"cairn"
	"cairn/checksum"
	"cairn/rpc"
	"cairn/rpc/pb"
	"cairn/xfer"
)

// FileChecksum is a whole file's checksum (HDFS's getFileChecksum): the
// algorithm's name and the checksum's bytes. Two files with the same
// bytes, stored with the same chunk size, have the same FileChecksum
// whatever their block sizes (docs/FORMAT.md, "File checksum").
type FileChecksum struct {
	// Algorithm is "HH64-COMPOSITE-<chunk size>".
	Algorithm string
	// Bytes is the checksum, 8 bytes big-endian.
	Bytes []byte
	// Length is the file's length in bytes.
	Length int64
}

// checksumTimeout bounds one BLOCK_CHECKSUM when ctx has no deadline: the
// blockd re-reads the bytes it answers for.
const checksumTimeout = 2 * time.Minute

// FileChecksum computes the checksum of the closed file at path: the
// HighwayHash-64 (checksum.Key) of the sequence of its chunk checksums
// (8 bytes little-endian each, as in a .meta), in file order. Each
// block's are asked from a blockd holding a replica (BLOCK_CHECKSUM, with
// the block's read token), which re-reads its bytes against them first;
// on any failure the next replica is asked. A file being written is
// KindBusy; a block no replica answers for is KindIO.
func (c *Client) FileChecksum(ctx context.Context, path string) (FileChecksum, error) {
	const op = "client.FileChecksum"
	fb, err := c.NS.BlockLocations(ctx, cairn.FileRef{Path: path})
	if err != nil {
		return FileChecksum{}, err
	}
	if fb.Writing {
		return FileChecksum{}, cairn.E(op, cairn.KindBusy, path, "the file is being written; its checksum is known once it is closed")
	}
	c.sortByDistance(fb.Blocks)
	h, _ := highwayhash.New64(checksum.Key[:])
	chunk := 0
	for i, lb := range fb.Blocks {
		sums, cs, err := c.blockSums(ctx, lb)
		if err != nil {
			return FileChecksum{}, cairn.E(op, cairn.KindIO, path, err.Error())
		}
		if chunk != 0 && cs != chunk {
			return FileChecksum{}, cairn.E(op, cairn.KindIO, path, fmt.Sprintf("%s has chunks of %d bytes, the blocks before it %d", lb.Block, cs, chunk))
		}
		chunk = cs
		if i < len(fb.Blocks)-1 && lb.Len%int64(cs) != 0 {
			return FileChecksum{}, cairn.E(op, cairn.KindIO, path, fmt.Sprintf("%s of %d bytes ends inside a chunk of %d and is not the last block", lb.Block, lb.Len, cs))
		}
		_, _ = h.Write(sums)
	}
	if chunk == 0 {
		chunk = checksum.DefaultChunkSize
	}
	return FileChecksum{
		Algorithm: fmt.Sprintf("HH64-COMPOSITE-%d", chunk),
		Bytes:     binary.BigEndian.AppendUint64(nil, h.Sum64()),
		Length:    fb.Size,
	}, nil
}

// blockSums returns the chunk checksums of block lb (their .meta bytes)
// and its chunk size, from the first replica that answers whole.
func (c *Client) blockSums(ctx context.Context, lb cairn.LocatedBlock) ([]byte, int, error) {
	if len(lb.Locations) == 0 {
		return nil, 0, fmt.Errorf("%s: no live replica", lb.Block)
	}
	var last error
	for _, n := range lb.Locations {
		sums, chunk, err := c.replicaSums(ctx, n, lb)
		if err == nil {
			return sums, chunk, nil
		}
		if ctx.Err() != nil {
			return nil, 0, ctx.Err()
		}
		last = err
	}
	return nil, 0, last
}

// replicaSums asks node for every chunk checksum of its replica of lb, in
// as many BLOCK_CHECKSUM ops as it takes.
func (c *Client) replicaSums(ctx context.Context, node cairn.Node, lb cairn.LocatedBlock) ([]byte, int, error) {
	var out []byte
	chunk := 0
	off := int64(0)
	for {
		rep, err := c.blockChecksumOp(ctx, node, lb, off)
		if err != nil {
			return nil, 0, err
		}
		cs := int(rep.ChunkSize)
		n := int64(len(rep.ChunkSums) / checksum.SumSize)
		switch {
		case cs <= 0 || cs > checksum.MaxChunkSize || len(rep.ChunkSums)%checksum.SumSize != 0:
			return nil, 0, fmt.Errorf("%s on %s: malformed answer", lb.Block, node.DataAddr)
		case chunk != 0 && cs != chunk:
			return nil, 0, fmt.Errorf("%s on %s: chunk size changed", lb.Block, node.DataAddr)
		case rep.BlockLen != lb.Len:
			return nil, 0, fmt.Errorf("%s on %s: replica has %d bytes, the block %d", lb.Block, node.DataAddr, rep.BlockLen, lb.Len)
		}
		chunk = cs
		out = append(out, rep.ChunkSums...)
		off += n * int64(cs)
		if off >= lb.Len {
			if int64(len(out)/checksum.SumSize) != checksum.NumChunks(lb.Len, cs) {
				return nil, 0, fmt.Errorf("%s on %s: %d checksums for %d bytes", lb.Block, node.DataAddr, len(out)/checksum.SumSize, lb.Len)
			}
			return out, chunk, nil
		}
		if n == 0 {
			return nil, 0, fmt.Errorf("%s on %s: no checksum from offset %d", lb.Block, node.DataAddr, off)
		}
	}
}

// blockChecksumOp is one BLOCK_CHECKSUM from byte off of lb on node.
func (c *Client) blockChecksumOp(ctx context.Context, node cairn.Node, lb cairn.LocatedBlock, off int64) (*pb.OpReply, error) {
	conn, err := c.dataDial(ctx)(ctx, node.DataAddr, 10*time.Second)
	if err != nil {
		return nil, fmt.Errorf("%s on %s: %v", lb.Block, node.DataAddr, err)
	}
	defer conn.Close()
	deadline, ok := ctx.Deadline()
	if !ok {
		deadline = time.Now().Add(checksumTimeout)
	}
	_ = conn.SetDeadline(deadline)
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Now()) })
	defer stop()
	bw := bufio.NewWriter(conn)
	b := lb.Block
	err = xfer.WriteOp(bw, &pb.OpHeader{Op: pb.OpHeader_BLOCK_CHECKSUM, Block: rpc.ToPBBlock(&b), Offset: off, Token: lb.Token})
	if err == nil {
		err = bw.Flush()
	}
	var rep *pb.OpReply
	if err == nil {
		rep, err = xfer.ReadReply(bufio.NewReader(conn))
	}
	if err != nil {
		return nil, fmt.Errorf("%s on %s: no answer: %v", lb.Block, node.DataAddr, err)
	}
	if rep.Status != 0 {
		return nil, fmt.Errorf("%s on %s: %s", lb.Block, node.DataAddr, rep.Message)
	}
	return rep, nil
}
