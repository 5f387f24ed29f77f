package client

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sort"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"

	"cairn"
	"cairn/blocktoken"
	"cairn/checksum"
	"cairn/rpc"
	"cairn/rpc/pb"
	"cairn/xfer"
)

// streamAhead is how far past a read one request to a blockd asks for, so
// sequential reads reuse one stream.
const streamAhead = 8 << 20

// DefaultReadTimeout bounds connecting to a replica and its answer to a
// read: a hung blockd costs a reader this long before it moves on to the
// next replica.
const DefaultReadTimeout = 5 * time.Second

// packetTimeout bounds the wait for each packet of a read once the
// replica has answered.
const packetTimeout = 60 * time.Second

// Reader reads a file at any offset, verifying every chunk against the
// checksums the writer computed, and moving to another replica on any
// error. It is safe for concurrent use.
type Reader struct {
	c    *Client
	path string
	fb   cairn.FileBlocks

	mu  sync.Mutex
	cur *stream         // an open stream that sequential reads continue
	bad map[string]bool // replicas that failed this reader, tried last
}

func newReader(c *Client, path string, fb cairn.FileBlocks) *Reader {
	return &Reader{c: c, path: path, fb: fb, bad: map[string]bool{}}
}

// Size is the file's length when it was opened.
func (r *Reader) Size() int64 { return r.fb.Size }

// Close releases the reader.
func (r *Reader) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.cur != nil {
		r.cur.close()
		r.cur = nil
	}
	return nil
}

// Blocks returns the file's blocks as the reader knows them, each with its
// replicas in the order it tries them.
func (r *Reader) Blocks() []cairn.LocatedBlock {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]cairn.LocatedBlock(nil), r.fb.Blocks...)
}

// refresh asks metad again for the file's blocks: a file being written, or
// written to since it was opened, may have grown, and an append or a
// pipeline recovery moves the last block to a new generation stamp and
// other blockds. The new view is taken when the file grew, or always with
// force.
func (r *Reader) refresh(force bool) (bool, error) {
	ctx, cancel := context.WithTimeout(context.Background(), rpcTimeout)
	defer cancel()
	fb, err := r.c.NS.BlockLocations(ctx, cairn.FileRef{ID: r.fb.FileID, Path: r.path})
	if err != nil {
		return false, err
	}
	if !SameVersion(r.fb.Blocks, fb.Blocks) {
		return false, cairn.E("client.Read", cairn.KindIO, r.path, "the file was replaced (truncated) since it was opened")
	}
	grew := fb.Size > r.fb.Size
	if grew || (force && fb.Size >= r.fb.Size) {
		r.c.sortByDistance(fb.Blocks)
		r.fb = fb
		if r.cur != nil {
			r.cur.close()
			r.cur = nil
		}
	}
	return grew, nil
}

// SameVersion reports whether blocks, a later view of a file, is the same
// version of it as was: every block of was is there, in order (an append
// or a pipeline recovery changes the last one's stamp and length, never
// its ID). A file replaced whole (O_TRUNC) has new blocks, whose IDs are
// never reused: a reader of the old version must not read them as its
// own.
func SameVersion(was, blocks []cairn.LocatedBlock) bool {
	if len(blocks) < len(was) {
		return false
	}
	for i, b := range was {
		if blocks[i].ID != b.ID {
			return false
		}
	}
	return true
}

