// Package xfer is the block data stream between clients and blockds (and
// from one blockd to the next in a write pipeline): a framed TCP protocol in
// the manner of HDFS's DataTransferProtocol. It owns the framing of
// operation headers, replies, packets of data with their chunk checksums,
// and pipeline acks; it does no I/O policy of its own.
//
// A connection starts with the opener sending Magic, a version byte and a
// length-prefixed pb.OpHeader; the receiver answers with a length-prefixed
// pb.OpReply. Then packets flow (towards the receiver for WRITE_BLOCK, back
// to the opener for READ_BLOCK) and, for writes, acks flow back.
//
// Packet frame, all integers big-endian:
//
//	u32 payload length (bytes after this field)
//	u64 sequence number
//	u64 offset in the block of the first data byte
//	u32 data length
//	u8  flags (1: last packet of the block, 2: sync to disk before acking,
//	    4: heartbeat)
//	ceil(data length / chunk size) × u64 chunk checksums
//	data
//
// A heartbeat (HDFS's heartbeat packet) keeps an idle write pipeline
// open: flags 4 alone, sequence number HeartbeatSeq (2^64−1, HDFS's −1),
// offset 0, no data. Each node forwards it and acks it upstream, in
// order with the data packets, like any packet; it stores nothing.
//
// Ack frame: u64 sequence number, u8 count, count × u8 status (0 = ok),
// one status per pipeline node from this one downstream.
package xfer

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"time"

	"google.golang.org/protobuf/proto"

	"cairn/checksum"
	"cairn/rpc/pb"
)

// Magic opens every connection.
const Magic = "CRNX"

// Version is the protocol version byte after Magic.
const Version = 1

// Limits that keep a malformed or hostile peer from making us allocate.
const (
	MaxHeader     = 64 << 10
	MaxPacketData = 16 << 20
	MaxAckNodes   = 64
	minChunkSize  = 64
)

// Packet flags.
const (
	FlagLast = 1 << 0
	FlagSync = 1 << 1
	// FlagHeartbeat marks a heartbeat: an empty packet a writer sends on
	// an idle pipeline so that no node times it out.
	FlagHeartbeat = 1 << 2
)

// HeartbeatSeq is the sequence number of every heartbeat and of its ack
// (HDFS's HEART_BEAT_SEQNO, −1): no data packet carries it.
const HeartbeatSeq = ^uint64(0)

// Status codes in acks.
const (
	StatusOK    = 0
	StatusError = 1 // this node failed to verify, store or forward
	// StatusChecksum: the packet's data did not match its checksums.
	StatusChecksum = 2
	// StatusNoSpace: this node's disk is full.
	StatusNoSpace = 3
	// StatusTimeout: this node answered nothing in time (set by the node
	// before it, which gave up waiting).
	StatusTimeout = 4
)

// HopTimeout is how long a pipeline node (or the writer) with downstream
// nodes after it waits for the next node: base for the last waiter, ext
// more for each node between, so the node nearest a silent one gives up
// first and names it. downstream < 1 counts as 1.
func HopTimeout(base, ext time.Duration, downstream int) time.Duration {
	return base + ext*time.Duration(max(downstream, 1)-1)
}

// ErrProtocol marks a malformed frame.
var ErrProtocol = errors.New("xfer: protocol error")

func protoErr(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrProtocol, fmt.Sprintf(format, args...))
}

func writeMsg(w io.Writer, m proto.Message) error {
	b, err := proto.Marshal(m)
	if err != nil {
		return err
	}
	var l [4]byte
	binary.BigEndian.PutUint32(l[:], uint32(len(b)))
	if _, err := w.Write(l[:]); err != nil {
		return err
	}
	_, err = w.Write(b)
	return err
}

