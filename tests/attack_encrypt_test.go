package tests

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"cairn"
	"cairn/rpc"
	"cairn/rpc/pb"
	"cairn/tests/cluster"
	"cairn/trust"
	"cairn/xfer"
)

// TestAttackEncryptedDataPort tries, against a running cluster that
// encrypts block data (metad --encrypt-data), what the mutual TLS on the
// data port must stop: plain text with a good token, TLS without a client
// certificate, with a certificate of another CA, with one of a role that
// moves no block data (metad's), and a handshake that never comes. Each
// gets no op served; after each the cluster keeps serving, every file
// keeps its bytes and fsck -verify is HEALTHY.
func TestAttackEncryptedDataPort(t *testing.T) {
	c := cluster.Start(t, cluster.Config{Blockds: 3, BlockSize: 1 << 20, Replication: 3,
		MetadArgs: []string{"--encrypt-data"}, BlockdArgs: []string{"--header-timeout", attackHeader.String()}})
	cl := dial(t, c)
	ctx := context.Background()
	vs := []victim{writeVictim(t, cl, "/secret", 0o600, 7, 300<<10), writeVictim(t, cl, "/big", 0o644, 8, 2<<20+12345)}
	fb, err := cl.NS.BlockLocations(ctx, cairn.FileRef{Path: "/secret"})
	if err != nil || len(fb.Blocks) == 0 {
		t.Fatalf("/secret: %v %v", fb, err)
	}
	sb := fb.Blocks[0]
	read := &pb.OpHeader{Op: pb.OpHeader_READ_BLOCK, Block: rpc.ToPBBlock(&sb.Block), Token: sb.Token}

	t.Run("plain text with a good token", func(t *testing.T) {
		for _, n := range sb.Locations {
			rep, err := rawOp(t, n.DataAddr, read)
			refused(t, "plain READ_BLOCK of "+n.DataAddr, rep, err, cairn.KindAccess)
			if err == nil && !strings.Contains(rep.Message, "encrypts block data") {
				t.Errorf("the refusal does not say why: %q", rep.Message)
			}
		}
		intact(t, c, cl, vs)
	})

	// The cluster's admin certificate is served (its read token is good):
	// the refusals below are for the certificates.
	if rep, err := tlsOp(sb.Locations[0].DataAddr, presentingCert(c.ClientCreds().Creds()), read); err != nil || rep.Status != 0 {
		t.Fatalf("READ_BLOCK over TLS with the cluster's admin certificate: %+v, %v", rep, err)
	}

	other, err := trust.CreateCA(t.TempDir(), "ns-attacker")
	if err != nil {
		t.Fatal(err)
	}
	foreign := func(p trust.Peer) *trust.Creds {
		key, _ := trust.NewKey()
		der, err := other.Issue(key.Public(), p, time.Hour, nil)
		if err != nil {
			t.Fatal(err)
		}
		cr, err := trust.CredsOf(key, der, other.Cert)
		if err != nil {
			t.Fatal(err)
		}
		return cr
	}
	for _, a := range []struct {
		name string
		cfg  *tls.Config
	}{
		{"TLS without a client certificate", &tls.Config{MinVersion: tls.VersionTLS13, InsecureSkipVerify: true}},
		{"a self-signed CA's blockd certificate", presentingCert(foreign(trust.Peer{Role: trust.RoleBlockd, Name: "DS-fake"}))},
		{"a self-signed CA's admin certificate", presentingCert(foreign(trust.Peer{Role: trust.RoleAdmin, Name: "root"}))},
		{"a metad certificate of the cluster CA (wrong role)",
			presentingCert(c.IssueCert(t, trust.Peer{Role: trust.RoleMetad, Name: "ns"}, t.TempDir()))},
	} {
		t.Run(a.name, func(t *testing.T) {
			for _, n := range sb.Locations {
				rep, err := tlsOp(n.DataAddr, a.cfg, read)
				if err == nil {
					t.Errorf("%s: READ_BLOCK answered (status %d, %q), want the connection refused", n.DataAddr, rep.Status, rep.Message)
				} else {
					t.Logf("%s: refused: %v", n.DataAddr, err)
				}
				c.WaitLog(t, fmt.Sprintf("blockd%d", c.BlockdOf(n.DataAddr)), blockdWait, "data connection refused: TLS handshake")
			}
			intact(t, c, cl, vs)
		})
	}

	t.Run("a handshake that never comes", func(t *testing.T) {
		conn, err := net.DialTimeout("tcp", sb.Locations[0].DataAddr, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		// The first byte of a TLS record, then silence: the blockd
		// closes the connection at --header-timeout.
		if _, err := conn.Write([]byte{xfer.TLSHandshakeByte}); err != nil {
			t.Fatal(err)
		}
		_ = conn.SetReadDeadline(time.Now().Add(10 * attackHeader))
		if _, err := io.ReadAll(conn); isTimeout(err) {
			t.Fatalf("the blockd kept a silent handshake open past %v", 10*attackHeader)
		}
		intact(t, c, cl, vs)
	})
}

// presentingCert is an attacker's TLS client presenting cr, taking any
// server.
func presentingCert(cr *trust.Creds) *tls.Config {
	return &tls.Config{MinVersion: tls.VersionTLS13, InsecureSkipVerify: true,
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return cr.TLS(), nil }}
}

// tlsOp sends one op over TLS with cfg and returns the reply.
func tlsOp(addr string, cfg *tls.Config, h *pb.OpHeader) (*pb.OpReply, error) {
	conn, err := xfer.Dial(context.Background(), addr, 10*time.Second, cfg)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(30 * time.Second))
	if err := xfer.WriteOp(conn, h); err != nil {
		return nil, err
	}
	return xfer.ReadReply(conn)
}