// ReadAt implements io.ReaderAt. It returns len(p) bytes, or fewer only
// with an error: io.EOF when the read reached the end of the file, and
// any other error when it failed before that (a block no replica could
// serve, metad unreachable); the bytes before such an error are good, but
// the read as a whole failed, and a caller that must not hand out a short
// count (the mount) reports the error. A read at or past the end the
// reader knows asks metad whether the file has grown, so a file being
// written can be followed (tail -f).
func (r *Reader) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, cairn.E("client.ReadAt", cairn.KindInvalid, r.path, "negative offset")
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	refreshed, renewed := false, false
	var firstErr error
	for n < len(p) {
		pos := off + int64(n)
		if pos >= r.fb.Size && !refreshed {
			refreshed = true
			if _, err := r.refresh(false); err != nil {
				return n, err
			}
		}
		if pos >= r.fb.Size {
			return n, io.EOF
		}
		i := sort.Search(len(r.fb.Blocks), func(i int) bool {
			b := r.fb.Blocks[i]
			return b.Offset+b.Len > pos
		})
		if i == len(r.fb.Blocks) {
			return n, cairn.E("client.ReadAt", cairn.KindIO, r.path, fmt.Sprintf("no block holds offset %d of %d", pos, r.fb.Size))
		}
		lb := r.fb.Blocks[i]
		boff := pos - lb.Offset
		if !renewed && r.tokenExpiring(lb, boff) {
			// A new stream needs a token that is still good: ask metad
			// again (once), as HDFS's reader refetches block locations.
			renewed = true
			if _, err := r.refresh(true); err != nil {
				return n, err
			}
			continue
		}
		k := int(min(int64(len(p)-n), lb.Len-boff))
		if err := r.readBlock(lb, boff, p[n:n+k]); err != nil {
			// The block may have moved on (an append, a pipeline recovery)
			// since the reader last asked: ask again, once. If that fails
			// too, the first error, which says what was tried, is the one
			// to report.
			if firstErr != nil {
				return n, firstErr
			}
			firstErr = err
			refreshed = true
			if _, rerr := r.refresh(true); rerr != nil {
				return n, err
			}
			continue
		}
		firstErr = nil
		n += k
	}
	return n, nil
}

// tokenMargin: a block's token expiring within this is renewed before a
// new stream is opened with it, leaving room for clock skew and the time
// to connect.
const tokenMargin = 5 * time.Second

// tokenExpiring reports whether reading lb at boff needs a new stream
// (the open one does not continue there) and lb's token expires within
// tokenMargin. A stream already open goes on: a blockd checks the token
// when a stream opens.
func (r *Reader) tokenExpiring(lb cairn.LocatedBlock, boff int64) bool {
	if r.cur != nil && r.cur.lb.ID == lb.ID && r.cur.pos == boff {
		return false
	}
	return blocktoken.Expired(lb.Token, time.Now().Add(tokenMargin))
}

// readBlock fills dst from block lb at offset boff, from the open stream if
// it is there, else from each replica in turn.
func (r *Reader) readBlock(lb cairn.LocatedBlock, boff int64, dst []byte) error {
	var tried []string
	for {
		if r.cur == nil || r.cur.lb.ID != lb.ID || r.cur.pos != boff {
			if r.cur != nil {
				r.cur.close()
				r.cur = nil
			}
			node, ok := r.pick(lb, tried)
			if !ok {
				detail := "no replica is known to metad"
				if len(tried) > 0 {
					detail = "every replica failed: " + strings.Join(tried, "; ")
				}
				return cairn.E("client.Read", cairn.KindIO, r.path, fmt.Sprintf("%s: %s", lb.Block, detail))
			}
			want := min(lb.Len-boff, max(int64(len(dst)), streamAhead))
			s, err := openStream(r.c.dataDial(context.Background()), lb, node, boff, want, r.c.opts.ReadTimeout)
			if err != nil {
				tried = append(tried, fmt.Sprintf("%s: %v", node.DataAddr, err))
				r.markBad(lb, node, err)
				continue
			}
			r.cur = s
		}
		n, err := r.cur.read(dst)
		boff += int64(n)
		dst = dst[n:]
		if err == nil && len(dst) == 0 {
			return nil
		}
		node := r.cur.node
		r.cur.close()
		r.cur = nil
		if err == nil {
			continue // the stream's range ended; open the next one
		}
		tried = append(tried, fmt.Sprintf("%s: %v", node.DataAddr, err))
		r.markBad(lb, node, err)
	}
}

// markBad moves a replica that failed to the back of the line for this
// reader and, when its data did not match its checksums, tells metad.
func (r *Reader) markBad(lb cairn.LocatedBlock, n cairn.Node, err error) {
	r.bad[n.StorageID] = true
	r.c.log.Warn("replica read failed; trying another", zap.String("path", r.path), zap.Stringer("block", lb.Block),
		zap.String("blockd", n.DataAddr), zap.Error(err))
	if !checksum.IsCorruption(err) {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), rpcTimeout)
	defer cancel()
	bad := []cairn.BadReplica{{Block: lb.Block, StorageID: n.StorageID, Reason: err.Error()}}
	if rerr := r.c.NS.ReportBadReplicas(ctx, bad); rerr != nil {
		r.c.log.Warn("could not report a corrupt replica", zap.Stringer("block", lb.Block), zap.String("blockd", n.DataAddr), zap.Error(rerr))
	}
}

