package blockd

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"syscall"
	"time"

	"go.uber.org/zap"

	"cairn"
	"cairn/checksum"
	"cairn/rpc"
	"cairn/rpc/pb"
	"cairn/xfer"
)

// dialTimeout bounds connecting to the next blockd of a pipeline, and
// setupTimeout waiting for its answer.
const (
	dialTimeout  = 10 * time.Second
	setupTimeout = 30 * time.Second
)

// Defaults of the data port's limits.
const (
	// DefaultMaxConns caps the connections a blockd serves at once
	// (HDFS's dfs.datanode.max.transfer.threads).
	DefaultMaxConns = 4096
	// DefaultHeaderTimeout bounds the arrival of a connection's opening.
	DefaultHeaderTimeout = 30 * time.Second
	// DefaultIdleTimeout bounds the wait for each packet of a write (a
	// heartbeat on an idle pipeline), the arrival of a packet once its
	// first byte came, and every write to the peer.
	DefaultIdleTimeout = 60 * time.Second
)

// serveData accepts block data stream connections until l is closed. At
// most cfg.MaxConns are served at once; one more is answered busy
// (KindRetry) and closed.
func (d *Blockd) serveData(l net.Listener) error {
	for {
		c, err := l.Accept()
		if err != nil {
			return err
		}
		if n := d.conns.Add(1); n > int64(d.cfg.MaxConns) {
			d.conns.Add(-1)
			d.refuseBusy(c)
			continue
		}
		d.capped.Store(false)
		d.active.Add(1)
		go func() {
			defer d.active.Add(-1)
			defer d.conns.Add(-1)
			defer c.Close()
			defer func() {
				// A bug must cost one connection, never the daemon.
				if r := recover(); r != nil {
					d.log.Error("panic serving a data connection; connection closed", zap.Stringer("peer", c.RemoteAddr()),
						zap.Any("panic", r), zap.Stack("stack"))
				}
			}()
			d.handle(c)
		}()
	}
}

// refuseBusy answers a connection past the cap and closes it, without a
// goroutine of its own, so a flood costs no more than the cap. The first
// refusal since the count was last under the cap is logged at WARN, the
// rest at DEBUG.
func (d *Blockd) refuseBusy(c net.Conn) {
	msg := fmt.Sprintf("blockd busy: serving %d data connections, its cap (--max-connections)", d.cfg.MaxConns)
	if d.capped.CompareAndSwap(false, true) {
		d.log.Warn("data connection refused: connection cap reached", zap.Int("cap", d.cfg.MaxConns), zap.Stringer("peer", c.RemoteAddr()))
	} else {
		d.log.Debug("data connection refused: connection cap reached", zap.Int("cap", d.cfg.MaxConns), zap.Stringer("peer", c.RemoteAddr()))
	}
	// A fresh socket's buffer takes the short reply at once; the deadline
	// only guards the accept loop.
	_ = c.SetWriteDeadline(time.Now().Add(100 * time.Millisecond))
	_ = xfer.WriteReply(c, &pb.OpReply{Status: uint32(cairn.KindRetry), Message: msg})
	_ = c.Close()
}

