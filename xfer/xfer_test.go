package xfer

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"testing"

	"cairn/checksum"
	"cairn/rpc/pb"
)

func TestOpRoundTrip(t *testing.T) {
	var buf bytes.Buffer
	h := &pb.OpHeader{Op: pb.OpHeader_WRITE_BLOCK, Block: &pb.Block{Id: 7, GenStamp: 3}, ChunkSize: 512, Stage: pb.OpHeader_RECOVERY, KeepLen: 100}
	if err := WriteOp(&buf, h); err != nil {
		t.Fatal(err)
	}
	got, err := ReadOp(&buf)
	if err != nil || got.Block.Id != 7 || got.Stage != pb.OpHeader_RECOVERY || got.KeepLen != 100 {
		t.Fatalf("ReadOp = %v, %v", got, err)
	}
}

func TestReadOpRefuses(t *testing.T) {
	frame := func(h *pb.OpHeader) []byte {
		var b bytes.Buffer
		_ = WriteOp(&b, h)
		return b.Bytes()
	}
	good := frame(&pb.OpHeader{Op: pb.OpHeader_READ_BLOCK, Block: &pb.Block{Id: 1}})
	cases := map[string][]byte{
		"bad magic":     append([]byte("XXXX"), good[4:]...),
		"bad version":   append(append([]byte(Magic), 9), good[5:]...),
		"no block":      frame(&pb.OpHeader{Op: pb.OpHeader_READ_BLOCK}),
		"unknown op":    frame(&pb.OpHeader{Op: 99, Block: &pb.Block{Id: 1}}),
		"negative":      frame(&pb.OpHeader{Op: pb.OpHeader_READ_BLOCK, Block: &pb.Block{Id: 1}, Offset: -1}),
		"unknown stage": frame(&pb.OpHeader{Op: pb.OpHeader_WRITE_BLOCK, Block: &pb.Block{Id: 1}, Stage: 42}),
		"huge header":   append(append([]byte(Magic), Version), 0xff, 0xff, 0xff, 0xff),
		"transfer":      frame(&pb.OpHeader{Op: pb.OpHeader_TRANSFER_BLOCK, Block: &pb.Block{Id: 1}}),
	}
	for name, b := range cases {
		if _, err := ReadOp(bytes.NewReader(b)); !errors.Is(err, ErrProtocol) {
			t.Errorf("%s: %v, want a protocol error", name, err)
		}
	}
	if _, err := ReadOp(bytes.NewReader(good[:len(good)-1])); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("truncated: %v, want unexpected EOF", err)
	}
}

func TestPacketRoundTrip(t *testing.T) {
	const cs = 64
	data := bytes.Repeat([]byte("0123456789"), 50)
	for _, off := range []int64{0, 64, 70, 127} {
		p := &Packet{Seq: 5, Offset: off, Flags: FlagLast, Data: data, Sums: checksum.SumsAt(off, data, cs, nil)}
		frame := AppendPacket(nil, p)
		pr, err := NewPacketReader(bytes.NewReader(frame), cs)
		if err != nil {
			t.Fatal(err)
		}
		var got Packet
		if err := pr.Read(&got); err != nil {
			t.Fatalf("offset %d: %v", off, err)
		}
		if got.Seq != 5 || got.Offset != off || !got.Last() || !bytes.Equal(got.Data, data) || len(got.Sums) != len(p.Sums) || !bytes.Equal(pr.Raw, frame) {
			t.Fatalf("offset %d: packet differs after the round trip", off)
		}
		if err := checksum.VerifyAt(1, cs, got.Offset, got.Data, got.Sums); err != nil {
			t.Fatalf("offset %d: %v", off, err)
		}
		if err := pr.Read(&got); err != io.EOF {
			t.Fatalf("after the last packet: %v, want io.EOF", err)
		}
	}
}

