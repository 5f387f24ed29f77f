package tests

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"net"
	"strings"
	"testing"
	"time"

	"cairn"
	"cairn/blocktoken"
	"cairn/client"
	"cairn/rpc"
	"cairn/rpc/pb"
	"cairn/tests/cluster"
	"cairn/xfer"
)

// The attacks on the data port (issue 10), each against a running
// cluster. Every attack must be refused with a clear error, and after each
// the cluster keeps serving: every file reads back with the bytes it was
// written with (their SHA-256 compared) and `fsck -verify` is HEALTHY.

const (
	attackCap    = 16 // --max-connections of the attacked blockds
	attackHeader = 2 * time.Second
	attackIdle   = 2 * time.Second // --idle-timeout of the attacked blockds
)

// rawOp sends one op header to a blockd's data port as an attacker would,
// and returns the blockd's reply.
func rawOp(t *testing.T, addr string, h *pb.OpHeader) (*pb.OpReply, error) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	var b bytes.Buffer
	if err := xfer.WriteOp(&b, h); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Write(b.Bytes()); err != nil {
		return nil, err
	}
	return xfer.ReadReply(c)
}

// refused checks that an op got a reply of kind want (not success).
func refused(t *testing.T, what string, rep *pb.OpReply, err error, want cairn.Kind) {
	t.Helper()
	switch {
	case err != nil:
		t.Errorf("%s: no reply (%v), want a refusal of kind %v", what, err, want)
	case rep.Status == 0:
		t.Errorf("%s: accepted (block length %d), want a refusal of kind %v", what, rep.BlockLen, want)
	case cairn.Kind(rep.Status) != want:
		t.Errorf("%s: refused with %v (%s), want %v", what, cairn.Kind(rep.Status), rep.Message, want)
	default:
		t.Logf("%s: refused: %s", what, rep.Message)
	}
}

// victim is a file the attacks aim at, and what it must keep holding.
type victim struct {
	path string
	sum  [32]byte
	size int64
}

func writeVictim(t *testing.T, cl *client.Client, path string, perm uint32, seed uint64, size int) victim {
	t.Helper()
	w, err := cl.Create(context.Background(), path, fs.FileMode(perm))
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, size)
	_, _ = newStream(seed).Read(buf)
	if _, err := w.Write(buf); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return victim{path: path, sum: sha256.Sum256(buf), size: int64(size)}
}

// intact checks that the cluster serves every victim with its bytes
// unchanged, takes a new file, and that fsck -verify finds / HEALTHY.
func intact(t *testing.T, c *cluster.Cluster, cl *client.Client, vs []victim) {
	t.Helper()
	ctx := context.Background()
	for _, v := range vs {
		r, err := cl.Open(ctx, v.path)
		if err != nil {
			t.Fatalf("%s: %v", v.path, err)
		}
		h := sha256.New()
		n, err := io.Copy(h, io.NewSectionReader(r, 0, r.Size()))
		_ = r.Close()
		if err != nil || n != v.size || !bytes.Equal(h.Sum(nil), v.sum[:]) {
			t.Fatalf("%s: read %d bytes (%v), want %d with SHA-256 %x", v.path, n, err, v.size, v.sum)
		}
	}
	write(t, cl, "/after-attack", 99, 100<<10)
	sameAs(t, cl, "/after-attack", 99, 100<<10)
	if err := cl.NS.Delete(ctx, "/after-attack", false); err != nil {
		t.Fatal(err)
	}
	out, code := c.Run(t, "fsck", "/", "-verify")
	if code != 0 || cluster.LastLine(out) != cluster.HealthyLine("/") {
		t.Fatalf("fsck / -verify after the attack: exit %d\n%s", code, out)
	}
}