func (d *Blockd) handle(raw net.Conn) {
	c := d.accept(raw)
	if c == nil {
		return
	}
	br := xfer.NewBufferedReader(c)
	bw := xfer.NewBufferedWriter(&deadlineWriter{c: c, timeout: d.cfg.IdleTimeout})
	// The opening must come whole within the header timeout, however
	// slowly its bytes trickle in.
	_ = c.SetReadDeadline(time.Now().Add(d.cfg.HeaderTimeout))
	h, err := xfer.ReadOp(br)
	if err != nil {
		if !errors.Is(err, io.EOF) {
			d.log.Warn("bad data stream opening", zap.Stringer("peer", c.RemoteAddr()), zap.Error(err))
		}
		return
	}
	_ = c.SetReadDeadline(time.Time{})
	if err := d.authorize(c.RemoteAddr(), h); err != nil {
		replyErr(bw, cairn.KindOf(err), err.Error())
		return
	}
	defer d.met.observeOp(h.Op, time.Now())
	switch h.Op {
	case pb.OpHeader_WRITE_BLOCK:
		d.receive(c, br, bw, h)
	case pb.OpHeader_READ_BLOCK:
		d.send(c, bw, h)
	case pb.OpHeader_TRANSFER_BLOCK:
		d.transfer(bw, h)
	case pb.OpHeader_INIT_RECOVERY:
		d.serveInitRecovery(bw, h)
	case pb.OpHeader_UPDATE_RECOVERY:
		d.serveUpdateRecovery(bw, h)
	case pb.OpHeader_VERIFY_BLOCK:
		d.serveVerify(bw, h)
	case pb.OpHeader_BLOCK_CHECKSUM:
		d.serveBlockChecksum(bw, h)
	}
}

// deadlineWriter gives every write to the peer timeout to finish: a peer
// that stops reading is dropped.
type deadlineWriter struct {
	c       net.Conn
	timeout time.Duration
}

func (w *deadlineWriter) Write(p []byte) (int, error) {
	_ = w.c.SetWriteDeadline(time.Now().Add(w.timeout))
	return w.c.Write(p)
}

func reply(bw *bufio.Writer, r *pb.OpReply) error {
	if err := xfer.WriteReply(bw, r); err != nil {
		return err
	}
	return bw.Flush()
}

