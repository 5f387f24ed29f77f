package xfer

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"time"
)

// A data connection is plain TCP, or, on a cluster that encrypts block
// data (metad --encrypt-data, HDFS's dfs.encrypt.data.transfer), mutual
// TLS 1.3: the stream above is the same either way. A blockd tells the two
// apart by the first byte: a TLS record of type handshake, or Magic.

// TLSHandshakeByte is the first byte of a TLS ClientHello record.
const TLSHandshakeByte = 0x16

// Dial connects to the data port at addr, within timeout: plain TCP when
// cfg is nil, else TLS with cfg, the handshake done within the same
// timeout so a silent peer cannot hold the caller.
func Dial(ctx context.Context, addr string, timeout time.Duration, cfg *tls.Config) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil || cfg == nil {
		return c, err
	}
	tc := tls.Client(c, cfg)
	if err := tc.HandshakeContext(ctx); err != nil {
		_ = c.Close()
		return nil, fmt.Errorf("TLS handshake with %s: %w", addr, err)
	}
	return tc, nil
}
