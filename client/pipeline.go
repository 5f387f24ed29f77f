package client

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"cairn"
	"cairn/checksum"
	"cairn/rpc"
	"cairn/rpc/pb"
	"cairn/xfer"
)

// window is how many packets may be in flight, unacknowledged, per pipeline.
const window = 32

// Default timeouts of a writer's pipelines. Each is the wait of the node
// nearest a silent one; every node further up, and the writer, waits one
// extension more per node between (xfer.HopTimeout, HDFS's socket timeout
// plus READ_TIMEOUT_EXTENSION per pipeline position), so the node next to
// a hung blockd gives up first and names it, and a healthy node in the
// middle is never blamed. The writer sends its timeouts down the pipeline
// in the op header.
const (
	// DefaultAckTimeout bounds the wait for a packet's ack.
	DefaultAckTimeout = 60 * time.Second
	// DefaultSetupTimeout bounds connecting to a blockd and the wait for
	// the answer to a pipeline's setup.
	DefaultSetupTimeout = 10 * time.Second
	// maxExtension is the longest extension per pipeline node (HDFS's
	// READ_TIMEOUT_EXTENSION); shorter timeouts get half the shortest.
	maxExtension = 5 * time.Second
)

// transferTimeout bounds the wait for a TRANSFER_BLOCK's answer.
const transferTimeout = 5 * time.Minute

// A pipeline with nothing to send sends a heartbeat (HDFS's heartbeat
// packet, sent after half of dfs.client.socket-timeout) once nothing went
// out for half the shortest idle timeout of its blockds, which they tell
// in their setup answer (assumedIdleTimeout if they do not), or half the
// ack timeout if that is shorter: every node then hears from upstream,
// and the writer from the pipeline, well before either gives up.
// Heartbeats go no closer together than minHeartbeat.
const (
	assumedIdleTimeout = 60 * time.Second
	minHeartbeat       = 10 * time.Millisecond
)

// heartbeatEvery is how long a pipeline stays silent before it sends a
// heartbeat, given idleMs, the shortest idle timeout of its blockds (0:
// not said), and the writer's timeouts to.
func heartbeatEvery(idleMs uint32, to timeouts) time.Duration {
	idle := time.Duration(idleMs) * time.Millisecond
	if idle <= 0 {
		idle = assumedIdleTimeout
	}
	return max(minHeartbeat, min(idle, to.ack)/2)
}

// timeouts are a writer's waits on its pipelines.
type timeouts struct {
	setup, ack, ext time.Duration
}

func newTimeouts(setup, ack time.Duration) timeouts {
	return timeouts{setup: setup, ack: ack, ext: min(maxExtension, min(setup, ack)/2)}
}

func durationMs(d time.Duration) uint32 { return uint32(min(d.Milliseconds(), 1<<32-1)) }

const (
	flagLast = xfer.FlagLast
	flagSync = xfer.FlagSync
)

// stage says how a pipeline's blockds take their replicas.
type stage = pb.OpHeader_Stage

const (
	stageCreate   = pb.OpHeader_CREATE
	stageAppend   = pb.OpHeader_APPEND
	stageRecovery = pb.OpHeader_RECOVERY
)

// packet is a run of bytes of a block, kept until every node acknowledges
// it so it can be sent again through a recovered pipeline.
type packet struct {
	off   int64
	data  []byte
	flags uint8
}

// pipelineError is a pipeline failure that names the node at fault, by its
// index in the pipeline (-1 when unknown), and what kind of failure it was
// (KindNoSpace for a full disk, KindIO otherwise).
type pipelineError struct {
	bad      int
	kind     cairn.Kind
	timedOut bool // the node answered nothing in time: it may be hung
	err      error
}

func (e *pipelineError) Error() string { return e.err.Error() }
func (e *pipelineError) Unwrap() error { return e.err }

