package client_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"io"
	"math/rand/v2"
	"net"
	"strings"
	"testing"
	"time"

	"cairn"
	"cairn/client"
	"cairn/rpc"
	"cairn/rpc/pb"
	"cairn/trust"
	"cairn/xfer"
)

// TestEncryptedDataPath runs a cluster whose metad has --encrypt-data:
// a write through a pipeline of three (blockd to blockd), a read, a copy
// metad asks for (re-replication) and VERIFY_BLOCK all go over mutual TLS,
// since every blockd refuses plain text, which the test checks with a
// valid token.
func TestEncryptedDataPath(t *testing.T) {
	c := startClusterArgs(t, 3, 256<<10, []string{"--encrypt-data"}, nil)
	cl, err := client.Dial(c.metad, client.Options{Creds: c.creds})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx := context.Background()
	data := make([]byte, 600<<10+77)
	for i := range data {
		data[i] = byte(rand.IntN(256))
	}
	write := func(path string) {
		w, err := cl.Create(ctx, path, 0o644)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := w.Write(data); err != nil {
			t.Fatal(err)
		}
		if err := w.Close(); err != nil {
			t.Fatalf("close %s: %v", path, err)
		}
	}
	write("/three")
	r, err := cl.Open(ctx, "/three")
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(io.NewSectionReader(r, 0, r.Size()))
	r.Close()
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("read back %d bytes, %v; equal %v", len(got), err, bytes.Equal(got, data))
	}
	fb, err := cl.NS.BlockLocations(ctx, cairn.FileRef{Path: "/three"})
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range fb.Blocks {
		if len(b.Locations) != 3 {
			t.Fatalf("%s on %d blockds, want 3: the pipeline did not forward", b.Block, len(b.Locations))
		}
	}

	// Plain text is refused, even with a good token.
	lb := fb.Blocks[0]
	for _, addr := range c.data {
		rep := plainOp(t, addr, &pb.OpHeader{Op: pb.OpHeader_READ_BLOCK, Block: rpc.ToPBBlock(&lb.Block), Length: 1, Token: lb.Token})
		if cairn.Kind(rep.Status) != cairn.KindAccess || !strings.Contains(rep.Message, "encrypts block data") {
			t.Fatalf("plain READ_BLOCK to %s: status %d %q, want KindAccess saying the cluster encrypts", addr, rep.Status, rep.Message)
		}
	}

	// A copy metad asks for: one replica, then three.
	cl1, err := client.Dial(c.metad, client.Options{Creds: c.creds, Replication: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer cl1.Close()
	w, err := cl1.Create(ctx, "/one", 0o644)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	three := 3
	if _, err := cl.NS.SetAttr(ctx, "/one", cairn.Attr{Replication: &three}); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		fr, err := cl.NS.ReplicaReport(ctx, "/one")
		if err != nil {
			t.Fatal(err)
		}
		good := 0
		for _, b := range fr.Blocks {
			for _, rp := range b.Replicas {
				if rp.Good {
					good++
				}
			}
		}
		if good == 3*len(fr.Blocks) {
			// Every replica, the copies too, verified by its blockd
			// over TLS.
			for _, b := range fr.Blocks {
				for _, rp := range b.Replicas {
					v, err := cl.VerifyReplica(ctx, rp.Node, rp.Block, b.Token)
					if err != nil || v.Bad != "" {
						t.Fatalf("verify %s on %s: %+v, %v", rp.Block, rp.DataAddr, v, err)
					}
				}
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the copies never came: %d good replicas of %d blocks", good, len(fr.Blocks))
		}
	}
}

// TestPlainClusterTakesPlainText: without --encrypt-data the data port
// serves plain text, and TLS too (a client that could not ask metad).
func TestPlainClusterTakesPlainText(t *testing.T) {
	c := startCluster(t, 1, 256<<10)
	cl, err := client.Dial(c.metad, client.Options{Creds: c.creds, Replication: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx := context.Background()
	w, err := cl.Create(ctx, "/f", 0o644)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	fb, err := cl.NS.BlockLocations(ctx, cairn.FileRef{Path: "/f"})
	if err != nil {
		t.Fatal(err)
	}
	lb := fb.Blocks[0]
	h := &pb.OpHeader{Op: pb.OpHeader_READ_BLOCK, Block: rpc.ToPBBlock(&lb.Block), Length: 5, Token: lb.Token}
	if rep := plainOp(t, c.data[0], h); rep.Status != 0 {
		t.Fatalf("plain READ_BLOCK: status %d %q", rep.Status, rep.Message)
	}
	conn, err := xfer.Dial(ctx, c.data[0], 5*time.Second, trust.ClientConfig(c.creds, trust.RoleBlockd))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if rep, err := opOn(conn, h); err != nil || rep.Status != 0 {
		t.Fatalf("TLS READ_BLOCK on a plain cluster: %+v, %v", rep, err)
	}
}

// TestDataPortRefusesStrangers: on an encrypting cluster, a TLS client
// with a certificate of another CA, or of a role that moves no block data
// (metad's), gets no op served; and a client does not talk to a "blockd"
// whose certificate is not a blockd's.
func TestDataPortRefusesStrangers(t *testing.T) {
	c := startClusterArgs(t, 1, 256<<10, []string{"--encrypt-data"}, nil)
	ctx := context.Background()
	other, err := trust.CreateCA(t.TempDir(), "ns-other")
	if err != nil {
		t.Fatal(err)
	}
	h := &pb.OpHeader{Op: pb.OpHeader_VERIFY_BLOCK, Block: &pb.Block{Id: 1, GenStamp: 1}}
	// The cluster's own admin certificate gets an answer (a refusal of
	// the missing token), so what follows fails for the certificate.
	conn, err := xfer.Dial(ctx, c.data[0], 5*time.Second, presenting(c.creds))
	if err != nil {
		t.Fatal(err)
	}
	if rep, err := opOn(conn, h); err != nil || cairn.Kind(rep.Status) != cairn.KindAccess {
		t.Fatalf("op with the cluster's admin certificate: %+v, %v; want refused for its token", rep, err)
	}
	conn.Close()
	for _, s := range []struct {
		name string
		ca   *trust.CA
		peer trust.Peer
	}{
		{"a blockd certificate of another CA", other, trust.Peer{Role: trust.RoleBlockd, Name: "DS-fake"}},
		{"an admin certificate of another CA", other, trust.Peer{Role: trust.RoleAdmin, Name: "root"}},
		{"a metad certificate of the cluster CA", c.ca, trust.Peer{Role: trust.RoleMetad, Name: "ns"}},
	} {
		conn, err := xfer.Dial(ctx, c.data[0], 5*time.Second, presenting(holderOf(t, s.ca, s.peer)))
		if err != nil {
			continue // refused at the handshake
		}
		rep, err := opOn(conn, h)
		conn.Close()
		if err == nil {
			t.Errorf("%s: op answered (status %d %q), want the connection refused", s.name, rep.Status, rep.Message)
		}
	}

	// A server presenting a user certificate is not a blockd.
	fake := holderOf(t, c.ca, trust.Peer{Role: trust.RoleUser, Name: "mallory"})
	l, err := tls.Listen("tcp", "127.0.0.1:0", trust.MutualServerConfig(fake, nil))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() { defer c.Close(); _ = c.(*tls.Conn).Handshake() }()
		}
	}()
	if conn, err := xfer.Dial(ctx, l.Addr().String(), 5*time.Second, trust.ClientConfig(c.creds, trust.RoleBlockd)); err == nil {
		conn.Close()
		t.Fatal("a client dialed a data port presenting a user certificate")
	} else if !strings.Contains(err.Error(), "not a [blockd]") {
		t.Fatalf("dial a fake blockd: %v, want its role refused", err)
	}
}

// presenting is an attacker's TLS client: it presents h's certificate
// and takes any server's.
func presenting(h *trust.Holder) *tls.Config {
	return &tls.Config{MinVersion: tls.VersionTLS13, InsecureSkipVerify: true,
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return h.Creds().TLS(), nil }}
}

func holderOf(t *testing.T, ca *trust.CA, p trust.Peer) *trust.Holder {
	t.Helper()
	key, err := trust.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	der, err := ca.Issue(key.Public(), p, time.Hour, nil)
	if err != nil {
		t.Fatal(err)
	}
	cr, err := trust.CredsOf(key, der, ca.Cert)
	if err != nil {
		t.Fatal(err)
	}
	return trust.NewHolder(cr)
}

// plainOp sends h over plain TCP and returns the reply.
func plainOp(t *testing.T, addr string, h *pb.OpHeader) *pb.OpReply {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	rep, err := opOn(conn, h)
	if err != nil {
		t.Fatalf("plain op to %s: %v", addr, err)
	}
	return rep
}

func opOn(conn net.Conn, h *pb.OpHeader) (*pb.OpReply, error) {
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	if err := xfer.WriteOp(conn, h); err != nil {
		return nil, err
	}
	return xfer.ReadReply(conn)
}
