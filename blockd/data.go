package blockd

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"time"

	"go.uber.org/zap"

	"cairn"
	"cairn/checksum"
	"cairn/rpc"
	"cairn/rpc/pb"
	"cairn/xfer"
)

// dialTimeout bounds connecting to the next blockd of a pipeline.
const dialTimeout = 10 * time.Second

// serveData accepts block data stream connections until l is closed.
func (d *Blockd) serveData(l net.Listener) error {
	for {
		c, err := l.Accept()
		if err != nil {
			return err
		}
		d.active.Add(1)
		go func() {
			defer d.active.Add(-1)
			defer c.Close()
			d.handle(c)
		}()
	}
}

func (d *Blockd) handle(c net.Conn) {
	br := xfer.NewBufferedReader(c)
	bw := xfer.NewBufferedWriter(c)
	_ = c.SetReadDeadline(time.Now().Add(30 * time.Second))
	h, err := xfer.ReadOp(br)
	if err != nil {
		if !errors.Is(err, io.EOF) {
			d.log.Warn("bad data stream opening", zap.Stringer("peer", c.RemoteAddr()), zap.Error(err))
		}
		return
	}
	_ = c.SetReadDeadline(time.Time{})
	switch h.Op {
	case pb.OpHeader_WRITE_BLOCK:
		d.receive(c, br, bw, h)
	case pb.OpHeader_READ_BLOCK:
		d.send(c, bw, h)
	}
}

func reply(bw *bufio.Writer, r *pb.OpReply) error {
	if err := xfer.WriteReply(bw, r); err != nil {
		return err
	}
	return bw.Flush()
}

func replyErr(bw *bufio.Writer, kind cairn.Kind, msg string) {
	_ = reply(bw, &pb.OpReply{Status: uint32(kind), Message: msg})
}

type localResult struct {
	seq    uint64
	status uint8
	last   bool
}

// receive stores one replica arriving from upstream, forwarding each packet
// to the next blockd of the pipeline, and acks each packet upstream once
// this node and every node downstream have it.
func (d *Blockd) receive(c net.Conn, br *bufio.Reader, bw *bufio.Writer, h *pb.OpHeader) {
	blk := rpc.FromPBBlock(h.Block)
	log := d.log.With(zap.Stringer("block", blk))
	chunk := int(h.ChunkSize)
	pr, err := xfer.NewPacketReader(br, chunk)
	if err != nil {
		replyErr(bw, cairn.KindInvalid, err.Error())
		return
	}
	rw, err := d.store.Create(blk, chunk)
	if err != nil {
		replyErr(bw, cairn.KindOf(err), err.Error())
		return
	}
	defer rw.Abort() // no-op once finalized

	var down net.Conn
	var downR *bufio.Reader
	var downW *bufio.Writer
	if len(h.Targets) > 0 {
		next := rpc.FromPBNode(h.Targets[0])
		down, err = net.DialTimeout("tcp", next.DataAddr, dialTimeout)
		if err == nil {
			defer down.Close()
			downR, downW = xfer.NewBufferedReader(down), xfer.NewBufferedWriter(down)
			err = xfer.WriteOp(downW, &pb.OpHeader{Op: pb.OpHeader_WRITE_BLOCK, Block: h.Block, Targets: h.Targets[1:], ChunkSize: h.ChunkSize, Client: h.Client})
			if err == nil {
				err = downW.Flush()
			}
			var rep *pb.OpReply
			if err == nil {
				rep, err = xfer.ReadReply(downR)
			}
			if err == nil && rep.Status != 0 {
				bad := rep.FirstBadNode
				if bad == "" {
					bad = next.StorageID
				}
				_ = reply(bw, &pb.OpReply{Status: rep.Status, Message: rep.Message, FirstBadNode: bad})
				return
			}
		}
		if err != nil {
			log.Warn("pipeline: next blockd unreachable", zap.String("next", next.DataAddr), zap.Error(err))
			_ = reply(bw, &pb.OpReply{Status: uint32(cairn.KindIO), Message: fmt.Sprintf("next blockd %s: %v", next.DataAddr, err), FirstBadNode: next.StorageID})
			return
		}
	}
	if err := reply(bw, &pb.OpReply{ChunkSize: h.ChunkSize}); err != nil {
		return
	}

	results := make(chan localResult, 128)
	responderDone := make(chan struct{})
	go func() {
		defer close(responderDone)
		d.respond(bw, downR, results, down != nil)
	}()
	defer func() {
		close(results)
		<-responderDone
	}()

	var p xfer.Packet
	var want int64
	for {
		if err := pr.Read(&p); err != nil {
			if !errors.Is(err, io.EOF) {
				log.Warn("receive packet", zap.Error(err))
			}
			return
		}
		status := uint8(xfer.StatusOK)
		switch {
		case p.Offset != want:
			log.Warn("packet out of place", zap.Int64("offset", p.Offset), zap.Int64("expected", want))
			status = xfer.StatusError
		case rw.short && len(p.Data) > 0:
			log.Warn("packet after a short chunk", zap.Int64("offset", p.Offset))
			status = xfer.StatusError
		default:
			if err := checksum.Verify(uint64(blk.ID), chunk, p.Offset/int64(chunk), p.Data, p.Sums); err != nil {
				log.Warn("packet failed its checksums", zap.Error(err))
				status = xfer.StatusChecksum
			}
		}
		if down != nil && status == xfer.StatusOK {
			if _, err := downW.Write(pr.Raw); err == nil {
				err = downW.Flush()
				if err != nil {
					log.Warn("pipeline: forward failed", zap.Error(err))
				}
			}
		}
		if status == xfer.StatusOK {
			if err := rw.Write(p.Data, p.Sums); err != nil {
				log.Error("store packet", zap.Error(err))
				status = xfer.StatusError
			}
		}
		if status == xfer.StatusOK && p.Flags&xfer.FlagSync != 0 && !p.Last() {
			if err := rw.Sync(); err != nil {
				log.Error("sync replica", zap.Error(err))
				status = xfer.StatusError
			}
		}
		want += int64(len(p.Data))
		if status == xfer.StatusOK && p.Last() {
			fin, err := rw.Finalize()
			if err != nil {
				log.Error("finalize replica", zap.Error(err))
				status = xfer.StatusError
			} else {
				log.Debug("replica finalized", zap.Int64("len", fin.Len))
				d.received(fin)
			}
		}
		results <- localResult{seq: p.Seq, status: status, last: p.Last()}
		if status != xfer.StatusOK || p.Last() {
			return
		}
	}
}

