package trust

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
)

// ServerConfig is the TLS configuration of a server presenting h's
// certificate: TLS 1.3 only. A client certificate is verified against the
// cluster CA and the revocation list whenever one is sent; whether a call
// needs one is the server's policy (metad: every RPC but Join), so
// PeerOfState tells the server who calls.
func ServerConfig(h *Holder, rev *Revoked) *tls.Config {
	return &tls.Config{
		MinVersion:     tls.VersionTLS13,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return h.Creds().TLS(), nil },
		ClientAuth:     tls.VerifyClientCertIfGiven,
		ClientCAs:      h.Pool(),
		VerifyPeerCertificate: func(_ [][]byte, chains [][]*x509.Certificate) error {
			if len(chains) == 0 {
				return nil
			}
			leaf := chains[0][0]
			if rev.IsRevoked(leaf.SerialNumber) {
				return fmt.Errorf("certificate serial %s is revoked", SerialString(leaf.SerialNumber))
			}
			_, err := PeerOf(leaf)
			return err
		},
	}
}

// MutualServerConfig is ServerConfig that also requires a client
// certificate at the handshake (blockd's data port with --encrypt-data).
func MutualServerConfig(h *Holder, rev *Revoked) *tls.Config {
	c := ServerConfig(h, rev)
	c.ClientAuth = tls.RequireAndVerifyClientCert
	return c
}

// ClientConfig is the TLS configuration of a client presenting h's
// certificate to a server that must hold a certificate of the cluster CA
// for one of the roles want. Host names are not checked: a cluster's
// certificates name roles and identities, not addresses, and only the
// cluster CA issues them.
func ClientConfig(h *Holder, want ...Role) *tls.Config {
	pool := h.Pool()
	return &tls.Config{
		MinVersion:           tls.VersionTLS13,
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return h.Creds().TLS(), nil },
		InsecureSkipVerify:   true, // the chain and the role are verified below
		VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error {
			_, err := verifyServer(raw, pool, want)
			return err
		},
	}
}

// JoinConfig is the TLS configuration of a joiner, which has no
// certificate yet: metad must present a chain whose CA has the SHA-256
// fingerprint caFingerprint (from the join token). The CA is then known.
func JoinConfig(caFingerprint string, gotCA func(*x509.Certificate)) *tls.Config {
	return &tls.Config{
		MinVersion:         tls.VersionTLS13,
		InsecureSkipVerify: true, // verified below against the token's fingerprint
		VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error {
			want, err := hex.DecodeString(caFingerprint)
			if err != nil || len(want) != 32 {
				return errors.New("the join token's CA fingerprint is malformed")
			}
			for _, r := range raw[1:] {
				c, err := x509.ParseCertificate(r)
				if err != nil || !c.IsCA || !bytes.Equal(fingerprintBytes(c), want) {
					continue
				}
				pool := x509.NewCertPool()
				pool.AddCert(c)
				if _, err := verifyServer(raw, pool, []Role{RoleMetad}); err != nil {
					return err
				}
				gotCA(c)
				return nil
			}
			return errors.New("metad's certificate does not chain to the CA named in the join token: this is not the cluster the token is for")
		},
	}
}

// verifyServer verifies a presented chain against pool and returns the
// peer, which must have one of the roles want.
func verifyServer(raw [][]byte, pool *x509.CertPool, want []Role) (Peer, error) {
	if len(raw) == 0 {
		return Peer{}, errors.New("the server presented no certificate")
	}
	certs := make([]*x509.Certificate, len(raw))
	for i, r := range raw {
		c, err := x509.ParseCertificate(r)
		if err != nil {
			return Peer{}, fmt.Errorf("the server's certificate: %w", err)
		}
		certs[i] = c
	}
	inter := x509.NewCertPool()
	for _, c := range certs[1:] {
		if !c.IsCA {
			inter.AddCert(c)
		}
	}
	if _, err := certs[0].Verify(x509.VerifyOptions{Roots: pool, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil {
		return Peer{}, fmt.Errorf("the server's certificate is not from this cluster's CA: %w", err)
	}
	p, err := PeerOf(certs[0])
	if err != nil {
		return Peer{}, err
	}
	for _, r := range want {
		if p.Role == r {
			return p, nil
		}
	}
	return Peer{}, fmt.Errorf("the server's certificate is for %s, not a %v", p, want)
}

// PeerOfState returns the verified peer of a TLS connection, if the
// client presented a certificate.
func PeerOfState(cs tls.ConnectionState) (Peer, *x509.Certificate, bool) {
	if len(cs.VerifiedChains) == 0 || len(cs.VerifiedChains[0]) == 0 {
		return Peer{}, nil, false
	}
	leaf := cs.VerifiedChains[0][0]
	p, err := PeerOf(leaf)
	if err != nil {
		return Peer{}, nil, false
	}
	return p, leaf, true
}

func fingerprintBytes(c *x509.Certificate) []byte {
	b, _ := hex.DecodeString(Fingerprint(c))
	return b
}
