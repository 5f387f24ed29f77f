package client

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"cairn"
	"cairn/rpc/pb"
	"cairn/xfer"
)

func TestHeartbeatEvery(t *testing.T) {
	to := newTimeouts(DefaultSetupTimeout, DefaultAckTimeout)
	for _, c := range []struct {
		idleMs uint32
		to     timeouts
		want   time.Duration
	}{
		{60000, to, 30 * time.Second},
		{0, to, assumedIdleTimeout / 2}, // the blockds did not say
		{2000, to, time.Second},
		{60000, newTimeouts(time.Second, 4*time.Second), 2 * time.Second}, // the ack timeout is shorter
		{1, to, minHeartbeat},
	} {
		if got := heartbeatEvery(c.idleMs, c.to); got != c.want {
			t.Errorf("heartbeatEvery(%d ms, ack %v) = %v, want %v", c.idleMs, c.to.ack, got, c.want)
		}
	}
}

// fakeBlockd stands in for the first blockd of a pipeline (the blockd is
// not under test here): it answers the setup naming idle, then hands each
// packet it reads to the test, which acks as it likes.
type fakeBlockd struct {
	packets chan xfer.Packet // a copy of each packet read; closed at the end of the stream
	acks    chan xfer.Ack    // acks to send, in order
	ended   chan error       // why the stream ended
}

func startFakeBlockd(t *testing.T, idle time.Duration) (*fakeBlockd, cairn.Node) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeBlockd{packets: make(chan xfer.Packet, 1024), acks: make(chan xfer.Ack, 1024), ended: make(chan error, 1)}
	done := make(chan struct{})
	t.Cleanup(func() { _ = l.Close(); close(f.acks); <-done })
	go func() {
		defer close(done)
		c, err := l.Accept()
		if err != nil {
			f.ended <- err
			close(f.packets)
			return
		}
		defer c.Close()
		br, bw := bufio.NewReader(c), bufio.NewWriter(c)
		h, err := xfer.ReadOp(br)
		if err == nil {
			err = xfer.WriteReply(bw, &pb.OpReply{ChunkSize: h.ChunkSize, IdleTimeoutMs: uint32(idle.Milliseconds())})
		}
		if err == nil {
			err = bw.Flush()
		}
		ackerDone := make(chan struct{})
		go func() {
			defer close(ackerDone)
			for a := range f.acks {
				if xfer.WriteAck(bw, &a) != nil || bw.Flush() != nil {
					return
				}
			}
		}()
		var pr *xfer.PacketReader
		if err == nil {
			pr, err = xfer.NewPacketReader(br, int(h.ChunkSize))
		}
		for err == nil {
			var p xfer.Packet
			if err = pr.Read(&p); err == nil {
				p.Data = append([]byte(nil), p.Data...)
				p.Sums = nil
				f.packets <- p
			}
		}
		f.ended <- err
		close(f.packets)
		_ = c.Close()
		<-ackerDone
	}()
	return f, cairn.Node{StorageID: "fake", DataAddr: l.Addr().String()}
}

// next is the next packet the fake read; ok is false once the stream ended.
func (f *fakeBlockd) next(t *testing.T) (xfer.Packet, bool) {
	t.Helper()
	select {
	case p, ok := <-f.packets:
		return p, ok
	case <-time.After(30 * time.Second):
		t.Fatal("the fake blockd read no packet, and the stream did not end")
		return xfer.Packet{}, false
	}
}

func plainDial(ctx context.Context, addr string, timeout time.Duration) (net.Conn, error) {
	return net.DialTimeout("tcp", addr, timeout)
}

