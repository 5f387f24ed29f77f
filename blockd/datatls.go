package blockd

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"time"

	"go.uber.org/zap"

	"cairn"
	"cairn/rpc/pb"
	"cairn/trust"
	"cairn/xfer"
)

// Encrypted block data (metad --encrypt-data, HDFS's
// dfs.encrypt.data.transfer). metad says at each registration whether the
// cluster encrypts; then the data port takes only mutual TLS 1.3 with
// certificates of the cluster CA, and this blockd dials other blockds
// (pipelines, copies, recovery ops) with it. A plain connection to an
// encrypting blockd is answered KindAccess, never served. Block tokens
// are checked in both modes.

// The data port's mode, as metad last said.
const (
	modeUnknown int32 = iota // not registered yet
	modePlain
	modeTLS
)

// notRegisteredMsg answers a plain connection before metad said how the
// cluster moves block data.
const notRegisteredMsg = "blockd not registered with metad yet: try again"

// EncryptRequiredMsg answers a plain connection to an encrypting blockd.
const EncryptRequiredMsg = "this cluster encrypts block data (metad --encrypt-data): the data port takes only mutual TLS 1.3 " +
	"with a certificate of the cluster CA"

// setEncrypt records the mode metad gave at registration.
func (d *Blockd) setEncrypt(on bool) {
	mode := modePlain
	if on {
		mode = modeTLS
	}
	if old := d.mode.Swap(mode); old != mode {
		d.log.Info("data port mode", zap.Bool("encrypt_data", on))
	}
}

// dataServerConfig is the data port's TLS: TLS 1.3, a client certificate
// of the cluster CA required, of a role that moves block data (a blockd,
// a mount, a user, an admin; never metad's own). What the peer may do is
// still its block token's to say.
func (d *Blockd) dataServerConfig() *tls.Config {
	c := trust.MutualServerConfig(d.creds, nil)
	verify := c.VerifyPeerCertificate
	c.VerifyPeerCertificate = func(raw [][]byte, chains [][]*x509.Certificate) error {
		if err := verify(raw, chains); err != nil {
			return err
		}
		p, err := trust.PeerOf(chains[0][0])
		if err != nil {
			return err
		}
		if p.Role == trust.RoleMetad {
			return fmt.Errorf("certificate %s: the data port takes blockd, mount, user and admin certificates", p)
		}
		return nil
	}
	return c
}

// accept reads the first byte of a connection within the header timeout
// and returns the connection the stream is read from: the TLS connection
// after a verified handshake, or c itself when plain text may be served.
// Otherwise it answers or closes c and returns nil.
func (d *Blockd) accept(c net.Conn) net.Conn {
	_ = c.SetReadDeadline(time.Now().Add(d.cfg.HeaderTimeout))
	var first [1]byte
	if _, err := io.ReadFull(c, first[:]); err != nil {
		return nil
	}
	pc := &prefixConn{Conn: c, first: first[:]}
	if first[0] == xfer.TLSHandshakeByte {
		if d.creds == nil {
			d.log.Warn("data connection refused: TLS to an insecure blockd", zap.Stringer("peer", c.RemoteAddr()))
			return nil
		}
		tc := tls.Server(pc, d.tlsServer)
		// The deadline set above bounds the handshake too.
		if err := tc.HandshakeContext(context.Background()); err != nil {
			d.log.Warn("data connection refused: TLS handshake", zap.Stringer("peer", c.RemoteAddr()), zap.Error(err))
			return nil
		}
		return tc
	}
	switch {
	case d.creds == nil || d.mode.Load() == modePlain:
		return pc
	case d.mode.Load() == modeTLS:
		d.log.Warn("data connection refused: plain text to an encrypting blockd", zap.Stringer("peer", c.RemoteAddr()))
		d.refusePlain(pc, cairn.KindAccess, EncryptRequiredMsg)
	default:
		d.refusePlain(pc, cairn.KindRetry, notRegisteredMsg)
	}
	return nil
}

// refusePlain answers a plain connection with an error and no more.
func (d *Blockd) refusePlain(c net.Conn, kind cairn.Kind, msg string) {
	// The opening is read first (bounded, within the header timeout), so
	// closing does not reset the connection before the peer reads why.
	_, _ = xfer.ReadOp(xfer.NewBufferedReader(c))
	_ = c.SetWriteDeadline(time.Now().Add(time.Second))
	_ = xfer.WriteReply(c, &pb.OpReply{Status: uint32(kind), Message: msg})
}

// dial connects to another blockd's data port as the cluster's mode says.
func (d *Blockd) dial(ctx context.Context, addr string, timeout time.Duration) (net.Conn, error) {
	if d.mode.Load() == modeTLS {
		return xfer.Dial(ctx, addr, timeout, d.tlsClient)
	}
	return xfer.Dial(ctx, addr, timeout, nil)
}

// prefixConn is a connection whose first bytes were read already.
type prefixConn struct {
	net.Conn
	first []byte
}

func (c *prefixConn) Read(p []byte) (int, error) {
	if len(c.first) > 0 {
		n := copy(p, c.first)
		c.first = c.first[n:]
		return n, nil
	}
	return c.Conn.Read(p)
}
