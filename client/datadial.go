package client

import (
	"context"
	"crypto/tls"
	"net"
	"time"

	"go.uber.org/zap"

	"cairn/trust"
	"cairn/xfer"
)

// How the client reaches blockds' data ports: plain TCP, or mutual TLS
// 1.3 with its certificate when the cluster encrypts block data (metad
// --encrypt-data, HDFS's dfs.encrypt.data.transfer). metad says which
// (DataTransfer, as HDFS's server defaults say encryptDataTransfer); the
// answer is kept for dataModeValidity, so a metad restarted with the
// other mode is followed within that time. A client with a certificate
// that cannot ask dials TLS, which every blockd with a certificate takes:
// it never falls back to plain text on its own.

// dataModeValidity is how long metad's answer is kept, and
// dataModeTimeout how long the client waits for it.
const (
	dataModeValidity = time.Minute
	dataModeTimeout  = 10 * time.Second
)

// dialFunc connects to a data port within a timeout.
type dialFunc func(ctx context.Context, addr string, timeout time.Duration) (net.Conn, error)

// dataDial returns how to connect to blockds now.
func (c *Client) dataDial(ctx context.Context) dialFunc {
	cfg := c.dataTLSConfig(ctx)
	return func(ctx context.Context, addr string, timeout time.Duration) (net.Conn, error) {
		return xfer.Dial(ctx, addr, timeout, cfg)
	}
}

// dataTLSConfig is the TLS configuration of data connections, nil for
// plain TCP.
func (c *Client) dataTLSConfig(ctx context.Context) *tls.Config {
	if c.opts.Creds == nil {
		return nil // an --insecure cluster
	}
	c.dataMu.Lock()
	defer c.dataMu.Unlock()
	if c.dataTLS == nil {
		c.dataTLS = trust.ClientConfig(c.opts.Creds, trust.RoleBlockd)
	}
	if c.dataAsked.IsZero() || time.Since(c.dataAsked) >= dataModeValidity {
		// Asked at most once a validity period, answered or not, so a
		// metad that is down does not hold every stream.
		c.dataAsked = time.Now()
		actx, cancel := context.WithTimeout(ctx, dataModeTimeout)
		enc, err := c.Trust().DataTransfer(actx)
		cancel()
		switch {
		case err == nil:
			if c.dataKnown && enc != c.dataEncrypt {
				c.log.Info("the cluster's block data mode changed", zap.Bool("encrypt_data", enc))
			}
			c.dataEncrypt, c.dataKnown = enc, true
		case !c.dataKnown:
			c.log.Warn("cannot ask metad how block data travels; using TLS", zap.Error(err))
		default:
			c.log.Warn("cannot ask metad how block data travels; keeping what it last said", zap.Bool("encrypt_data", c.dataEncrypt), zap.Error(err))
		}
	}
	if c.dataEncrypt || !c.dataKnown {
		return c.dataTLS
	}
	return nil
}