// replyErr answers an op with an error. An unclassified error goes out as
// KindIO: status 0 would read as success.
func replyErr(bw *bufio.Writer, kind cairn.Kind, msg string) {
	if kind == cairn.KindOther {
		kind = cairn.KindIO
	}
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
	log := d.log.With(zap.Stringer("block", blk), zap.Stringer("stage", h.Stage))
	chunk := int(h.ChunkSize)
	pr, err := xfer.NewPacketReader(br, chunk)
	if err != nil {
		replyErr(bw, cairn.KindInvalid, err.Error())
		return
	}
	// The replica is taken here while the next node sets up its own: at
	// replication 3 the file creates of the nodes overlap instead of
	// coming one after the other. A node that cannot take its replica is
	// named first, as when it tried before asking the next one.
	takenc := make(chan takenReplica, 1)
	go func() {
		rw, err := d.takeReplica(h, blk, chunk)
		takenc <- takenReplica{rw, err}
	}()
	var down net.Conn
	var downR *bufio.Reader
	var downRep *pb.OpReply
	var downErr error
	setupWait, ackWait := hopTimeouts(h, d.cfg.AckTimeout)
	var next cairn.Node
	if len(h.Targets) > 0 {
		next = rpc.FromPBNode(h.Targets[0])
		down, downR, downRep, downErr = d.setupDown(h, next, setupWait)
		if down != nil {
			defer down.Close()
		}
	}
	taken := <-takenc
	rw, err := taken.rw, taken.err
	if err != nil {
		log.Warn("cannot take the replica", zap.Error(err))
		replyErr(bw, noSpace(err), err.Error())
		return
	}
	finalized, wrote := false, false
	defer func() {
		switch {
		case finalized:
		case !wrote && (h.Stage == pb.OpHeader_CREATE || h.Stage == pb.OpHeader_COPY):
			rw.Abort() // the pipeline never started: the writer will set it up again
		default:
			rw.Release() // kept in rbw/ for recovery
		}
	}()
	if downErr != nil {
		log.Warn("pipeline: next blockd unreachable", zap.String("next", next.DataAddr), zap.Error(downErr))
		_ = reply(bw, &pb.OpReply{Status: uint32(cairn.KindIO), Message: fmt.Sprintf("next blockd %s: %v", next.DataAddr, downErr), FirstBadNode: next.StorageID})
		return
	}
	if downRep != nil && downRep.Status != 0 {
		bad := downRep.FirstBadNode
		if bad == "" {
			bad = next.StorageID
		}
		_ = reply(bw, &pb.OpReply{Status: downRep.Status, Message: downRep.Message, FirstBadNode: bad})
		return
	}
	// The writer sends heartbeats well within the shortest idle timeout
	// of the pipeline.
	idle := durationMs(d.cfg.IdleTimeout)
	if downRep != nil && downRep.IdleTimeoutMs > 0 {
		idle = min(idle, downRep.IdleTimeoutMs)
	}
	if err := reply(bw, &pb.OpReply{ChunkSize: h.ChunkSize, BlockLen: rw.Len(), IdleTimeoutMs: idle}); err != nil {
		return
	}

	results := make(chan localResult, 128)
	responderDone := make(chan struct{})
	go func() {
		defer close(responderDone)
		d.respond(bw, downR, down, ackWait, results)
	}()
	upstreamGone := false
	defer func() {
		close(results)
		if upstreamGone && down != nil {
			// Nobody waits for acks any more: stop waiting for them.
			_ = down.Close()
		}
		<-responderDone
	}()

	var p xfer.Packet
	for {
		if err := d.readPacket(c, br, pr, &p); err != nil {
			switch {
			case errors.Is(err, io.EOF):
			case isTimeout(err):
				log.Warn("upstream sent nothing within the idle timeout; connection closed", zap.Stringer("peer", c.RemoteAddr()),
					zap.Duration("idle_timeout", d.cfg.IdleTimeout), zap.Error(err))
			default:
				log.Warn("receive packet", zap.Error(err))
			}
			upstreamGone = true
			return
		}
		if p.Heartbeat() {
			// Forwarded and acked in order with the data packets; nothing
			// to store.
			if down != nil {
				if _, err := down.Write(pr.Raw); err != nil {
					log.Warn("pipeline: forward failed", zap.Error(err))
				}
			}
			results <- localResult{seq: p.Seq, status: xfer.StatusOK}
			continue
		}
		status := uint8(xfer.StatusOK)
		if len(p.Data) > 0 {
			if err := checksum.VerifyAt(uint64(blk.ID), chunk, p.Offset, p.Data, p.Sums); err != nil {
				log.Warn("packet failed its checksums", zap.Int64("offset", p.Offset), zap.Error(err))
				d.met.checksumFailures.WithLabelValues("write").Inc()
				status = xfer.StatusChecksum
			}
		}
		if down != nil && status == xfer.StatusOK {
			// Forward the frame as it came; a failure downstream shows in
			// the acks.
			if _, err := down.Write(pr.Raw); err != nil {
				log.Warn("pipeline: forward failed", zap.Error(err))
			}
		}
		if status == xfer.StatusOK && len(p.Data) > 0 {
			wrote = true
			if err := rw.Write(p.Offset, p.Data, p.Sums); err != nil {
				log.Error("store packet", zap.Error(err))
				d.diskError(blk, err)
				status = errStatus(err)
			} else {
				d.met.writtenBytes.Add(float64(len(p.Data)))
			}
		}
		switch {
		case status != xfer.StatusOK:
		case p.Last() && h.Stage != pb.OpHeader_COPY:
			// The end of the block: durable and in finalized/ before the
			// ack. metad hears of it from the writer's Complete, which
			// names the nodes that acked, and from the incremental report
			// queued here, sent after the ack.
			fin, err := rw.Finalize()
			if err != nil {
				log.Error("finalize replica", zap.Error(err))
				d.diskError(blk, err)
				status = errStatus(err)
			} else {
				finalized = true
				d.met.writtenBlocks.Inc()
				log.Debug("replica finalized", zap.Int64("len", fin.Len))
				d.received(cairn.Replica{Block: fin, State: cairn.ReplicaFinalized})
			}
		case p.Last() || p.Flags&xfer.FlagSync != 0:
			// hsync, or the end of a copy that stays in rbw/.
			if err := rw.Sync(); err != nil {
				log.Error("sync replica", zap.Error(err))
				d.diskError(blk, err)
				status = errStatus(err)
			}
		}
		results <- localResult{seq: p.Seq, status: status, last: p.Last()}
		if status != xfer.StatusOK || p.Last() {
			return
		}
	}
}