// pipeline streams packets of one block through a chain of blockds and
// collects their acks. While it has nothing to send it sends heartbeats
// (keepAlive), which take no place among the packets awaiting acks.
//
// Lock order: wmu is never held while taking mu, nor mu while taking wmu.
type pipeline struct {
	lb         cairn.LocatedBlock
	chunk      int
	ackTimeout time.Duration
	conn       net.Conn
	frame      []byte
	sums       []uint64
	stop       chan struct{} // closed by close: ends keepAlive

	// wmu serializes writes to conn: the writer's packets and keepAlive's
	// heartbeats. lastSend is when the last frame went out; ended is set
	// once the packet that ends the block went, after which nothing more
	// may follow it.
	wmu      sync.Mutex
	lastSend time.Time
	ended    bool

	mu       sync.Mutex
	cond     *sync.Cond
	seq      uint64   // next sequence number
	unacked  []packet // in order; unacked[0] has sequence number seq-len(unacked)
	ackedEnd int64    // block offset every node has acknowledged up to
	err      error    // the first failure
	closed   bool
}

// openPipeline sets up a pipeline through lb.Locations. On failure, the
// error is a *pipelineError naming the node at fault (bad, -1 if unknown).
func openPipeline(dial dialFunc, lb *cairn.LocatedBlock, chunk int, client string, st stage, keepLen int64, to timeouts) (*pipeline, int, error) {
	if len(lb.Locations) == 0 {
		return nil, -1, &pipelineError{bad: -1, kind: cairn.KindIO, err: fmt.Errorf("%s: no blockd to write to", lb.Block)}
	}
	first := lb.Locations[0]
	conn, err := dial(context.Background(), first.DataAddr, to.setup)
	if err != nil {
		return nil, 0, &pipelineError{bad: 0, kind: cairn.KindIO, timedOut: isTimeout(err),
			err: fmt.Errorf("%s: connect to blockd %s: %w", lb.Block, first.DataAddr, err)}
	}
	ackTimeout := xfer.HopTimeout(to.ack, to.ext, len(lb.Locations))
	p := &pipeline{lb: *lb, chunk: chunk, ackTimeout: ackTimeout, conn: conn, ackedEnd: keepLen, stop: make(chan struct{})}
	p.lb.Locations = append([]cairn.Node(nil), lb.Locations...)
	p.cond = sync.NewCond(&p.mu)
	br := xfer.NewBufferedReader(conn)
	bw := xfer.NewBufferedWriter(conn) // the op header only; packets go by writev
	err = xfer.WriteOp(bw, &pb.OpHeader{
		Op: pb.OpHeader_WRITE_BLOCK, Block: rpc.ToPBBlock(&lb.Block), Targets: rpc.ToPBNodes(lb.Locations[1:]),
		ChunkSize: uint32(chunk), Client: client, Stage: st, KeepLen: keepLen, Token: lb.Token,
		SetupTimeoutMs: durationMs(to.setup), AckTimeoutMs: durationMs(to.ack), TimeoutExtensionMs: durationMs(to.ext),
	})
	if err == nil {
		err = bw.Flush()
	}
	var rep *pb.OpReply
	if err == nil {
		_ = conn.SetReadDeadline(time.Now().Add(xfer.HopTimeout(to.setup, to.ext, len(lb.Locations))))
		rep, err = xfer.ReadReply(br)
		_ = conn.SetReadDeadline(time.Time{})
	}
	pe := &pipelineError{bad: 0, kind: cairn.KindIO}
	if err != nil {
		pe.timedOut = isTimeout(err)
		err = fmt.Errorf("setup through blockd %s: %w", first.DataAddr, err)
	} else if rep.Status != 0 {
		pe.bad = -1
		for i, n := range lb.Locations {
			if n.StorageID == rep.FirstBadNode {
				pe.bad = i
			}
		}
		if pe.bad < 0 && rep.FirstBadNode == "" {
			pe.bad = 0
		}
		if k := cairn.Kind(rep.Status); k == cairn.KindNoSpace {
			pe.kind = k
		}
		node := "?"
		if pe.bad >= 0 {
			node = lb.Locations[pe.bad].DataAddr
		}
		err = fmt.Errorf("blockd %s refused the pipeline setup: %s", node, rep.Message)
	}
	if err != nil {
		_ = conn.Close()
		pe.err = fmt.Errorf("%s: %w", lb.Block, err)
		return nil, pe.bad, pe
	}
	p.lastSend = time.Now()
	go p.readAcks(br)
	go p.keepAlive(heartbeatEvery(rep.IdleTimeoutMs, to))
	return p, -1, nil
}