func TestPacketRefuses(t *testing.T) {
	p := &Packet{Offset: 0, Data: []byte("abc"), Sums: []uint64{1}}
	frame := AppendPacket(nil, p)
	short := append([]byte(nil), frame...)
	short[3]-- // payload length one less than the frame holds
	for name, b := range map[string][]byte{
		"sums do not fit": short,
		"tiny payload":    {0, 0, 0, 1, 0},
		"flags":           func() []byte { f := append([]byte(nil), frame...); f[4+20] = 0x80; return f }(),
	} {
		pr, _ := NewPacketReader(bytes.NewReader(b), 64)
		var got Packet
		if err := pr.Read(&got); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if _, err := NewPacketReader(nil, 0); !errors.Is(err, ErrProtocol) {
		t.Errorf("chunk size 0: %v", err)
	}
}

// TestHeartbeat: a heartbeat's frame reads back as a heartbeat among data
// packets, and a frame that mixes a heartbeat's marks with a data
// packet's is refused.
func TestHeartbeat(t *testing.T) {
	const cs = 64
	data := []byte("between heartbeats")
	var frames []byte
	frames = AppendHeartbeat(frames)
	frames = AppendPacket(frames, &Packet{Seq: 0, Data: data, Sums: checksum.SumsAt(0, data, cs, nil)})
	frames = AppendHeartbeat(frames)
	pr, err := NewPacketReader(bytes.NewReader(frames), cs)
	if err != nil {
		t.Fatal(err)
	}
	var p Packet
	for i, wantHB := range []bool{true, false, true} {
		if err := pr.Read(&p); err != nil {
			t.Fatalf("packet %d: %v", i, err)
		}
		if p.Heartbeat() != wantHB || wantHB && (p.Seq != HeartbeatSeq || len(p.Data) != 0 || p.Last()) || !wantHB && !bytes.Equal(p.Data, data) {
			t.Fatalf("packet %d: %+v, want heartbeat %v", i, p, wantHB)
		}
	}
	if hb := AppendHeartbeat(nil); !bytes.Equal(pr.Raw, hb) || len(hb) != 4+packetFixed {
		t.Fatalf("heartbeat frame %x (%d bytes), forwarded as %x", hb, len(hb), pr.Raw)
	}

	sums := checksum.SumsAt(0, data, cs, nil)
	for name, frame := range map[string][]byte{
		"heartbeat with data":         AppendPacket(nil, &Packet{Seq: HeartbeatSeq, Flags: FlagHeartbeat, Data: data, Sums: sums}),
		"heartbeat at an offset":      AppendPacket(nil, &Packet{Seq: HeartbeatSeq, Flags: FlagHeartbeat, Offset: 64}),
		"heartbeat that ends":         AppendPacket(nil, &Packet{Seq: HeartbeatSeq, Flags: FlagHeartbeat | FlagLast}),
		"heartbeat that syncs":        AppendPacket(nil, &Packet{Seq: HeartbeatSeq, Flags: FlagHeartbeat | FlagSync}),
		"heartbeat with a data seq":   AppendPacket(nil, &Packet{Seq: 3, Flags: FlagHeartbeat}),
		"data with the heartbeat seq": AppendPacket(nil, &Packet{Seq: HeartbeatSeq, Data: data, Sums: sums}),
		"empty packet, heartbeat seq": AppendPacket(nil, &Packet{Seq: HeartbeatSeq, Flags: FlagLast}),
	} {
		pr, _ := NewPacketReader(bytes.NewReader(frame), cs)
		if err := pr.Read(&p); !errors.Is(err, ErrProtocol) {
			t.Errorf("%s: %v, want a protocol error", name, err)
		}
	}
}

func TestAck(t *testing.T) {
	var buf bytes.Buffer
	if err := WriteAck(&buf, &Ack{Seq: 9, Status: []uint8{StatusOK, StatusChecksum}}); err != nil {
		t.Fatal(err)
	}
	a, err := ReadAck(bufio.NewReader(&buf))
	if err != nil || a.Seq != 9 || a.OK() || a.FirstBad() != 1 {
		t.Fatalf("ReadAck = %+v, %v", a, err)
	}
	if _, err := ReadAck(bytes.NewReader(make([]byte, 9))); !errors.Is(err, ErrProtocol) {
		t.Errorf("ack for no node: %v", err)
	}
}

func FuzzReadOp(f *testing.F) {
	var b bytes.Buffer
	_ = WriteOp(&b, &pb.OpHeader{Op: pb.OpHeader_WRITE_BLOCK, Block: &pb.Block{Id: 1}, Targets: []*pb.Node{{DataAddr: "x:1"}}})
	f.Add(b.Bytes())
	f.Add([]byte("CRNX\x01\x00\x00\x00\x00"))
	b.Reset()
	_ = WriteOp(&b, &pb.OpHeader{Op: pb.OpHeader_READ_BLOCK, Block: &pb.Block{Id: 1, GenStamp: 1000}, Offset: 1, Length: 1<<63 - 1,
		Token: bytes.Repeat([]byte{1}, 80)})
	f.Add(b.Bytes())
	f.Add(append([]byte("CRNX\x01"), 0x80, 0, 0, 0)) // a frame claiming 2 GiB
	f.Fuzz(func(t *testing.T, data []byte) {
		h, err := ReadOp(bytes.NewReader(data))
		if err == nil && (h.Block == nil || h.Block.Id == 0) {
			t.Fatal("accepted an op without a block")
		}
	})
}

func FuzzPacket(f *testing.F) {
	d := []byte("hello packet")
	f.Add(AppendPacket(nil, &Packet{Offset: 3, Data: d, Sums: checksum.SumsAt(3, d, 4, nil)}), uint16(4))
	f.Add([]byte{0, 0, 0, 21, 0}, uint16(512))
	f.Add(AppendHeartbeat(AppendPacket(nil, &Packet{Offset: 3, Data: d, Sums: checksum.SumsAt(3, d, 4, nil)})), uint16(4))
	f.Fuzz(func(t *testing.T, data []byte, cs uint16) {
		pr, err := NewPacketReader(bytes.NewReader(data), int(cs))
		if err != nil {
			return
		}
		var p Packet
		for pr.Read(&p) == nil {
			if len(p.Sums) != checksum.NumSumsAt(p.Offset, len(p.Data), int(cs)) {
				t.Fatalf("packet with %d sums for %d bytes at %d", len(p.Sums), len(p.Data), p.Offset)
			}
			if p.Heartbeat() && (p.Seq != HeartbeatSeq || p.Offset != 0 || len(p.Data) != 0 || p.Flags != FlagHeartbeat) {
				t.Fatalf("accepted a heartbeat %+v", p)
			}
			if !p.Heartbeat() && p.Seq == HeartbeatSeq {
				t.Fatal("accepted a data packet with the heartbeat's sequence number")
			}
			_ = checksum.VerifyAt(1, int(cs), p.Offset, p.Data, p.Sums)
		}
	})
}

func FuzzReadAck(f *testing.F) {
	f.Add([]byte{0, 0, 0, 0, 0, 0, 0, 1, 2, 0, 1})
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 3, 0, 0, 0}) // a heartbeat's ack
	f.Fuzz(func(t *testing.T, data []byte) {
		a, err := ReadAck(bytes.NewReader(data))
		if err == nil && (len(a.Status) == 0 || len(a.Status) > MaxAckNodes) {
			t.Fatalf("ack with %d statuses", len(a.Status))
		}
	})
}
