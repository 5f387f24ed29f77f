package trust

import (
	"context"
	"crypto/x509"
	"fmt"
	"time"

	"go.uber.org/zap"
)

// RenewAt is when a certificate is renewed: once two thirds of its
// lifetime are gone, counted from when it was issued: the CA sets
// NotBefore back by a few minutes for clock skew, which would otherwise
// put the renewal of a short-lived certificate (seconds, in tests) before
// its issue, and renew it again and again.
func RenewAt(c *x509.Certificate) time.Time {
	issued := c.NotBefore.Add(clockSkewBefore)
	if !issued.Before(c.NotAfter) {
		issued = c.NotBefore // not one of ours
	}
	return issued.Add(c.NotAfter.Sub(issued) * 2 / 3)
}

// Fetch asks metad (RenewCert, over the connection the current
// certificate authenticates) to sign a certificate request; it returns
// the new certificate's DER.
type Fetch func(ctx context.Context, csr []byte) ([]byte, error)

// RenewOnce makes a new key, has metad sign it for the same peer, saves
// the credentials to dir (when not empty) and puts them in h.
func RenewOnce(ctx context.Context, h *Holder, dir string, fetch Fetch) (*Creds, error) {
	cur := h.Creds()
	key, err := NewKey()
	if err != nil {
		return nil, err
	}
	csr, err := NewCSR(key, cur.Peer)
	if err != nil {
		return nil, err
	}
	der, err := fetch(ctx, csr)
	if err != nil {
		return nil, fmt.Errorf("renew certificate: %w", err)
	}
	var c *Creds
	if dir != "" {
		c, err = SaveCreds(dir, key, der, cur.CA.Raw)
	} else {
		var cert *x509.Certificate
		if cert, err = x509.ParseCertificate(der); err == nil {
			c, err = newCreds(key, cert, cur.CA)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("renew certificate: %w", err)
	}
	if c.Peer != cur.Peer {
		return nil, fmt.Errorf("renew certificate: metad signed %s, not %s", c.Peer, cur.Peer)
	}
	h.Set(c)
	return c, nil
}

// Renew renews h's certificate at RenewAt, again and again, until ctx
// ends. A failure is logged and tried again after a tenth of the time
// left (between a second and a minute).
func Renew(ctx context.Context, h *Holder, dir string, fetch Fetch, log *zap.Logger) {
	for {
		cert := h.Creds().Cert
		wait := time.Until(RenewAt(cert))
		if wait > 0 {
			select {
			case <-ctx.Done():
				return
			case <-time.After(wait):
			}
		}
		c, err := RenewOnce(ctx, h, dir, fetch)
		if err == nil {
			log.Info("certificate renewed", zap.Stringer("peer", c.Peer), zap.String("serial", SerialString(c.Cert.SerialNumber)),
				zap.Time("not_after", c.Cert.NotAfter))
			continue
		}
		if ctx.Err() != nil {
			return
		}
		retry := min(max(time.Until(cert.NotAfter)/10, time.Second), time.Minute)
		log.Warn("certificate renewal failed; trying again", zap.Error(err), zap.Time("not_after", cert.NotAfter), zap.Duration("retry_in", retry))
		select {
		case <-ctx.Done():
			return
		case <-time.After(retry):
		}
	}
}