// keepAlive sends a heartbeat whenever nothing went out for every, until
// the pipeline is closed, fails or has sent its last packet.
func (p *pipeline) keepAlive(every time.Duration) {
	hb := xfer.AppendHeartbeat(nil)
	t := time.NewTimer(every)
	defer t.Stop()
	for {
		select {
		case <-p.stop:
			return
		case <-t.C:
		}
		p.wmu.Lock()
		if p.ended {
			p.wmu.Unlock()
			return
		}
		if wait := every - time.Since(p.lastSend); wait > 0 {
			p.wmu.Unlock()
			t.Reset(wait)
			continue
		}
		_, err := p.conn.Write(hb)
		p.lastSend = time.Now()
		p.wmu.Unlock()
		if err != nil {
			p.mu.Lock()
			if !p.closed {
				p.failLocked(&pipelineError{bad: 0, kind: cairn.KindIO, timedOut: isTimeout(err),
					err: fmt.Errorf("%s: heartbeat to %s: %w", p.lb.Block, p.lb.Locations[0].DataAddr, err)})
			}
			p.mu.Unlock()
			return
		}
		t.Reset(every)
	}
}

// readAcks consumes acks in order until the pipeline fails or is closed.
func (p *pipeline) readAcks(br *bufio.Reader) {
	for {
		_ = p.conn.SetReadDeadline(time.Now().Add(p.ackTimeout))
		a, err := xfer.ReadAck(br)
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			return
		}
		switch {
		case err != nil:
			p.failLocked(&pipelineError{bad: 0, kind: cairn.KindIO, timedOut: isTimeout(err),
				err: fmt.Errorf("%s: ack from %s: %w", p.lb.Block, p.lb.Locations[0].DataAddr, err)})
		case a.Seq == xfer.HeartbeatSeq && a.OK():
			// A heartbeat's ack: the pipeline is alive; no packet is done.
			p.mu.Unlock()
			continue
		case a.Seq != xfer.HeartbeatSeq && (len(p.unacked) == 0 || a.Seq != p.seq-uint64(len(p.unacked))):
			p.failLocked(&pipelineError{bad: 0, kind: cairn.KindIO, err: fmt.Errorf("%s: ack for packet %d out of order", p.lb.Block, a.Seq)})
		case !a.OK():
			bad := a.FirstBad()
			node := "?"
			if bad < len(p.lb.Locations) {
				node = p.lb.Locations[bad].DataAddr
			}
			kind, why := cairn.KindIO, fmt.Sprintf("status %d", a.Status[bad])
			switch a.Status[bad] {
			case xfer.StatusNoSpace:
				kind, why = cairn.KindNoSpace, "its disk is full"
			case xfer.StatusChecksum:
				why = "checksum mismatch"
			case xfer.StatusTimeout:
				why = "it answered nothing in time"
			}
			what := fmt.Sprintf("packet %d", a.Seq)
			if a.Seq == xfer.HeartbeatSeq {
				what = "a heartbeat"
			}
			p.failLocked(&pipelineError{bad: bad, kind: kind, timedOut: a.Status[bad] == xfer.StatusTimeout, err: fmt.Errorf("%s: blockd %s failed %s: %s", p.lb.Block, node, what, why)})
		default:
			done := p.unacked[0]
			p.unacked = p.unacked[1:]
			p.ackedEnd = max(p.ackedEnd, done.off+int64(len(done.data)))
			p.cond.Broadcast()
			last := done.flags&flagLast != 0
			p.mu.Unlock()
			if last {
				return
			}
			continue
		}
		p.mu.Unlock()
		return
	}
}

