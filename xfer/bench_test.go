package xfer

import (
	"context"
	"io"
	"net"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"cairn/checksum"
)

// BenchmarkTransport moves the same bytes over loopback TCP two ways in one
// run — this package's framing (packets of data and checksums, one ack per
// packet) and a gRPC bidirectional stream of the same packets — with the
// receiver verifying every chunk both times, and reports the ratio. It is
// the measurement behind the choice of the block data protocol
// (docs/ARCHITECTURE.md).
func BenchmarkTransport(b *testing.B) {
	const total = 512 << 20
	const packet = 128 << 10
	chunk := checksum.DefaultChunkSize
	data := make([]byte, packet)
	for i := range data {
		data[i] = byte(i * 31)
	}
	sums := checksum.Sums(data, chunk, nil)
	mbps := func(d time.Duration) float64 { return total / d.Seconds() / 1e6 }
	for i := 0; i < b.N; i++ {
		framed := benchFramed(b, data, sums, chunk, total)
		viaGRPC := benchGRPC(b, data, sums, total)
		b.ReportMetric(mbps(framed), "framed-MB/s")
		b.ReportMetric(mbps(viaGRPC), "grpc-MB/s")
		b.ReportMetric(float64(viaGRPC)/float64(framed), "grpc-time/framed-time")
	}
}

func benchFramed(b *testing.B, data []byte, sums []uint64, chunk, total int) time.Duration {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	go func() {
		c, err := l.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		pr, _ := NewPacketReader(NewBufferedReader(c), chunk)
		bw := NewBufferedWriter(c)
		var p Packet
		for pr.Read(&p) == nil {
			if err := checksum.VerifyAt(1, chunk, 0, p.Data, p.Sums); err != nil {
				return
			}
			_ = WriteAck(bw, &Ack{Seq: p.Seq, Status: []uint8{StatusOK}})
			_ = bw.Flush()
			if p.Last() {
				return
			}
		}
	}()
	start := time.Now()
	c, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	n := total / len(data)
	done := make(chan error, 1)
	go func() {
		br := NewBufferedReader(c)
		for i := 0; i < n; i++ {
			if _, err := ReadAck(br); err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	var hdr []byte
	for i := 0; i < n; i++ {
		p := &Packet{Seq: uint64(i), Sums: sums, Data: data}
		if i == n-1 {
			p.Flags = FlagLast
		}
		hdr = AppendPacketHeader(hdr[:0], p)
		bufs := net.Buffers{hdr, data}
		if _, err := bufs.WriteTo(c); err != nil {
			b.Fatal(err)
		}
	}
	if err := <-done; err != nil {
		b.Fatal(err)
	}
	return time.Since(start)
}

var benchStream = grpc.ServiceDesc{
	ServiceName: "cairn.bench.Stream",
	HandlerType: (*any)(nil),
	Streams: []grpc.StreamDesc{{
		StreamName: "Push", ClientStreams: true, ServerStreams: true,
		Handler: func(_ any, s grpc.ServerStream) error {
			m := new(wrapperspb.BytesValue)
			for {
				if err := s.RecvMsg(m); err == io.EOF {
					return nil
				} else if err != nil {
					return err
				}
				// The checksums travel in the message's first bytes.
				n := len(m.Value) / (checksum.DefaultChunkSize + 8)
				raw := m.Value[8*n:]
				got := make([]uint64, n)
				for i := range got {
					for j := 0; j < 8; j++ {
						got[i] |= uint64(m.Value[8*i+j]) << (8 * j)
					}
				}
				if err := checksum.VerifyAt(1, checksum.DefaultChunkSize, 0, raw, got); err != nil {
					return err
				}
				if err := s.SendMsg(&wrapperspb.UInt64Value{Value: 1}); err != nil {
					return err
				}
			}
		},
	}},
}

func benchGRPC(b *testing.B, data []byte, sums []uint64, total int) time.Duration {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	srv := grpc.NewServer(grpc.MaxRecvMsgSize(4 << 20))
	srv.RegisterService(&benchStream, struct{}{})
	go func() { _ = srv.Serve(l) }()
	defer srv.Stop()
	msg := checksum.EncodeSums(nil, sums)
	msg = append(msg, data...)
	start := time.Now()
	conn, err := grpc.NewClient(l.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	s, err := conn.NewStream(context.Background(), &benchStream.Streams[0], "/cairn.bench.Stream/Push")
	if err != nil {
		b.Fatal(err)
	}
	n := total / len(data)
	done := make(chan error, 1)
	go func() {
		ack := new(wrapperspb.UInt64Value)
		for i := 0; i < n; i++ {
			if err := s.RecvMsg(ack); err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	v := &wrapperspb.BytesValue{Value: msg}
	for i := 0; i < n; i++ {
		if err := s.SendMsg(v); err != nil {
			b.Fatal(err)
		}
	}
	if err := <-done; err != nil {
		b.Fatal(err)
	}
	_ = s.CloseSend()
	return time.Since(start)
}
