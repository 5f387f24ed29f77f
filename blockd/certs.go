package blockd

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"go.uber.org/zap"

	"cairn"
	"cairn/client"
	"cairn/rpc"
	"cairn/trust"
)

// A blockd's certificate (package trust) names it blockd/STORAGE-ID and
// lives in its credentials directory (default FIRST-DATA-DIR/trust). A
// blockd without one joins once with a join token (--join, $CAIRN_JOIN);
// then it renews the certificate by itself over its authenticated
// connection to metad.

// joinTimeout bounds a join: one TLS handshake and one RPC.
const joinTimeout = time.Minute

// NoCertHelp is what a blockd without a certificate or a token says.
const NoCertHelp = "a blockd joins the cluster once with a join token: where an admin certificate is, run " +
	"'cairn admin -join-token --role blockd', then start this blockd with --join TOKEN (or $CAIRN_JOIN=TOKEN)"

// credentials returns the blockd's certificate, joining with cfg.Join
// when it has none yet.
func credentials(cfg Config, storageID string, log *zap.Logger) (*trust.Holder, error) {
	dir := cfg.CertsDir
	want := trust.Peer{Role: trust.RoleBlockd, Name: storageID}
	c, err := trust.LoadCreds(dir)
	switch {
	case err == nil:
		if c.Peer != want {
			return nil, fmt.Errorf("the certificate in %s is for %s, but this blockd is %s", dir, c.Peer, want)
		}
		if cfg.Join != "" {
			log.Info("already joined: the join token is not used", zap.String("certs", dir))
		}
	case !errors.Is(err, os.ErrNotExist):
		return nil, err
	case cfg.Join == "":
		return nil, fmt.Errorf("no certificate in %s: %s", dir, NoCertHelp)
	default:
		ctx, cancel := context.WithTimeout(context.Background(), joinTimeout)
		defer cancel()
		// Of a metad group only the leader signs: each member is asked
		// in turn until one does, again while the group has no leader.
		if c, err = join(ctx, cfg, want, dir, log); err != nil {
			return nil, err
		}
		log.Info("joined the cluster", zap.Stringer("peer", c.Peer), zap.String("certs", dir),
			zap.String("serial", trust.SerialString(c.Cert.SerialNumber)), zap.Time("not_after", c.Cert.NotAfter))
	}
	if c.Expired(time.Now()) {
		return nil, fmt.Errorf("the certificate in %s expired at %v: remove %s and join again with a new token (%s)",
			dir, c.Cert.NotAfter, filepath.Join(dir, trust.CertFile), NoCertHelp)
	}
	return trust.NewHolder(c), nil
}

// join asks each metad of --metad in turn to sign this blockd's
// certificate with the join token, round after round while they answer
// that none of them leads yet (a group electing its first leader), until
// ctx ends.
func join(ctx context.Context, cfg Config, want trust.Peer, dir string, log *zap.Logger) (*trust.Creds, error) {
	err := errors.New("join: no metad address")
	pause := 100 * time.Millisecond
	for {
		for _, addr := range client.SplitMetads(cfg.MetadAddr) {
			c, jerr := rpc.Join(ctx, addr, cfg.Join, want, dir)
			if jerr == nil {
				return c, nil
			}
			err = jerr
			log.Warn("join through metad failed", zap.String("metad", addr), zap.Error(err))
		}
		if cairn.KindOf(err) != cairn.KindNotLeader {
			return nil, err
		}
		select {
		case <-ctx.Done():
			return nil, err
		case <-time.After(pause):
		}
		pause = min(2*pause, time.Second)
	}
}