func readMsg(r io.Reader, m proto.Message) error {
	var l [4]byte
	if _, err := io.ReadFull(r, l[:]); err != nil {
		return err
	}
	n := binary.BigEndian.Uint32(l[:])
	if n > MaxHeader {
		return protoErr("message of %d bytes exceeds %d", n, MaxHeader)
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(r, b); err != nil {
		return unexpected(err)
	}
	if err := proto.Unmarshal(b, m); err != nil {
		return protoErr("bad message: %v", err)
	}
	return nil
}

func unexpected(err error) error {
	if errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	return err
}

// WriteOp opens a connection's conversation with h.
func WriteOp(w io.Writer, h *pb.OpHeader) error {
	if _, err := io.WriteString(w, Magic); err != nil {
		return err
	}
	if _, err := w.Write([]byte{Version}); err != nil {
		return err
	}
	return writeMsg(w, h)
}

// ReadOp reads and checks the opening of a connection.
func ReadOp(r io.Reader) (*pb.OpHeader, error) {
	var m [5]byte
	if _, err := io.ReadFull(r, m[:]); err != nil {
		return nil, err
	}
	if string(m[:4]) != Magic {
		return nil, protoErr("bad magic %q", m[:4])
	}
	if m[4] != Version {
		return nil, protoErr("unsupported version %d (this side speaks %d)", m[4], Version)
	}
	h := &pb.OpHeader{}
	if err := readMsg(r, h); err != nil {
		return nil, err
	}
	switch h.Op {
	case pb.OpHeader_WRITE_BLOCK, pb.OpHeader_READ_BLOCK, pb.OpHeader_TRANSFER_BLOCK,
		pb.OpHeader_INIT_RECOVERY, pb.OpHeader_UPDATE_RECOVERY, pb.OpHeader_VERIFY_BLOCK, pb.OpHeader_BLOCK_CHECKSUM:
	default:
		return nil, protoErr("unknown op %d", h.Op)
	}
	if h.Block == nil || h.Block.Id == 0 {
		return nil, protoErr("op without a block")
	}
	if h.Offset < 0 || h.Length < 0 || h.KeepLen < 0 || h.Block.Len < 0 {
		return nil, protoErr("negative offset or length")
	}
	if h.Stage < pb.OpHeader_CREATE || h.Stage > pb.OpHeader_COPY {
		return nil, protoErr("unknown stage %d", h.Stage)
	}
	if (h.Op == pb.OpHeader_INIT_RECOVERY || h.Op == pb.OpHeader_UPDATE_RECOVERY) && h.NewGenStamp <= h.Block.GenStamp {
		return nil, protoErr("recovery to stamp %d, not above the block's %d", h.NewGenStamp, h.Block.GenStamp)
	}
	if h.Op == pb.OpHeader_TRANSFER_BLOCK && len(h.Targets) != 1 {
		return nil, protoErr("transfer to %d targets", len(h.Targets))
	}
	return h, nil
}

// WriteReply answers an op.
func WriteReply(w io.Writer, r *pb.OpReply) error { return writeMsg(w, r) }

// ReadReply reads the answer to an op.
func ReadReply(r io.Reader) (*pb.OpReply, error) {
	rep := &pb.OpReply{}
	return rep, readMsg(r, rep)
}

// Packet is a run of a block's bytes with the checksums of the chunks they
// make up. Data starts on a chunk boundary; only a block's last chunk may be
// short.
type Packet struct {
	Seq    uint64
	Offset int64
	Flags  uint8
	Sums   []uint64
	Data   []byte
}

// Last reports whether p ends its block.
func (p *Packet) Last() bool { return p.Flags&FlagLast != 0 }

// Heartbeat reports whether p is a heartbeat, which carries no data.
func (p *Packet) Heartbeat() bool { return p.Flags&FlagHeartbeat != 0 }

// AppendHeartbeat appends a heartbeat's frame to dst.
func AppendHeartbeat(dst []byte) []byte {
	return AppendPacketHeader(dst, &Packet{Seq: HeartbeatSeq, Flags: FlagHeartbeat})
}

const packetFixed = 8 + 8 + 4 + 1

// NumSums is how many checksums cover n bytes in chunks of chunkSize.
func NumSums(n, chunkSize int) int { return (n + chunkSize - 1) / chunkSize }

// Packets carry checksums in the layout of checksum.SumsAt: a packet that
// starts inside a chunk (continuing a partial last chunk) has a first
// checksum for the piece up to the next chunk boundary.

// AppendPacket appends p's frame to dst.
func AppendPacket(dst []byte, p *Packet) []byte {
	return append(AppendPacketHeader(dst, p), p.Data...)
}

// AppendPacketHeader appends p's frame without its data, for a writer that
// sends the data from where it is (net.Buffers, writev).
func AppendPacketHeader(dst []byte, p *Packet) []byte {
	payload := packetFixed + 8*len(p.Sums) + len(p.Data)
	dst = binary.BigEndian.AppendUint32(dst, uint32(payload))
	dst = binary.BigEndian.AppendUint64(dst, p.Seq)
	dst = binary.BigEndian.AppendUint64(dst, uint64(p.Offset))
	dst = binary.BigEndian.AppendUint32(dst, uint32(len(p.Data)))
	dst = append(dst, p.Flags)
	for _, s := range p.Sums {
		dst = binary.BigEndian.AppendUint64(dst, s)
	}
	return dst
}

// PacketReader reads packets of one chunk size, reusing its buffer: a
// packet's Data and Sums are valid until the next Read.
type PacketReader struct {
	r         io.Reader
	chunkSize int
	buf       []byte
	sums      []uint64
	// Raw is the whole frame of the last packet read, for forwarding.
	Raw []byte
}

// NewPacketReader reads packets from r.
func NewPacketReader(r io.Reader, chunkSize int) (*PacketReader, error) {
	if chunkSize < minChunkSize || chunkSize > MaxPacketData {
		return nil, protoErr("chunk size %d outside %d..%d", chunkSize, minChunkSize, MaxPacketData)
	}
	return &PacketReader{r: r, chunkSize: chunkSize}, nil
}

// Read reads the next packet. A clean end of stream before a packet is io.EOF.
func (pr *PacketReader) Read(p *Packet) error {
	var l [4]byte
	if _, err := io.ReadFull(pr.r, l[:]); err != nil {
		return err
	}
	n := int(binary.BigEndian.Uint32(l[:]))
	maxPayload := packetFixed + 8*(NumSums(MaxPacketData, pr.chunkSize)+1) + MaxPacketData
	if n < packetFixed || n > maxPayload {
		return protoErr("packet payload of %d bytes outside %d..%d", n, packetFixed, maxPayload)
	}
	if cap(pr.buf) < 4+n {
		pr.buf = make([]byte, 4+n)
	}
	pr.buf = pr.buf[:4+n]
	copy(pr.buf, l[:])
	if _, err := io.ReadFull(pr.r, pr.buf[4:]); err != nil {
		return unexpected(err)
	}
	b := pr.buf[4:]
	p.Seq = binary.BigEndian.Uint64(b)
	p.Offset = int64(binary.BigEndian.Uint64(b[8:]))
	dataLen := int(binary.BigEndian.Uint32(b[16:]))
	p.Flags = b[20]
	if p.Offset < 0 {
		return protoErr("negative offset %d", p.Offset)
	}
	if p.Flags&^(FlagLast|FlagSync|FlagHeartbeat) != 0 {
		return protoErr("unknown flags %#x", p.Flags)
	}
	if p.Heartbeat() != (p.Seq == HeartbeatSeq) {
		return protoErr("packet %d with flags %#x: only a heartbeat, and every heartbeat, has sequence number %d", p.Seq, p.Flags, HeartbeatSeq)
	}
	if p.Heartbeat() && (p.Flags != FlagHeartbeat || p.Offset != 0 || dataLen != 0) {
		return protoErr("heartbeat with flags %#x, offset %d and %d data bytes, want flags %#x alone, offset 0, no data", p.Flags, p.Offset, dataLen, FlagHeartbeat)
	}
	if dataLen > MaxPacketData || p.Offset > 1<<50 {
		return protoErr("packet of %d data bytes at %d is too large", dataLen, p.Offset)
	}
	ns := checksum.NumSumsAt(p.Offset, dataLen, pr.chunkSize)
	if packetFixed+8*ns+dataLen != n {
		return protoErr("packet of %d data bytes does not fit its %d-byte payload", dataLen, n)
	}
	if cap(pr.sums) < ns {
		pr.sums = make([]uint64, ns)
	}
	p.Sums = pr.sums[:ns]
	for i := range p.Sums {
		p.Sums[i] = binary.BigEndian.Uint64(b[packetFixed+8*i:])
	}
	p.Data = b[packetFixed+8*ns:]
	pr.Raw = pr.buf
	return nil
}

// Ack is a pipeline's answer to one packet.
type Ack struct {
	Seq    uint64
	Status []uint8 // this node first, then each node downstream
}

// OK reports whether every node stored the packet.
func (a *Ack) OK() bool {
	for _, s := range a.Status {
		if s != StatusOK {
			return false
		}
	}
	return true
}

// FirstBad is the index of the first node that failed, or -1.
func (a *Ack) FirstBad() int {
	for i, s := range a.Status {
		if s != StatusOK {
			return i
		}
	}
	return -1
}

// WriteAck writes a.
func WriteAck(w io.Writer, a *Ack) error {
	b := make([]byte, 0, 9+len(a.Status))
	b = binary.BigEndian.AppendUint64(b, a.Seq)
	b = append(b, uint8(len(a.Status)))
	b = append(b, a.Status...)
	_, err := w.Write(b)
	return err
}

// ReadAck reads an ack.
func ReadAck(r io.Reader) (*Ack, error) {
	var h [9]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return nil, err
	}
	n := int(h[8])
	if n == 0 || n > MaxAckNodes {
		return nil, protoErr("ack for %d nodes", n)
	}
	a := &Ack{Seq: binary.BigEndian.Uint64(h[:]), Status: make([]uint8, n)}
	if _, err := io.ReadFull(r, a.Status); err != nil {
		return nil, unexpected(err)
	}
	return a, nil
}

// NewBufferedWriter sizes a writer for packet streams.
func NewBufferedWriter(w io.Writer) *bufio.Writer { return bufio.NewWriterSize(w, 256<<10) }

// NewBufferedReader sizes a reader for packet streams.
func NewBufferedReader(r io.Reader) *bufio.Reader { return bufio.NewReaderSize(r, 256<<10) }
