package client

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"cairn"
	"cairn/checksum"
	"cairn/rpc"
	"cairn/rpc/pb"
	"cairn/xfer"
)

// packetTarget is the data carried by one write packet, rounded to whole
// chunks.
const packetTarget = 128 << 10

// window is how many packets may be in flight, unacknowledged, per pipeline.
const window = 32

// completeTimeout bounds how long Close waits for metad to hear of the last
// block's replicas.
const completeTimeout = 60 * time.Second

// Writer writes a new file sequentially through block pipelines. It is not
// safe for concurrent use.
type Writer struct {
	c      *Client
	path   string
	fi     cairn.FileInfo
	chunk  int
	packet int // bytes of data per packet

	buf      []byte       // data not yet sent, less than one packet
	size     int64        // bytes accepted by Write
	blk      *pipeline    // the block being written, nil between blocks
	prev     *cairn.Block // the last finished block
	err      error        // sticky: the first failure
	closed   bool
	closeErr error
}

func newWriter(c *Client, path string, fi cairn.FileInfo) *Writer {
	chunk := checksum.DefaultChunkSize
	return &Writer{c: c, path: path, fi: fi, chunk: chunk, packet: max(1, packetTarget/chunk) * chunk}
}

// Size is the number of bytes accepted so far.
func (w *Writer) Size() int64 { return w.size }

// Write appends p to the file. Bytes are sent a packet at a time; an error
// from the pipeline is returned by a later Write or by Close.
func (w *Writer) Write(p []byte) (int, error) {
	if w.closed {
		return 0, cairn.E("client.Write", cairn.KindInvalid, w.path, "writer is closed")
	}
	if w.err != nil {
		return 0, w.err
	}
	n := 0
	for len(p) > 0 {
		inBlock := int64(0)
		if w.blk != nil {
			inBlock = w.blk.sent
		}
		room := w.fi.BlockSize - inBlock - int64(len(w.buf))
		k := min(len(p), w.packet-len(w.buf), int(min(room, int64(w.packet))))
		w.buf = append(w.buf, p[:k]...)
		p = p[k:]
		n += k
		w.size += int64(k)
		blockFull := int64(k) == room
		if len(w.buf) == w.packet || blockFull {
			if err := w.send(blockFull); err != nil {
				w.size -= int64(len(p)) // not accepted
				return n, err
			}
		}
	}
	return n, nil
}

// send sends the buffered bytes as one packet; last ends the block.
func (w *Writer) send(last bool) error {
	if w.blk == nil {
		if err := w.openBlock(); err != nil {
			return w.fail(err)
		}
	}
	if err := w.blk.send(w.buf, last); err != nil {
		return w.fail(err)
	}
	w.buf = w.buf[:0]
	if last {
		b, err := w.blk.finish()
		w.blk = nil
		if err != nil {
			return w.fail(err)
		}
		w.prev = &b
	}
	return nil
}

func (w *Writer) fail(err error) error {
	if w.err == nil {
		w.err = err
		w.c.log.Warn("write failed", zap.String("path", w.path), zap.Error(err))
	}
	if w.blk != nil {
		w.blk.abort()
		w.blk = nil
	}
	return w.err
}

func (w *Writer) openBlock() error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	lb, err := w.c.NS.AddBlock(ctx, w.path, w.c.opts.Name, w.prev)
	if err != nil {
		return err
	}
	p, err := openPipeline(lb, w.chunk, w.c.opts.Name)
	if err != nil {
		return cairn.E("client.Write", cairn.KindIO, w.path, err.Error())
	}
	w.blk = p
	return nil
}

// Close sends what is buffered, waits until every byte is acknowledged by
// the pipeline and completes the file at metad. A second Close returns the
// first one's result.
func (w *Writer) Close() error {
	if w.closed {
		return w.closeErr
	}
	w.closed = true
	w.closeErr = w.close()
	return w.closeErr
}

func (w *Writer) close() error {
	if w.err != nil {
		return w.err
	}
	if len(w.buf) > 0 || w.blk != nil {
		if err := w.send(true); err != nil {
			return err
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), completeTimeout)
	defer cancel()
	delay := 20 * time.Millisecond
	for {
		err := w.c.NS.Complete(ctx, w.path, w.c.opts.Name, w.prev)
		if err == nil {
			return nil
		}
		if cairn.KindOf(err) != cairn.KindRetry {
			return err
		}
		select {
		case <-ctx.Done():
			return cairn.E("client.Close", cairn.KindIO, w.path, fmt.Sprintf("metad did not accept the file as complete within %s: %v", completeTimeout, err))
		case <-time.After(delay):
		}
		delay = min(2*delay, time.Second)
	}
}

// pipeline streams one block through a chain of blockds.
type pipeline struct {
	lb    cairn.LocatedBlock
	chunk int
	conn  net.Conn
	bw    *bufio.Writer
	seq   uint64
	sent  int64 // data bytes sent
	frame []byte
	sums  []uint64
	slots chan struct{} // one per packet in flight
	done  chan error    // the ack reader's verdict, once
	once  sync.Once
	// lastSeq is the sequence number of the block's last packet, -1 until
	// it is sent.
	lastSeq atomic.Int64
}