// respond sends one ack upstream per packet, in order, combining this node's
// result with the ack of the node downstream.
func (d *Blockd) respond(bw *bufio.Writer, downR *bufio.Reader, results <-chan localResult, hasDown bool) {
	downOK := hasDown
	for r := range results {
		st := []uint8{r.status}
		if hasDown {
			switch {
			case !downOK || r.status != xfer.StatusOK:
				st = append(st, xfer.StatusError)
			default:
				a, err := xfer.ReadAck(downR)
				switch {
				case err != nil:
					d.log.Warn("pipeline: ack from downstream", zap.Error(err))
					downOK = false
					st = append(st, xfer.StatusError)
				case a.Seq != r.seq:
					d.log.Warn("pipeline: ack out of order", zap.Uint64("got", a.Seq), zap.Uint64("want", r.seq))
					downOK = false
					st = append(st, xfer.StatusError)
				default:
					st = append(st, a.Status...)
				}
			}
		}
		if err := xfer.WriteAck(bw, &xfer.Ack{Seq: r.seq, Status: st}); err == nil {
			err = bw.Flush()
			if err != nil {
				return
			}
		} else {
			return
		}
	}
}

// readPacketData is how many bytes one read packet carries at most.
const readPacketData = 256 << 10

// send streams a byte range of a finalized replica, chunk-aligned, with the
// checksums from its .meta. Each chunk is verified before it is sent; a
// corrupt replica is reported and the client is told.
func (d *Blockd) send(c net.Conn, bw *bufio.Writer, h *pb.OpHeader) {
	want := rpc.FromPBBlock(h.Block)
	have, data, meta, err := d.store.OpenReplica(want)
	if err != nil {
		replyErr(bw, cairn.KindOf(err), err.Error())
		return
	}
	defer data.Close()
	defer meta.Close()
	hb := make([]byte, checksum.HeaderSize)
	if _, err := io.ReadFull(meta, hb); err != nil {
		d.corrupt(have, fmt.Errorf("read meta header: %w", err))
		replyErr(bw, cairn.KindIO, fmt.Sprintf("%s: meta header unreadable: %v", have, err))
		return
	}
	mh, err := checksum.ParseHeader(hb)
	if err != nil {
		d.corrupt(have, err)
		replyErr(bw, cairn.KindIO, fmt.Sprintf("%s: %v", have, err))
		return
	}
	off, n := h.Offset, h.Length
	if off < 0 || off > have.Len || n < 0 {
		replyErr(bw, cairn.KindInvalid, fmt.Sprintf("range %d+%d outside replica of %d bytes", off, n, have.Len))
		return
	}
	if n == 0 || off+n > have.Len {
		n = have.Len - off
	}
	chunk := int(mh.ChunkSize)
	if err := reply(bw, &pb.OpReply{ChunkSize: mh.ChunkSize, BlockLen: have.Len}); err != nil {
		return
	}
	first, count := checksum.ChunkSpan(off, n, chunk)
	per := max(1, readPacketData/chunk)
	buf := make([]byte, per*chunk)
	var frame []byte
	seq := uint64(0)
	for c0 := first; c0 < first+count || (count == 0 && seq == 0); c0 += int64(per) {
		k := min(int64(per), first+count-c0)
		start := c0 * int64(chunk)
		end := min(start+k*int64(chunk), have.Len)
		p := xfer.Packet{Seq: seq, Offset: start}
		if k > 0 {
			p.Data = buf[:end-start]
			if _, err := data.ReadAt(p.Data, start); err != nil {
				d.corrupt(have, fmt.Errorf("read data at %d: %w", start, err))
				return
			}
			if p.Sums, err = checksum.ReadSums(meta, c0, k); err != nil {
				d.corrupt(have, err)
				return
			}
			if err := checksum.Verify(uint64(have.ID), chunk, c0, p.Data, p.Sums); err != nil {
				d.corrupt(have, err)
			}
		}
		if c0+k >= first+count {
			p.Flags = xfer.FlagLast
		}
		frame = xfer.AppendPacket(frame[:0], &p)
		if _, err := bw.Write(frame); err != nil {
			return
		}
		seq++
		if p.Last() {
			break
		}
	}
	_ = bw.Flush()
}

// corrupt logs a bad replica. Reporting it to metad comes with the scanner.
func (d *Blockd) corrupt(b cairn.Block, err error) {
	d.log.Error("corrupt replica", zap.Stringer("block", b), zap.Error(err))
}