// pick chooses the next replica to try: not yet tried for this read, good
// ones before those that failed this reader earlier.
func (r *Reader) pick(lb cairn.LocatedBlock, tried []string) (cairn.Node, bool) {
	used := func(n cairn.Node) bool {
		for _, t := range tried {
			if strings.HasPrefix(t, n.DataAddr+":") {
				return true
			}
		}
		return false
	}
	for _, pass := range []bool{false, true} {
		for _, n := range lb.Locations {
			if r.bad[n.StorageID] == pass && !used(n) {
				return n, true
			}
		}
	}
	return cairn.Node{}, false
}

// stream is one READ_BLOCK conversation with a blockd.
type stream struct {
	lb      cairn.LocatedBlock
	node    cairn.Node
	conn    net.Conn
	pr      *xfer.PacketReader
	chunk   int
	pos     int64  // block offset of pending[0]
	end     int64  // end of the requested range
	pending []byte // verified bytes not yet returned
	last    bool
}

// openStream asks node for n bytes of its replica of lb from off, waiting
// up to timeout for the connection and for the answer.
func openStream(dial dialFunc, lb cairn.LocatedBlock, node cairn.Node, off, n int64, timeout time.Duration) (*stream, error) {
	conn, err := dial(context.Background(), node.DataAddr, timeout)
	if err != nil {
		return nil, err
	}
	s := &stream{lb: lb, node: node, conn: conn, pos: off, end: off + n}
	bw := xfer.NewBufferedWriter(conn)
	err = xfer.WriteOp(bw, &pb.OpHeader{Op: pb.OpHeader_READ_BLOCK, Block: rpc.ToPBBlock(&lb.Block), Offset: off, Length: n, Token: lb.Token})
	if err == nil {
		err = bw.Flush()
	}
	br := xfer.NewBufferedReader(conn)
	var rep *pb.OpReply
	if err == nil {
		_ = conn.SetReadDeadline(time.Now().Add(timeout))
		rep, err = xfer.ReadReply(br)
	}
	if err == nil && rep.Status != 0 {
		err = errors.New(rep.Message)
	}
	if err == nil && rep.BlockLen < off+n {
		err = fmt.Errorf("replica holds %d bytes, %d wanted", rep.BlockLen, off+n)
	}
	if err == nil {
		s.chunk = int(rep.ChunkSize)
		s.pr, err = xfer.NewPacketReader(br, s.chunk)
	}
	if err != nil {
		_ = conn.Close()
		return nil, err
	}
	return s, nil
}

// read copies verified bytes into dst. It returns fewer than len(dst) bytes
// with a nil error only when the requested range is used up.
func (s *stream) read(dst []byte) (int, error) {
	n := 0
	for n < len(dst) {
		if len(s.pending) == 0 {
			if s.last || s.pos >= s.end {
				return n, nil
			}
			if err := s.next(); err != nil {
				return n, err
			}
			continue
		}
		k := copy(dst[n:], s.pending)
		s.pending = s.pending[k:]
		s.pos += int64(k)
		n += k
	}
	return n, nil
}

// next reads and verifies one packet.
func (s *stream) next() error {
	_ = s.conn.SetReadDeadline(time.Now().Add(packetTimeout))
	var p xfer.Packet
	if err := s.pr.Read(&p); err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return err
	}
	if p.Offset%int64(s.chunk) != 0 || p.Offset > s.pos || p.Offset+int64(len(p.Data)) < s.pos && !p.Last() {
		return fmt.Errorf("%w: packet at offset %d does not continue offset %d", xfer.ErrProtocol, p.Offset, s.pos)
	}
	if err := checksum.Verify(uint64(s.lb.ID), s.chunk, p.Offset/int64(s.chunk), p.Data, p.Sums); err != nil {
		return err
	}
	skip := s.pos - p.Offset
	if skip > int64(len(p.Data)) {
		skip = int64(len(p.Data))
	}
	s.pending = p.Data[skip:]
	if s.pos+int64(len(s.pending)) > s.end {
		s.pending = s.pending[:s.end-s.pos]
	}
	s.last = p.Last()
	if s.last && s.pos+int64(len(s.pending)) < s.end {
		return fmt.Errorf("%w: stream ended at %d before %d", xfer.ErrProtocol, s.pos+int64(len(s.pending)), s.end)
	}
	return nil
}

func (s *stream) close() { _ = s.conn.Close() }
