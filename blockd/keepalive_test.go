package blockd

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"cairn"
	"cairn/blocktoken"
	"cairn/checksum"
	"cairn/rpc"
	"cairn/rpc/pb"
	"cairn/xfer"
)

// idleBlock is the block the idle pipeline tests write.
var idleBlock = cairn.Block{ID: 1<<30 + 77, GenStamp: 1001}

// openWrite opens a CREATE pipeline of idleBlock at d through targets, as
// a writer would, and returns the connection, its reader and the setup
// answer, which must be a success.
func openWrite(t *testing.T, d *Blockd, targets ...*Blockd) (net.Conn, *bufio.Reader, *pb.OpReply) {
	t.Helper()
	conn, err := net.DialTimeout("tcp", d.node.DataAddr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	var nodes []*pb.Node
	for _, n := range targets {
		nodes = append(nodes, rpc.ToPBNode(n.node))
	}
	var b bytes.Buffer
	if err := xfer.WriteOp(&b, &pb.OpHeader{Op: pb.OpHeader_WRITE_BLOCK, Block: rpc.ToPBBlock(&idleBlock), Targets: nodes, ChunkSize: 512,
		Client: "test", Stage: pb.OpHeader_CREATE, Token: testToken(t, idleBlock.ID, idleBlock.GenStamp, idleBlock.GenStamp, blocktoken.Write)}); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Write(b.Bytes()); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(conn)
	_ = conn.SetReadDeadline(time.Now().Add(30 * time.Second))
	rep, err := xfer.ReadReply(br)
	if err != nil || rep.Status != 0 {
		t.Fatalf("pipeline setup: %v %v", rep, err)
	}
	return conn, br, rep
}

// TestHeartbeatsKeepAnIdlePipeline writes a block through two blockds
// whose idle timeouts are shorter than the writer's pauses: heartbeats
// between the packets keep the pipeline, each is forwarded and acked by
// both nodes, in order with the packets, and both replicas end with
// exactly the data packets' bytes. The setup answer names the shorter of
// the two idle timeouts.
func TestHeartbeatsKeepAnIdlePipeline(t *testing.T) {
	const idle = 400 * time.Millisecond
	tail := startBlockdCfg(t, &recordingMetad{}, nil, func(c *Config) { c.IdleTimeout = idle })
	head := startBlockdCfg(t, &recordingMetad{}, nil, func(c *Config) { c.IdleTimeout = 10 * idle })
	conn, br, rep := openWrite(t, head, tail)
	if rep.IdleTimeoutMs != uint32(idle.Milliseconds()) {
		t.Fatalf("setup answer names idle timeout %d ms, want the pipeline's shortest, %d ms", rep.IdleTimeoutMs, idle.Milliseconds())
	}
	data := pattern(3000, 9)
	send := func(frame []byte) {
		t.Helper()
		if _, err := conn.Write(frame); err != nil {
			t.Fatal(err)
		}
	}
	ack := func(want uint64) {
		t.Helper()
		_ = conn.SetReadDeadline(time.Now().Add(30 * time.Second))
		a, err := xfer.ReadAck(br)
		if err != nil || a.Seq != want || !a.OK() || len(a.Status) != 2 {
			t.Fatalf("ack %+v (%v), want seq %d acked by both nodes", a, err, want)
		}
	}
	packet := func(seq uint64, off int64, p []byte, flags uint8) []byte {
		return xfer.AppendPacket(nil, &xfer.Packet{Seq: seq, Offset: off, Flags: flags, Data: p, Sums: checksum.SumsAt(off, p, 512, nil)})
	}
	send(packet(0, 0, data[:1000], 0))
	ack(0)
	// Idle for three of tail's idle timeouts, a heartbeat every quarter.
	for range 12 {
		time.Sleep(idle / 4)
		send(xfer.AppendHeartbeat(nil))
		ack(xfer.HeartbeatSeq)
	}
	// A heartbeat between a packet and its ack.
	send(append(packet(1, 1000, data[1000:2000], 0), xfer.AppendHeartbeat(nil)...))
	ack(1)
	ack(xfer.HeartbeatSeq)
	send(packet(2, 2000, data[2000:], xfer.FlagLast))
	ack(2)
	for _, d := range []*Blockd{head, tail} {
		have, ok := d.store.Lookup(idleBlock.ID)
		if !ok || have.Len != int64(len(data)) {
			t.Fatalf("%s: finalized replica %v (%v), want %d bytes", d.node.DataAddr, have, ok, len(data))
		}
		if got := readAll(t, d.store, have); !bytes.Equal(got, data) {
			t.Fatalf("%s: the replica's bytes differ from the packets'", d.node.DataAddr)
		}
	}
}

// TestSilentWriterIsDropped opens a write pipeline with a valid token and
// then sends nothing: the blockd closes the connection once its idle
// timeout passes, and the replica the pipeline took is gone.
func TestSilentWriterIsDropped(t *testing.T) {
	const idle = 300 * time.Millisecond
	d := startBlockdCfg(t, &recordingMetad{}, nil, func(c *Config) { c.IdleTimeout = idle })
	conn, br, _ := openWrite(t, d)
	// A bound far past the idle timeout, so that a blockd that never
	// closes fails the test rather than hang it.
	_ = conn.SetReadDeadline(time.Now().Add(20 * time.Second))
	n, err := br.Read(make([]byte, 1))
	if !errors.Is(err, io.EOF) {
		t.Fatalf("a silent writer's connection gave %d bytes (%v), want it closed by the blockd after %v", n, err, idle)
	}
	for d.active.Load() > 0 { // the handler cleaning up
		time.Sleep(time.Millisecond)
	}
	for _, r := range d.store.Report() {
		if r.ID == idleBlock.ID {
			t.Fatalf("replica %v (%v) left by a pipeline that never wrote", r.Block, r.State)
		}
	}
}