func (p *pipeline) failLocked(pe *pipelineError) {
	if p.err == nil {
		p.err = pe
	}
	_ = p.conn.Close()
	p.cond.Broadcast()
}

// send frames pk and writes it, waiting for room in the window. queued
// says whether pk joined the packets awaiting acks (and so will be sent
// again by a recovery) before the pipeline failed.
func (p *pipeline) send(pk packet) (queued bool, err error) {
	p.mu.Lock()
	for len(p.unacked) >= window && p.err == nil {
		p.cond.Wait()
	}
	if p.err != nil {
		err := p.err
		p.mu.Unlock()
		return false, err
	}
	xp := xfer.Packet{Seq: p.seq, Offset: pk.off, Flags: pk.flags, Data: pk.data}
	p.seq++
	p.unacked = append(p.unacked, pk)
	p.mu.Unlock()

	p.sums = checksum.SumsAt(pk.off, pk.data, p.chunk, p.sums[:0])
	xp.Sums = p.sums
	p.frame = xfer.AppendPacketHeader(p.frame[:0], &xp)
	// One writev of the frame's header and the data where it is.
	bufs := net.Buffers{p.frame, pk.data}
	p.wmu.Lock()
	_, err = bufs.WriteTo(p.conn)
	p.lastSend = time.Now()
	if pk.flags&flagLast != 0 {
		p.ended = true
	}
	p.wmu.Unlock()
	if err != nil {
		p.mu.Lock()
		p.failLocked(&pipelineError{bad: 0, kind: cairn.KindIO, timedOut: isTimeout(err),
			err: fmt.Errorf("%s: send to %s: %w", p.lb.Block, p.lb.Locations[0].DataAddr, err)})
		err = p.err
		p.mu.Unlock()
		return true, err
	}
	return true, nil
}

// waitAll waits until every packet sent is acknowledged.
func (p *pipeline) waitAll() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	for len(p.unacked) > 0 && p.err == nil {
		p.cond.Wait()
	}
	return p.err
}

// pending returns the packets not acknowledged and the block offset every
// node acknowledged.
func (p *pipeline) pending() ([]packet, int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]packet(nil), p.unacked...), p.ackedEnd
}

func (p *pipeline) close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.closed {
		p.closed = true
		if p.err == nil {
			p.err = errors.New("pipeline closed")
		}
		close(p.stop)
		_ = p.conn.Close()
		p.cond.Broadcast()
	}
}

// transfer has src copy the first n bytes of its replica of b to dst, at
// generation stamp gs, to bring dst into a recovered pipeline; token
// (UpdateBlockForPipeline's) allows the copy at src and its write at dst.
func transfer(dial dialFunc, b cairn.Block, token []byte, src, dst cairn.Node, gs cairn.GenStamp, n int64, chunk int, client string, to timeouts) error {
	conn, err := dial(context.Background(), src.DataAddr, to.setup)
	if err != nil {
		return err
	}
	defer conn.Close()
	bw := xfer.NewBufferedWriter(conn)
	err = xfer.WriteOp(bw, &pb.OpHeader{Op: pb.OpHeader_TRANSFER_BLOCK, Block: rpc.ToPBBlock(&b), Targets: []*pb.Node{rpc.ToPBNode(dst)},
		ChunkSize: uint32(chunk), Client: client, Length: n, NewGenStamp: uint64(gs), Token: token,
		SetupTimeoutMs: durationMs(to.setup), AckTimeoutMs: durationMs(to.ack), TimeoutExtensionMs: durationMs(to.ext)})
	if err == nil {
		err = bw.Flush()
	}
	if err != nil {
		return err
	}
	// A backstop: src bounds its own waits for dst, and the copy itself
	// may move a whole block.
	_ = conn.SetReadDeadline(time.Now().Add(transferTimeout))
	rep, err := xfer.ReadReply(xfer.NewBufferedReader(conn))
	if err == nil && rep.Status != 0 {
		err = errors.New(rep.Message)
	}
	return err
}

// isTimeout reports whether err is a deadline that passed: the peer
// answered nothing in time.
func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