// readPacket reads the next packet from upstream. Its first byte must
// come within the idle timeout (a writer with nothing to send sends
// heartbeats), and the rest within the idle timeout again: a silent peer
// and one that trickles a frame in are dropped.
func (d *Blockd) readPacket(c net.Conn, br *bufio.Reader, pr *xfer.PacketReader, p *xfer.Packet) error {
	defer func() { _ = c.SetReadDeadline(time.Time{}) }()
	if br.Buffered() == 0 {
		_ = c.SetReadDeadline(time.Now().Add(d.cfg.IdleTimeout))
		if _, err := br.Peek(1); err != nil {
			return err
		}
	}
	_ = c.SetReadDeadline(time.Now().Add(d.cfg.IdleTimeout))
	return pr.Read(p)
}

// isTimeout reports whether err is a deadline that passed.
func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// durationMs is d in whole milliseconds, at most 2^32−1.
func durationMs(d time.Duration) uint32 { return uint32(min(d.Milliseconds(), 1<<32-1)) }

// takenReplica is a replica a write op took, or why it could not.
type takenReplica struct {
	rw  *ReplicaWriter
	err error
}

// takeReplica creates (CREATE, COPY) or reopens (APPEND, RECOVERY) the
// replica a write op h names.
func (d *Blockd) takeReplica(h *pb.OpHeader, blk cairn.Block, chunk int) (*ReplicaWriter, error) {
	switch h.Stage {
	case pb.OpHeader_CREATE, pb.OpHeader_COPY:
		rw, err := d.store.Create(blk, chunk)
		if h.Stage == pb.OpHeader_COPY && cairn.KindOf(err) == cairn.KindExist {
			// A replica of an older stamp, left by a pipeline this node
			// dropped out of: the copy that brings it back replaces it.
			if derr := d.store.Delete(cairn.Block{ID: blk.ID, GenStamp: blk.GenStamp - 1}); derr == nil {
				rw, err = d.store.Create(blk, chunk)
			}
		}
		return rw, err
	case pb.OpHeader_APPEND, pb.OpHeader_RECOVERY:
		rw, err := d.store.Reopen(blk, h.KeepLen)
		if err == nil && rw.ChunkSize() != chunk {
			rw.Release()
			err = cairn.E("blockd.receive", cairn.KindInvalid, blk.String(), fmt.Sprintf("replica has %d-byte chunks, the writer uses %d", rw.ChunkSize(), chunk))
		}
		return rw, err
	}
	return nil, cairn.E("blockd.receive", cairn.KindInvalid, blk.String(), fmt.Sprintf("unknown stage %v", h.Stage))
}

// setupDown connects to next, the node after this one in the pipeline of
// h, sends it the op and reads its setup answer, waiting up to setupWait
// for it. The connection is returned whenever it was made, for the caller
// to close.
func (d *Blockd) setupDown(h *pb.OpHeader, next cairn.Node, setupWait time.Duration) (net.Conn, *bufio.Reader, *pb.OpReply, error) {
	down, err := d.dial(context.Background(), next.DataAddr, dialTimeout)
	if err != nil {
		return nil, nil, nil, err
	}
	downR, downW := xfer.NewBufferedReader(down), xfer.NewBufferedWriter(down)
	err = xfer.WriteOp(downW, &pb.OpHeader{Op: pb.OpHeader_WRITE_BLOCK, Block: h.Block, Targets: h.Targets[1:], ChunkSize: h.ChunkSize,
		Client: h.Client, Stage: h.Stage, KeepLen: h.KeepLen, Token: h.Token,
		SetupTimeoutMs: h.SetupTimeoutMs, AckTimeoutMs: h.AckTimeoutMs, TimeoutExtensionMs: h.TimeoutExtensionMs})
	if err == nil {
		err = downW.Flush()
	}
	var rep *pb.OpReply
	if err == nil {
		_ = down.SetReadDeadline(time.Now().Add(setupWait))
		rep, err = xfer.ReadReply(downR)
		_ = down.SetReadDeadline(time.Time{})
	}
	return down, downR, rep, err
}