// TestPipelineHeartbeats: a pipeline with nothing to send sends
// heartbeats; their acks, coming between the acks of data packets, neither
// complete a packet nor disturb the order of the others, so hflush's wait
// (waitAll) and the packets a recovery would send again (pending) see only
// the data; after the packet that ends the block nothing more is sent.
func TestPipelineHeartbeats(t *testing.T) {
	const idle = 200 * time.Millisecond
	f, node := startFakeBlockd(t, idle)
	lb := &cairn.LocatedBlock{Block: cairn.Block{ID: 1, GenStamp: 1001}, Locations: []cairn.Node{node}}
	pl, _, err := openPipeline(plainDial, lb, 512, "test", stageCreate, 0, newTimeouts(DefaultSetupTimeout, DefaultAckTimeout))
	if err != nil {
		t.Fatal(err)
	}
	defer pl.close()
	ok := []uint8{xfer.StatusOK}
	hbAck := xfer.Ack{Seq: xfer.HeartbeatSeq, Status: ok}
	heartbeat := func() {
		t.Helper()
		p, more := f.next(t)
		if !more || !p.Heartbeat() || p.Seq != xfer.HeartbeatSeq {
			t.Fatalf("read %+v (stream open %v), want a heartbeat from an idle pipeline", p, more)
		}
	}
	// upTo reads up to data packet seq, and returns how many heartbeats
	// came before it.
	upTo := func(seq uint64, data string) int {
		t.Helper()
		n := 0
		for {
			p, more := f.next(t)
			switch {
			case !more:
				t.Fatalf("the stream ended before packet %d", seq)
			case p.Heartbeat():
				n++
				continue
			case p.Seq != seq || string(p.Data) != data:
				t.Fatalf("read %+v, want packet %d", p, seq)
			}
			return n
		}
	}
	// Idle from the setup on: heartbeats, acked.
	heartbeat()
	f.acks <- hbAck
	// A heartbeat goes out; packet 0 follows before its ack comes back:
	// that ack, and those of any other heartbeat before packet 0, come
	// first and must not complete packet 0 (if one did, packet 0's own
	// ack would be out of order and fail the pipeline).
	heartbeat()
	if _, err := pl.send(packet{off: 0, data: []byte("hello")}); err != nil {
		t.Fatal(err)
	}
	for range 1 + upTo(0, "hello") {
		f.acks <- hbAck
	}
	f.acks <- xfer.Ack{Seq: 0, Status: ok}
	if err := pl.waitAll(); err != nil {
		t.Fatalf("hflush's wait: %v", err)
	}
	if un, acked := pl.pending(); len(un) != 0 || acked != 5 {
		t.Fatalf("pending %d packets acked to %d, want none and 5", len(un), acked)
	}
	if _, err := pl.send(packet{off: 5, data: []byte(" world"), flags: flagLast}); err != nil {
		t.Fatalf("packet 1: %v", err)
	}
	for range upTo(1, " world") {
		f.acks <- hbAck
	}
	f.acks <- xfer.Ack{Seq: 1, Status: ok}
	if err := pl.waitAll(); err != nil {
		t.Fatal(err)
	}
	if un, acked := pl.pending(); len(un) != 0 || acked != 11 {
		t.Fatalf("pending %d packets acked to %d, want none and 11", len(un), acked)
	}
	// Idle for several heartbeat intervals after the end of the block:
	// the stream must end with the close, no heartbeat after the last
	// packet.
	time.Sleep(4 * heartbeatEvery(uint32(idle.Milliseconds()), newTimeouts(DefaultSetupTimeout, DefaultAckTimeout)))
	pl.close()
	if p, more := f.next(t); more {
		t.Fatalf("read %+v after the block's last packet", p)
	}
	if err := <-f.ended; !errors.Is(err, io.EOF) {
		t.Fatalf("the stream ended with %v, want io.EOF", err)
	}
}

// TestPipelineHeartbeatRefused: a heartbeat a node downstream fails fails
// the pipeline naming that node, as a data packet's would, so recovery
// drops it.
func TestPipelineHeartbeatRefused(t *testing.T) {
	f, node := startFakeBlockd(t, 100*time.Millisecond)
	second := cairn.Node{StorageID: "second", DataAddr: "127.0.0.1:1"}
	lb := &cairn.LocatedBlock{Block: cairn.Block{ID: 1, GenStamp: 1001}, Locations: []cairn.Node{node, second}}
	pl, _, err := openPipeline(plainDial, lb, 512, "test", stageCreate, 0, newTimeouts(DefaultSetupTimeout, DefaultAckTimeout))
	if err != nil {
		t.Fatal(err)
	}
	defer pl.close()
	if p, more := f.next(t); !more || !p.Heartbeat() {
		t.Fatalf("read %+v, want a heartbeat", p)
	}
	f.acks <- xfer.Ack{Seq: xfer.HeartbeatSeq, Status: []uint8{xfer.StatusOK, xfer.StatusError}}
	pl.mu.Lock()
	for pl.err == nil {
		pl.cond.Wait()
	}
	err = pl.err
	pl.mu.Unlock()
	var pe *pipelineError
	if !errors.As(err, &pe) || pe.bad != 1 {
		t.Fatalf("waitAll after a refused heartbeat: %v, want a pipeline error naming node 1", err)
	}
	t.Logf("pipeline failed: %v", err)
}
