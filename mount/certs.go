package mount

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"go.uber.org/zap"
	"google.golang.org/grpc"

	"cairn/rpc"
	"cairn/trust"
)

// A mount's certificate (package trust) names it mount/HOST: metad lets
// it speak for the local users of its host, as NFS trusts a host. It
// lives in -o certs=DIR (default $CAIRN_CERTS, else ~/.cairn/mount); a
// mount without one joins once with -o join=TOKEN or $CAIRN_JOIN, and
// renews it by itself.

// NoCertHelp is what a mount without a certificate or a token says.
const NoCertHelp = "a mount joins the cluster once with a join token: where an admin certificate is, run " +
	"'cairn admin -join-token --role mount', then mount with -o join=TOKEN (or $CAIRN_JOIN=TOKEN)"

// mountCertsDir is the default credentials directory of a mount.
func mountCertsDir() string {
	if d := os.Getenv("CAIRN_CERTS"); d != "" {
		return d
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return ".cairn/mount"
	}
	return filepath.Join(home, ".cairn", "mount")
}

// mountCreds returns the mount's certificate, joining when it has none.
func mountCreds(ctx context.Context, cfg config, log *zap.Logger) (*trust.Holder, string, error) {
	dir := cfg.certs
	if dir == "" {
		dir = mountCertsDir()
	}
	c, err := trust.LoadCreds(dir)
	switch {
	case err == nil:
		return trust.NewHolder(c), dir, nil
	case !errors.Is(err, os.ErrNotExist):
		return nil, "", err
	}
	token := cfg.join
	if token == "" {
		token = os.Getenv("CAIRN_JOIN")
	}
	if token == "" {
		return nil, "", fmt.Errorf("no certificate in %s: %s", dir, NoCertHelp)
	}
	host, err := os.Hostname()
	if err != nil {
		return nil, "", err
	}
	jctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	c, err = rpc.Join(jctx, cfg.addr, token, trust.Peer{Role: trust.RoleMount, Name: host}, dir)
	if err != nil {
		return nil, "", err
	}
	log.Info("joined the cluster", zap.Stringer("peer", c.Peer), zap.String("certs", dir), zap.Time("not_after", c.Cert.NotAfter))
	return trust.NewHolder(c), dir, nil
}

// renewCreds keeps the mount's certificate renewed until ctx ends.
func renewCreds(ctx context.Context, addr string, h *trust.Holder, dir string, log *zap.Logger) {
	conn, err := grpc.NewClient(addr, rpc.Transport(h))
	if err != nil {
		log.Error("certificate renewal: dial metad", zap.String("metad", addr), zap.Error(err))
		return
	}
	defer conn.Close()
	trust.Renew(ctx, h, dir, rpc.NewTrustClient(conn).Fetch, log)
}