// respond sends one ack upstream per packet, in order, combining this node's
// result with the ack of the node downstream.
func (d *Blockd) respond(bw *bufio.Writer, downR *bufio.Reader, downConn net.Conn, ackWait time.Duration, results <-chan localResult) {
	hasDown := downConn != nil
	downOK := hasDown
	for r := range results {
		st := []uint8{r.status}
		if hasDown {
			switch {
			case !downOK || r.status != xfer.StatusOK:
				st = append(st, xfer.StatusError)
			default:
				a, err := readAck(downR, downConn, ackWait)
				switch {
				case err != nil:
					d.log.Warn("pipeline: ack from downstream", zap.Error(err))
					downOK = false
					st = append(st, downStatus(err))
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

// DefaultAckTimeout is how long a blockd waits for the next node's ack of
// a packet before it counts that node as failed: a stalled node is dropped.
const DefaultAckTimeout = 60 * time.Second

func readAck(r *bufio.Reader, c net.Conn, wait time.Duration) (*xfer.Ack, error) {
	if err := c.SetReadDeadline(time.Now().Add(wait)); err != nil {
		return nil, err
	}
	return xfer.ReadAck(r)
}

// hopTimeouts are how long this node waits for the next one's setup reply
// and for each of its acks: the writer's timeouts carried in h, grown by
// one extension per node after the next (xfer.HopTimeout), else
// setupTimeout and the --ack-timeout flag.
func hopTimeouts(h *pb.OpHeader, ackDefault time.Duration) (setup, ack time.Duration) {
	setup, ack = setupTimeout, ackDefault
	ext := time.Duration(h.TimeoutExtensionMs) * time.Millisecond
	if h.SetupTimeoutMs > 0 {
		setup = xfer.HopTimeout(time.Duration(h.SetupTimeoutMs)*time.Millisecond, ext, len(h.Targets))
	}
	if h.AckTimeoutMs > 0 {
		ack = xfer.HopTimeout(time.Duration(h.AckTimeoutMs)*time.Millisecond, ext, len(h.Targets))
	}
	return setup, ack
}

// downStatus is the ack status of a next node whose ack did not come:
// StatusTimeout when it answered nothing in time (it may be hung).
func downStatus(err error) uint8 {
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return xfer.StatusTimeout
	}
	return xfer.StatusError
}

// errStatus is the ack status of a failure to store a packet: a full disk
// says so, so the writer can report ENOSPC rather than an I/O error.
func errStatus(err error) uint8 {
	if errors.Is(err, syscall.ENOSPC) || cairn.KindOf(err) == cairn.KindNoSpace {
		return xfer.StatusNoSpace
	}
	return xfer.StatusError
}

// readPacketData is how many bytes one read packet carries at most.
const readPacketData = 256 << 10

// send streams a byte range of a replica, chunk-aligned, with the checksums
// from its .meta. Each chunk is verified before it is sent; a corrupt
// replica is reported, and the client, which verifies too, moves on.
func (d *Blockd) send(c net.Conn, bw *bufio.Writer, h *pb.OpHeader) {
	want := rpc.FromPBBlock(h.Block)
	src, err := d.store.OpenSource(want)
	if err != nil {
		if checksum.IsCorruption(err) || cairn.KindOf(err) == cairn.KindIO {
			d.corrupt(want, err)
		}
		replyErr(bw, cairn.KindOf(err), err.Error())
		return
	}
	defer src.Close()
	have := src.Block()
	off, n := h.Offset, h.Length
	// Both are >= 0 (xfer.ReadOp); n > have.Len-off cannot overflow
	// where off+n could.
	if off > have.Len || n > have.Len-off {
		replyErr(bw, cairn.KindInvalid, fmt.Sprintf("range %d+%d outside the replica's %d bytes", off, n, have.Len))
		return
	}
	if n == 0 {
		n = have.Len - off
	}
	chunk := src.ChunkSize()
	if err := reply(bw, &pb.OpReply{ChunkSize: uint32(chunk), BlockLen: have.Len}); err != nil {
		return
	}
	first, count := checksum.ChunkSpan(off, n, chunk)
	per := int64(max(1, readPacketData/chunk))
	buf := make([]byte, per*int64(chunk))
	var frame []byte
	for seq, c0 := uint64(0), first; ; seq, c0 = seq+1, c0+per {
		k := min(per, first+count-c0)
		p := xfer.Packet{Seq: seq, Offset: c0 * int64(chunk)}
		if k > 0 {
			if p.Data, p.Sums, err = src.ReadChunks(c0, k, buf); err != nil {
				d.corrupt(have, err)
				return
			}
			if err := checksum.Verify(uint64(have.ID), chunk, c0, p.Data, p.Sums); err != nil {
				d.met.checksumFailures.WithLabelValues("read").Inc()
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
		d.met.readBytes.Add(float64(len(p.Data)))
		if p.Last() {
			break
		}
	}
	if bw.Flush() == nil {
		d.met.readBlocks.Inc()
	}
}

// transfer copies the first h.Length bytes of a replica to h.Targets[0] as a
// replica at h.NewGenStamp that stays in rbw/: how a node added to a
// pipeline is brought up to date. The last partial chunk's checksum is
// verified as stored, then recomputed for the bytes copied.
func (d *Blockd) transfer(bw *bufio.Writer, h *pb.OpHeader) {
	want := rpc.FromPBBlock(h.Block)
	src, err := d.store.OpenSource(want)
	if err != nil {
		replyErr(bw, cairn.KindOf(err), err.Error())
		return
	}
	defer src.Close()
	have := src.Block()
	n := h.Length
	if n > have.Len {
		replyErr(bw, cairn.KindInvalid, fmt.Sprintf("transfer of %d bytes from a replica of %d", n, have.Len))
		return
	}
	target := rpc.FromPBNode(h.Targets[0])
	setupWait, ackWait := hopTimeouts(h, d.cfg.AckTimeout)
	if err := d.copyTo(src, n, target, cairn.Block{ID: want.ID, GenStamp: cairn.GenStamp(h.NewGenStamp)}, h.Token, h.Client, pb.OpHeader_COPY, setupWait, ackWait); err != nil {
		d.log.Warn("transfer failed", zap.Stringer("block", want), zap.String("target", target.DataAddr), zap.Error(err))
		replyErr(bw, cairn.KindIO, err.Error())
		return
	}
	_ = reply(bw, &pb.OpReply{BlockLen: n})
}

// copyTo sends the first n bytes of src to target as replica nb: stage COPY
// leaves it in rbw/ (a node joining a pipeline), CREATE finalizes it (a
// copy metad asked for), waiting up to setupWait for target's answer and
// ackWait for its acks. token is the op's block access token.
func (d *Blockd) copyTo(src Source, n int64, target cairn.Node, nb cairn.Block, token []byte, client string, stage pb.OpHeader_Stage, setupWait, ackWait time.Duration) error {
	chunk := src.ChunkSize()
	conn, err := d.dial(context.Background(), target.DataAddr, min(dialTimeout, setupWait))
	if err != nil {
		return err
	}
	defer conn.Close()
	tw, tr := xfer.NewBufferedWriter(conn), xfer.NewBufferedReader(conn)
	if err := xfer.WriteOp(tw, &pb.OpHeader{Op: pb.OpHeader_WRITE_BLOCK, Block: rpc.ToPBBlock(&nb), ChunkSize: uint32(chunk), Client: client, Stage: stage, Token: token}); err != nil {
		return err
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	_ = conn.SetReadDeadline(time.Now().Add(setupWait))
	rep, err := xfer.ReadReply(tr)
	if err == nil && rep.Status != 0 {
		err = errors.New(rep.Message)
	}
	if err != nil {
		return fmt.Errorf("target %s: %w", target.DataAddr, err)
	}
	have := src.Block()
	per := int64(max(1, readPacketData/chunk))
	buf := make([]byte, per*int64(chunk))
	total := checksum.NumChunks(n, chunk)
	var frame []byte
	var seq uint64
	for c0 := int64(0); ; c0 += per {
		k := min(per, total-c0)
		p := xfer.Packet{Seq: seq, Offset: c0 * int64(chunk)}
		if k > 0 {
			if p.Data, p.Sums, err = src.ReadChunks(c0, k, buf); err != nil {
				return err
			}
			if err := checksum.Verify(uint64(have.ID), chunk, c0, p.Data, p.Sums); err != nil {
				d.met.checksumFailures.WithLabelValues("read").Inc()
				return err
			}
			if end := p.Offset + int64(len(p.Data)); end > n {
				p.Data = p.Data[:n-p.Offset]
				p.Sums[len(p.Sums)-1] = checksum.Sum(p.Data[(k-1)*int64(chunk):])
			}
		}
		if c0+k >= total {
			p.Flags = xfer.FlagLast
		}
		frame = xfer.AppendPacket(frame[:0], &p)
		if _, err := tw.Write(frame); err != nil {
			return err
		}
		seq++
		if p.Last() {
			break
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	_ = conn.SetReadDeadline(time.Now().Add(ackWait))
	for i := uint64(0); i < seq; i++ {
		a, err := xfer.ReadAck(tr)
		if err != nil {
			return fmt.Errorf("target %s: %w", target.DataAddr, err)
		}
		if !a.OK() {
			return fmt.Errorf("target %s refused packet %d", target.DataAddr, a.Seq)
		}
	}
	return nil
}

// replicate copies finalized replicas to other blockds, as metad asks
// (CmdTransfer, with a write token per block): how a lost replica is
// restored, and how the balancer moves one; a balancer's copy reads at
// throttle's pace (nil: no limit).
func (d *Blockd) replicate(blocks []cairn.Block, tokens [][]byte, targets []cairn.Node, throttle *throttler) {
	for i, b := range blocks {
		var token []byte
		if i < len(tokens) {
			token = tokens[i]
		}
		for _, t := range targets {
			var n int64
			err := func() error {
				src, err := d.store.OpenSource(b)
				if err != nil {
					return err
				}
				defer src.Close()
				have := src.Block()
				if throttle != nil {
					src = throttledSource{src, throttle}
				}
				n = have.Len
				return d.copyTo(src, have.Len, t, have, token, "metad", pb.OpHeader_CREATE, setupTimeout, setupTimeout)
			}()
			if err != nil {
				d.met.replications.WithLabelValues("failed").Inc()
				d.log.Warn("copy for re-replication failed", zap.Stringer("block", b), zap.String("target", t.DataAddr), zap.Error(err))
				continue
			}
			d.met.replications.WithLabelValues("ok").Inc()
			d.met.replicatedBytes.Add(float64(n))
			d.log.Info("replica copied", zap.Stringer("block", b), zap.String("target", t.DataAddr))
		}
	}
}

// corrupt logs a replica that failed a read and has the scanner verify it
// first; a read error that is not corruption may be a failing disk.
func (d *Blockd) corrupt(b cairn.Block, err error) {
	d.log.Error("replica failed a read", zap.Stringer("block", b), zap.Error(err))
	d.suspect(b)
	if !checksum.IsCorruption(err) {
		d.diskError(b, err)
	}
}