// TestAttackDataPort tries each attack on the data port of a running
// cluster in turn.
func TestAttackDataPort(t *testing.T) {
	c := cluster.Start(t, cluster.Config{Blockds: 3, BlockSize: 1 << 20, Replication: 3,
		BlockdArgs: []string{"--max-connections", "16", "--header-timeout", attackHeader.String(), "--idle-timeout", attackIdle.String()}})
	cl := dial(t, c)
	ctx := context.Background()
	secret := writeVictim(t, cl, "/secret", 0o600, 7, 300<<10)
	big := writeVictim(t, cl, "/big", 0o644, 8, 2<<20+12345)
	vs := []victim{secret, big}
	locs := func(path string) cairn.LocatedBlock {
		t.Helper()
		fb, err := cl.NS.BlockLocations(ctx, cairn.FileRef{Path: path})
		if err != nil || len(fb.Blocks) == 0 {
			t.Fatalf("%s: %v %v", path, fb, err)
		}
		return fb.Blocks[0]
	}
	sb := locs("/secret") // the block, its holders and a read token
	bb := locs("/big")
	pbBlock := func(b cairn.Block) *pb.Block { return rpc.ToPBBlock(&b) }
	at := func(b cairn.Block, gs cairn.GenStamp) *pb.Block { b.GenStamp = gs; return rpc.ToPBBlock(&b) }

	t.Run("read with stamp 0 and no token", func(t *testing.T) {
		// The first attack: it returned a 0600 file's bytes.
		for _, n := range sb.Locations {
			rep, err := rawOp(t, n.DataAddr, &pb.OpHeader{Op: pb.OpHeader_READ_BLOCK, Block: at(sb.Block, 0)})
			refused(t, "READ_BLOCK of "+n.DataAddr, rep, err, cairn.KindAccess)
		}
		intact(t, c, cl, vs)
	})

	t.Run("tokens that do not fit", func(t *testing.T) {
		addr := sb.Locations[0].DataAddr
		if len(sb.Token) == 0 || len(bb.Token) == 0 {
			t.Fatal("metad handed out block locations without tokens")
		}
		forged := append([]byte(nil), sb.Token...)
		forged[len(forged)-1] ^= 0x80
		claim, _ := blocktoken.Parse(sb.Token)
		claim.Modes = blocktoken.Read | blocktoken.Write | blocktoken.Recover
		selfMade, err := blocktoken.Sign(claim, bytes.Repeat([]byte{0x42}, blocktoken.SecretLen))
		if err != nil {
			t.Fatal(err)
		}
		for _, a := range []struct {
			what string
			h    *pb.OpHeader
		}{
			{"a read token of another block", &pb.OpHeader{Op: pb.OpHeader_READ_BLOCK, Block: pbBlock(sb.Block), Token: bb.Token}},
			{"a read token at another stamp", &pb.OpHeader{Op: pb.OpHeader_READ_BLOCK, Block: at(sb.Block, sb.GenStamp+1), Token: sb.Token}},
			{"a read token used to append", &pb.OpHeader{Op: pb.OpHeader_WRITE_BLOCK, Block: pbBlock(sb.Block), ChunkSize: 512,
				Stage: pb.OpHeader_APPEND, KeepLen: sb.Len, Token: sb.Token}},
			{"a read token used to copy", &pb.OpHeader{Op: pb.OpHeader_TRANSFER_BLOCK, Block: pbBlock(sb.Block), NewGenStamp: uint64(sb.GenStamp),
				Targets: []*pb.Node{rpc.ToPBNode(sb.Locations[1])}, Length: sb.Len, Token: sb.Token}},
			{"a forged MAC", &pb.OpHeader{Op: pb.OpHeader_READ_BLOCK, Block: pbBlock(sb.Block), Token: forged}},
			{"a token signed with a key of its own", &pb.OpHeader{Op: pb.OpHeader_READ_BLOCK, Block: pbBlock(sb.Block), Token: selfMade}},
			{"garbage for a token", &pb.OpHeader{Op: pb.OpHeader_READ_BLOCK, Block: pbBlock(sb.Block), Token: []byte("let me in")}},
		} {
			rep, err := rawOp(t, addr, a.h)
			refused(t, a.what, rep, err, cairn.KindAccess)
		}
		intact(t, c, cl, vs)
	})

	t.Run("recovery with keep 0 and no recover token", func(t *testing.T) {
		// The second attack: one RECOVERY per node, keeping 0
		// bytes, truncated all three replicas.
		for _, tok := range [][]byte{nil, sb.Token} {
			for _, n := range sb.Locations {
				rep, err := rawOp(t, n.DataAddr, &pb.OpHeader{Op: pb.OpHeader_WRITE_BLOCK, Block: at(sb.Block, sb.GenStamp+1), ChunkSize: 512,
					Stage: pb.OpHeader_RECOVERY, KeepLen: 0, Token: tok})
				refused(t, "WRITE_BLOCK RECOVERY keep 0 on "+n.DataAddr, rep, err, cairn.KindAccess)
				rep, err = rawOp(t, n.DataAddr, &pb.OpHeader{Op: pb.OpHeader_INIT_RECOVERY, Block: pbBlock(sb.Block), NewGenStamp: uint64(sb.GenStamp + 1), Token: tok})
				refused(t, "INIT_RECOVERY on "+n.DataAddr, rep, err, cairn.KindAccess)
				rep, err = rawOp(t, n.DataAddr, &pb.OpHeader{Op: pb.OpHeader_UPDATE_RECOVERY, Block: pbBlock(sb.Block), NewGenStamp: uint64(sb.GenStamp + 1), Length: 0, Token: tok})
				refused(t, "UPDATE_RECOVERY to 0 bytes on "+n.DataAddr, rep, err, cairn.KindAccess)
			}
		}
		intact(t, c, cl, vs)
	})

	t.Run("a frame claiming 2 GiB", func(t *testing.T) {
		conn, err := net.DialTimeout("tcp", sb.Locations[0].DataAddr, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		frame := append([]byte(xfer.Magic), xfer.Version)
		frame = binary.BigEndian.AppendUint32(frame, 2<<30)
		if _, err := conn.Write(frame); err != nil {
			t.Fatal(err)
		}
		_ = conn.SetReadDeadline(time.Now().Add(30 * time.Second))
		if n, err := conn.Read(make([]byte, 1)); !errors.Is(err, io.EOF) {
			t.Errorf("after a 2 GiB header frame the blockd answered %d bytes (%v), want the connection closed", n, err)
		}
		c.WaitLog(t, fmt.Sprintf("blockd%d", c.BlockdOf(sb.Locations[0].DataAddr)), blockdWait, "bad data stream opening", "exceeds")
		intact(t, c, cl, vs)
	})

	t.Run("a read at offset 1 of length 2^63-1", func(t *testing.T) {
		// With a good read token: the range itself must be refused.
		for _, n := range sb.Locations {
			rep, err := rawOp(t, n.DataAddr, &pb.OpHeader{Op: pb.OpHeader_READ_BLOCK, Block: pbBlock(sb.Block), Offset: 1, Length: math.MaxInt64, Token: sb.Token})
			refused(t, "READ_BLOCK 1+2^63-1 of "+n.DataAddr, rep, err, cairn.KindInvalid)
		}
		if log := c.Log(fmt.Sprintf("blockd%d", c.BlockdOf(sb.Locations[0].DataAddr))); strings.Contains(log, "replica failed a read") {
			t.Errorf("the blockd took the overflowing read for a bad replica")
		}
		intact(t, c, cl, vs)
	})

	t.Run("slow-loris", func(t *testing.T) {
		// A header byte every 200 ms: the whole opening would take far
		// longer than --header-timeout; the blockd closes it before.
		var b bytes.Buffer
		_ = xfer.WriteOp(&b, &pb.OpHeader{Op: pb.OpHeader_READ_BLOCK, Block: pbBlock(sb.Block), Token: sb.Token, Client: strings.Repeat("s", 100)})
		opening := b.Bytes()
		if time.Duration(len(opening))*200*time.Millisecond < 4*attackHeader {
			t.Fatalf("an opening of %d bytes is too short for this test", len(opening))
		}
		conn, err := net.DialTimeout("tcp", sb.Locations[0].DataAddr, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		closed := -1
		for i := range opening {
			if _, err := conn.Write(opening[i : i+1]); err != nil {
				closed = i
				break
			}
			// The blockd closing its end shows as a read of EOF.
			_ = conn.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
			if _, err := conn.Read(make([]byte, 1)); err != nil && !isTimeout(err) {
				closed = i
				break
			}
		}
		if closed < 0 {
			t.Fatalf("the blockd took a %d-byte opening trickled in over %v", len(opening), time.Duration(len(opening))*200*time.Millisecond)
		}
		t.Logf("closed after %d of %d bytes", closed, len(opening))
		intact(t, c, cl, vs)
	})

	t.Run("a write pipeline opened and left silent", func(t *testing.T) {
		// A certificate holder's valid write token opens a pipeline
		// through three blockds; then nothing comes. The first blockd
		// drops the connection after its idle timeout, taking the rest
		// of the pipeline down with it.
		fi, err := cl.NS.Create(ctx, "/silent", cairn.CreateOptions{Perm: 0o644, Client: cl.Name()})
		if err != nil {
			t.Fatal(err)
		}
		ref := cairn.WriterRef{FileID: fi.Inode, Path: "/silent", Client: cl.Name()}
		lb, err := cl.NS.AddBlock(ctx, ref, nil, nil)
		if err != nil || len(lb.Locations) != 3 || len(lb.Token) == 0 {
			t.Fatalf("AddBlock: %+v, %v; want three blockds and a write token", lb, err)
		}
		first := lb.Locations[0].DataAddr
		conn, err := net.DialTimeout("tcp", first, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		var b bytes.Buffer
		_ = xfer.WriteOp(&b, &pb.OpHeader{Op: pb.OpHeader_WRITE_BLOCK, Block: pbBlock(lb.Block), Targets: rpc.ToPBNodes(lb.Locations[1:]),
			ChunkSize: 512, Client: cl.Name(), Stage: pb.OpHeader_CREATE, Token: lb.Token})
		if _, err := conn.Write(b.Bytes()); err != nil {
			t.Fatal(err)
		}
		// A bound far past the idle timeout, so that a blockd that never
		// drops the connection fails the test rather than hang it.
		_ = conn.SetReadDeadline(time.Now().Add(30 * time.Second))
		rep, err := xfer.ReadReply(conn)
		if err != nil || rep.Status != 0 {
			t.Fatalf("the pipeline was not set up (%v, %v); the attack needs it open", rep, err)
		}
		if n, err := conn.Read(make([]byte, 1)); !errors.Is(err, io.EOF) {
			t.Fatalf("a silent pipeline gave %d bytes (%v), want the connection closed after the idle timeout (%v)", n, err, attackIdle)
		}
		c.WaitLog(t, fmt.Sprintf("blockd%d", c.BlockdOf(first)), blockdWait, "upstream sent nothing within the idle timeout", lb.Block.String())
		if err := cl.NS.AbandonBlock(ctx, ref, lb.Block); err != nil {
			t.Fatal(err)
		}
		if err := cl.NS.Delete(ctx, "/silent", false); err != nil {
			t.Fatal(err)
		}
		intact(t, c, cl, vs)
	})

	t.Run("more connections than the cap", func(t *testing.T) {
		addr := sb.Locations[0].DataAddr
		var held []net.Conn
		defer func() {
			for _, h := range held {
				_ = h.Close()
			}
		}()
		for range attackCap {
			h, err := net.DialTimeout("tcp", addr, 5*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			held = append(held, h)
		}
		// The blockd has accepted them all once one more is refused (an
		// accept may lag a connect): each try after that is refused.
		deadline := time.Now().Add(blockdWait)
		var rep *pb.OpReply
		var err error
		for time.Now().Before(deadline) {
			rep, err = rawOp(t, addr, &pb.OpHeader{Op: pb.OpHeader_READ_BLOCK, Block: pbBlock(sb.Block), Token: sb.Token})
			if err == nil && cairn.Kind(rep.Status) == cairn.KindRetry {
				break
			}
		}
		refused(t, "a connection past the cap", rep, err, cairn.KindRetry)
		c.WaitLog(t, fmt.Sprintf("blockd%d", c.BlockdOf(addr)), blockdWait, "connection cap reached", `"cap": 16`)
		for _, h := range held {
			_ = h.Close()
		}
		held = nil
		intact(t, c, cl, vs)
	})
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// TestReadersAndWritersOutliveTheirTokens: with tokens living 2 s, a
// reader opened before its tokens expired keeps reading (it asks metad
// for fresh ones), following a writer that keeps writing past its own
// token's expiry into a new block; an expired token itself is refused.
func TestReadersAndWritersOutliveTheirTokens(t *testing.T) {
	c := cluster.Start(t, cluster.Config{Blockds: 3, BlockSize: 1 << 20, Replication: 3,
		MetadArgs: []string{"--block-token-lifetime", "2s"}})
	cl := dial(t, c)
	ctx := context.Background()
	data := make([]byte, 3<<20+777)
	_, _ = newStream(11).Read(data)
	w, err := cl.Create(ctx, "/long", 0o644)
	if err != nil {
		t.Fatal(err)
	}
	half := 1<<20 + 1<<19
	if _, err := w.Write(data[:half]); err != nil {
		t.Fatal(err)
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	r, err := cl.Open(ctx, "/long")
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	got := make([]byte, len(data))
	if n, err := r.ReadAt(got[:100<<10], 0); err != nil || n != 100<<10 {
		t.Fatalf("first read: %d, %v", n, err)
	}
	fb, err := cl.NS.BlockLocations(ctx, cairn.FileRef{Path: "/long"})
	if err != nil {
		t.Fatal(err)
	}
	old := fb.Blocks[0]
	tok, err := blocktoken.Parse(old.Token)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Until(tok.Expiry) + 500*time.Millisecond)

	rep, err := rawOp(t, old.Locations[0].DataAddr, &pb.OpHeader{Op: pb.OpHeader_READ_BLOCK, Block: rpc.ToPBBlock(&old.Block), Token: old.Token})
	refused(t, "an expired read token", rep, err, cairn.KindAccess)

	// The writer goes on past its token's expiry, into a new block.
	if _, err := w.Write(data[half:]); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	// The reader follows, sequentially and anywhere (new streams).
	for off := 100 << 10; off < len(data); {
		n := min(len(data)-off, 300<<10)
		if k, err := r.ReadAt(got[off:off+n], int64(off)); k != n || (err != nil && err != io.EOF) {
			t.Fatalf("read at %d after the tokens expired: %d, %v", off, k, err)
		}
		off += n
	}
	if !bytes.Equal(got, data) {
		t.Fatal("the long-open reader read other bytes")
	}
	for _, off := range []int64{2<<20 + 5, 17, 1<<20 - 3} {
		p := make([]byte, 4096)
		if n, err := r.ReadAt(p, off); n != len(p) || err != nil || !bytes.Equal(p, data[off:off+4096]) {
			t.Fatalf("read at %d: %d, %v", off, n, err)
		}
	}
	out, code := c.Run(t, "fsck", "/", "-verify")
	if code != 0 || cluster.LastLine(out) != cluster.HealthyLine("/") {
		t.Fatalf("fsck / -verify: exit %d\n%s", code, out)
	}
}

// TestRestartsKeepTokensGood: metad keeps its keys across a restart and
// hands them to a restarted blockd, which accepts a token issued before
// both restarts.
func TestRestartsKeepTokensGood(t *testing.T) {
	c := cluster.Start(t, cluster.Config{Blockds: 3, BlockSize: 1 << 20, Replication: 3})
	cl := dial(t, c)
	ctx := context.Background()
	write(t, cl, "/f", 21, 500<<10)
	fb, err := cl.NS.BlockLocations(ctx, cairn.FileRef{Path: "/f"})
	if err != nil {
		t.Fatal(err)
	}
	lb := fb.Blocks[0]
	i := c.BlockdOf(lb.Locations[0].DataAddr)
	c.StopMetad(t)
	c.StartMetad(t)
	c.KillBlockd(t, i)
	c.StartBlockd(t, i)
	rep, err := rawOp(t, lb.Locations[0].DataAddr, &pb.OpHeader{Op: pb.OpHeader_READ_BLOCK, Block: rpc.ToPBBlock(&lb.Block), Token: lb.Token})
	if err != nil || rep.Status != 0 {
		t.Fatalf("a token from before the restarts at the restarted blockd: %v %v", rep, err)
	}
	sameAs(t, cl, "/f", 21, 500<<10)
	c.WaitHealthy(t, blockdWait)
}