func openPipeline(lb cairn.LocatedBlock, chunk int, client string) (*pipeline, error) {
	if len(lb.Locations) == 0 {
		return nil, fmt.Errorf("%s: metad named no blockd to write to", lb.Block)
	}
	first := lb.Locations[0]
	conn, err := net.DialTimeout("tcp", first.DataAddr, 10*time.Second)
	if err != nil {
		return nil, fmt.Errorf("%s: connect to blockd %s: %w", lb.Block, first.DataAddr, err)
	}
	p := &pipeline{lb: lb, chunk: chunk, conn: conn, bw: xfer.NewBufferedWriter(conn), slots: make(chan struct{}, window), done: make(chan error, 1)}
	br := xfer.NewBufferedReader(conn)
	err = xfer.WriteOp(p.bw, &pb.OpHeader{
		Op: pb.OpHeader_WRITE_BLOCK, Block: rpc.ToPBBlock(&lb.Block), Targets: rpc.ToPBNodes(lb.Locations[1:]),
		ChunkSize: uint32(chunk), Client: client,
	})
	if err == nil {
		err = p.bw.Flush()
	}
	var rep *pb.OpReply
	if err == nil {
		_ = conn.SetReadDeadline(time.Now().Add(30 * time.Second))
		rep, err = xfer.ReadReply(br)
		_ = conn.SetReadDeadline(time.Time{})
	}
	if err == nil && rep.Status != 0 {
		err = fmt.Errorf("pipeline setup refused (bad node %s): %s", rep.FirstBadNode, rep.Message)
	}
	if err != nil {
		_ = conn.Close()
		return nil, fmt.Errorf("%s via %s: %w", lb.Block, first.DataAddr, err)
	}
	p.lastSeq.Store(-1)
	go p.readAcks(br)
	return p, nil
}

// readAcks consumes acks in order; the ack of the last packet, or the first
// failure, ends it.
func (p *pipeline) readAcks(br *bufio.Reader) {
	var want uint64
	for {
		a, err := xfer.ReadAck(br)
		if err != nil {
			p.finishWith(fmt.Errorf("%s: pipeline ack: %w", p.lb.Block, err))
			return
		}
		if a.Seq != want {
			p.finishWith(fmt.Errorf("%s: ack for packet %d, expected %d", p.lb.Block, a.Seq, want))
			return
		}
		if bad := a.FirstBad(); bad >= 0 {
			node := "?"
			if bad < len(p.lb.Locations) {
				node = p.lb.Locations[bad].DataAddr
			}
			p.finishWith(fmt.Errorf("%s: blockd %s failed packet %d (status %d)", p.lb.Block, node, a.Seq, a.Status[bad]))
			return
		}
		<-p.slots
		if int64(a.Seq) == p.lastSeq.Load() {
			p.finishWith(nil)
			return
		}
		want++
	}
}

func (p *pipeline) finishWith(err error) {
	p.once.Do(func() {
		p.done <- err
		if err != nil {
			_ = p.conn.Close()
		}
	})
}

// send frames data as the next packet and writes it, waiting for a free
// slot in the window.
func (p *pipeline) send(data []byte, last bool) error {
	select {
	case p.slots <- struct{}{}:
	case err := <-p.done:
		p.done <- err
		if err == nil {
			err = fmt.Errorf("%s: pipeline ended early", p.lb.Block)
		}
		return err
	}
	pk := xfer.Packet{Seq: p.seq, Offset: p.sent, Data: data}
	if last {
		pk.Flags = xfer.FlagLast
		p.lastSeq.Store(int64(p.seq)) // before the packet can be acked
	}
	p.sums = checksum.Sums(data, p.chunk, p.sums[:0])
	pk.Sums = p.sums
	p.frame = xfer.AppendPacket(p.frame[:0], &pk)
	if _, err := p.bw.Write(p.frame); err != nil {
		return p.writeErr(err)
	}
	if err := p.bw.Flush(); err != nil {
		return p.writeErr(err)
	}
	p.seq++
	p.sent += int64(len(data))
	return nil
}

func (p *pipeline) writeErr(err error) error {
	// The ack reader usually knows why the connection broke.
	select {
	case aerr := <-p.done:
		p.done <- aerr
		if aerr != nil {
			return aerr
		}
	case <-time.After(100 * time.Millisecond):
	}
	return fmt.Errorf("%s: send to %s: %w", p.lb.Block, p.lb.Locations[0].DataAddr, err)
}

// finish waits for the acks of every packet and returns the block with its
// length.
func (p *pipeline) finish() (cairn.Block, error) {
	err := <-p.done
	p.done <- err
	_ = p.conn.Close()
	b := p.lb.Block
	b.Len = p.sent
	return b, err
}

func (p *pipeline) abort() {
	p.finishWith(fmt.Errorf("%s: aborted", p.lb.Block))
	_ = p.conn.Close()
}
