package client

import (
	"bufio"
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

// DefaultAckTimeout: a pipeline that acknowledges nothing for this long
// while packets are outstanding is taken as failed at its first node. It
// is longer than a blockd's wait for the node after it, so a stall further
// down is blamed on the right node.
const DefaultAckTimeout = 90 * time.Second

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
// index in the pipeline (-1 when unknown).
type pipelineError struct {
	bad int
	err error
}

func (e *pipelineError) Error() string { return e.err.Error() }
func (e *pipelineError) Unwrap() error { return e.err }

// pipeline streams packets of one block through a chain of blockds and
// collects their acks.
type pipeline struct {
	lb         cairn.LocatedBlock
	chunk      int
	ackTimeout time.Duration
	conn       net.Conn
	frame      []byte
	sums       []uint64

	mu       sync.Mutex
	cond     *sync.Cond
	seq      uint64   // next sequence number
	unacked  []packet // in order; unacked[0] has sequence number seq-len(unacked)
	ackedEnd int64    // block offset every node has acknowledged up to
	err      error    // the first failure
	closed   bool
}

// openPipeline sets up a pipeline through lb.Locations. On failure, bad is
// the index of the node at fault (or -1).
func openPipeline(lb *cairn.LocatedBlock, chunk int, client string, st stage, keepLen int64, ackTimeout time.Duration) (*pipeline, int, error) {
	if len(lb.Locations) == 0 {
		return nil, -1, fmt.Errorf("%s: no blockd to write to", lb.Block)
	}
	first := lb.Locations[0]
	conn, err := net.DialTimeout("tcp", first.DataAddr, 10*time.Second)
	if err != nil {
		return nil, 0, fmt.Errorf("%s: connect to blockd %s: %w", lb.Block, first.DataAddr, err)
	}
	p := &pipeline{lb: *lb, chunk: chunk, ackTimeout: ackTimeout, conn: conn, ackedEnd: keepLen}
	p.lb.Locations = append([]cairn.Node(nil), lb.Locations...)
	p.cond = sync.NewCond(&p.mu)
	br := xfer.NewBufferedReader(conn)
	bw := xfer.NewBufferedWriter(conn) // the op header only; packets go by writev
	err = xfer.WriteOp(bw, &pb.OpHeader{
		Op: pb.OpHeader_WRITE_BLOCK, Block: rpc.ToPBBlock(&lb.Block), Targets: rpc.ToPBNodes(lb.Locations[1:]),
		ChunkSize: uint32(chunk), Client: client, Stage: st, KeepLen: keepLen,
	})
	if err == nil {
		err = bw.Flush()
	}
	var rep *pb.OpReply
	if err == nil {
		_ = conn.SetReadDeadline(time.Now().Add(60 * time.Second))
		rep, err = xfer.ReadReply(br)
		_ = conn.SetReadDeadline(time.Time{})
	}
	bad := 0
	if err == nil && rep.Status != 0 {
		bad = -1
		for i, n := range lb.Locations {
			if n.StorageID == rep.FirstBadNode {
				bad = i
			}
		}
		if bad < 0 && rep.FirstBadNode == "" {
			bad = 0
		}
		err = fmt.Errorf("pipeline setup refused: %s", rep.Message)
	}
	if err != nil {
		_ = conn.Close()
		return nil, bad, fmt.Errorf("%s via %s: %w", lb.Block, first.DataAddr, err)
	}
	go p.readAcks(br)
	return p, -1, nil
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
			p.failLocked(0, fmt.Errorf("%s: ack from %s: %w", p.lb.Block, p.lb.Locations[0].DataAddr, err))
		case len(p.unacked) == 0 || a.Seq != p.seq-uint64(len(p.unacked)):
			p.failLocked(0, fmt.Errorf("%s: ack for packet %d out of order", p.lb.Block, a.Seq))
		case !a.OK():
			bad := a.FirstBad()
			node := "?"
			if bad < len(p.lb.Locations) {
				node = p.lb.Locations[bad].DataAddr
			}
			p.failLocked(bad, fmt.Errorf("%s: blockd %s failed packet %d (status %d)", p.lb.Block, node, a.Seq, a.Status[bad]))
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

func (p *pipeline) failLocked(bad int, err error) {
	if p.err == nil {
		p.err = &pipelineError{bad: bad, err: err}
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
	if _, err := bufs.WriteTo(p.conn); err != nil {
		p.mu.Lock()
		p.failLocked(0, fmt.Errorf("%s: send to %s: %w", p.lb.Block, p.lb.Locations[0].DataAddr, err))
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
		_ = p.conn.Close()
		p.cond.Broadcast()
	}
}

// transfer has src copy the first n bytes of its replica of b to dst, at
// generation stamp gs, to bring dst into a recovered pipeline.
func transfer(b cairn.Block, src, dst cairn.Node, gs cairn.GenStamp, n int64, chunk int, client string) error {
	conn, err := net.DialTimeout("tcp", src.DataAddr, 10*time.Second)
	if err != nil {
		return err
	}
	defer conn.Close()
	bw := xfer.NewBufferedWriter(conn)
	err = xfer.WriteOp(bw, &pb.OpHeader{Op: pb.OpHeader_TRANSFER_BLOCK, Block: rpc.ToPBBlock(&b), Targets: []*pb.Node{rpc.ToPBNode(dst)},
		ChunkSize: uint32(chunk), Client: client, Length: n, NewGenStamp: uint64(gs)})
	if err == nil {
		err = bw.Flush()
	}
	if err != nil {
		return err
	}
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Minute))
	rep, err := xfer.ReadReply(xfer.NewBufferedReader(conn))
	if err == nil && rep.Status != 0 {
		err = errors.New(rep.Message)
	}
	return err
}
